"""The `codesign` command: one sub-command per step of the flow.

Each sub-command lives in its own module under `codesign.commands` and exposes
`register(subparsers)`; this file only wires them together, so adding a step never
touches another step's code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from codesign.errors import CodesignError

# Order is the order shown in `codesign --help` (the order of the flow).
COMMAND_MODULES = [
    "codesign.commands.train",
    "codesign.commands.relevance",
    "codesign.commands.compress",
    "codesign.commands.qat",
    "codesign.commands.export",
    "codesign.commands.compile",
    "codesign.commands.rtlsim",
    "codesign.commands.synth",
    "codesign.commands.deploy",
    "codesign.commands.info",
    "codesign.commands.search",
    "codesign.commands.run",
]

log = logging.getLogger("codesign")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codesign",
        description="Relevance-driven compression, QAT and FPGA dataflow accelerator co-design.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod_name in COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CodesignError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; finished artefacts are kept, re-run to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
