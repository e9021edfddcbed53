"""`codesign deploy` (Vivado project + PYNQ driver) and `codesign finn` (a FINN build directory).

Both stop at the tool boundary by default: they write everything a Vivado / FINN user needs and
run the tool only when asked (`--build`) and present, because a bitstream takes tens of minutes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _deploy(args: argparse.Namespace) -> int:
    from codesign.hw import vivado

    out = vivado.write_vivado_project(args.build, args.board, args.out, clock_ns=args.clock_ns, name=args.name)
    log.info("%s", vivado.describe(out))
    if args.build_bitstream:
        rc = vivado.run_build(out, jobs=args.jobs)
        if rc != 0:
            log.error("Vivado build failed (rc %d); see %s/build/vivado.log", rc, out)
        return rc
    log.info("next: %s/build.sh (needs Vivado), then copy %s/deploy/ to the board", out, out)
    return 0


def _finn(args: argparse.Namespace) -> int:
    from codesign.backends import finn

    folding = Path(args.folding) if args.folding else None
    out = finn.write_finn_build_dir(args.model, args.out, args.board, args.clock_ns,
                                    target_fps=args.target_fps, folding=folding)
    if args.run:
        from codesign.backends.finn_plus import FinnConfig

        fout = finn.run_finn_build(out, collect_to=Path(args.collect_to) if args.collect_to else None,
                                   config=FinnConfig.from_env(args.finn_python))
        log.info("FINN+ estimate reports in %s/report; hardware steps: %s", fout, finn.finn_command_hint(out))
    else:
        log.info("%s", finn.finn_command_hint(out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="Vivado project (block design, bitstream script) + PYNQ driver for a build",
                       description="Write a self-contained Vivado project folder for BUILD (from "
                                   "`codesign compile ... --rtl`): IP packaging, block design, bitstream "
                                   "script, build.sh and the PYNQ driver package under deploy/.")
    p.add_argument("build", type=Path, help="build folder with dataflow.onnx, rtl/ and report/")
    p.add_argument("--board", required=True, help="target board, e.g. Pynq-Z2, Ultra96-V2, ZCU104, KV260")
    p.add_argument("--out", type=Path, required=True,
                   help="project folder, e.g. vivado_projects/tfc_w2a2 (its name names the .bit/.hwh)")
    p.add_argument("--name", help="project/bitfile name (default: the --out folder name)")
    p.add_argument("--clock-ns", type=float, default=None,
                   help="clock period in ns (default: the build's report/estimate_network_performance.json)")
    p.add_argument("--build-bitstream", action="store_true",
                   help="run build.sh now (needs vivado on PATH; tens of minutes)")
    p.add_argument("--jobs", type=int, default=4, help="Vivado parallel jobs with --build-bitstream")
    p.set_defaults(func=_deploy)

    f = sub.add_parser("finn", help="FINN+ build directory for a QONNX model (--run: FINN+'s estimate steps)",
                       description="Write model.onnx, dataflow_build_config.json, folding_config.json and build.py "
                                   "for FINN+ (`finn build dataflow_build_config.json model.onnx` with Vivado).")
    f.add_argument("model", type=Path, help="QONNX model (model.onnx from `codesign export`)")
    f.add_argument("--board", required=True)
    f.add_argument("--out", type=Path, required=True, help="FINN build directory to write")
    f.add_argument("--clock-ns", type=float, default=10.0)
    f.add_argument("--target-fps", type=int, default=None)
    f.add_argument("--folding", help="codesign folding_config.json (BUILD/folding_config.json) to translate")
    f.add_argument("--run", action="store_true",
                   help="run FINN+'s estimate steps now (FINN+ environment from tools/setup_finn.sh; no Vivado)")
    f.add_argument("--finn-python", default=None,
                   help="FINN+ environment's python (default: $CODESIGN_FINN_PYTHON or .venv-finn/bin/python)")
    f.add_argument("--collect-to", help="copy FINN's report/*.json here (e.g. BUILD/report/finn)")
    f.set_defaults(func=_finn)
