"""`codesign run CONFIG.yaml`: the whole job end to end from one config file.

float model (trained or reused) -> DeepLIFT relevance -> co-design search (cost model, short
QAT, Pareto finalists with full QAT) -> export -> compile -> RTL/rtlsim/synth when asked.
Steps whose output already exists in the run folder are skipped and the search resumes from
its study, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from codesign.commands.search import add_search_args

    p = sub.add_parser("run", help="run the whole co-design flow from a config file",
                       description="Train (or reuse) the float model, compute relevance, search bits/pruning "
                                   "under the board budget at the target FPS, full QAT of the finalists, export, "
                                   "compile (and RTL/rtlsim/synth with the flags), as configured in a YAML file.",
                       epilog="example: codesign run examples/tfc_fashionmnist_pynqz2.yaml")
    p.add_argument("config", type=Path, help="run config (.yaml)")
    p.add_argument("--out", type=Path, default=None, help="override the config's run folder")
    add_search_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.commands.search import apply_overrides, execute
    from codesign.config import load_config

    t0 = time.time()
    cfg = load_config(args.config)
    apply_overrides(cfg, args)
    from codesign.commands.common import check_out_dir

    out = check_out_dir(Path(args.out or cfg.out), "out")
    execute(cfg, out, args)
    log.info("%s finished in %.1f s (run folder %s)", cfg.name, time.time() - t0, out)
    return 0
