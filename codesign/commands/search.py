"""`codesign search CONFIG`: the co-design loop on a config's run folder (float model reused or trained).

`--storage URL --workers N` lets N processes (here) and any number of machines (same URL, with
`--trials-only`) share one optuna study; killed and restarted, the search resumes from the study.
`codesign search --status RUN` prints the study's state (per worker) from its database.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_search_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument("--strategy", choices=("relevance", "optuna", "uniform", "random"), default=None,
                   help="search strategy (default: the config's, else relevance)")
    g.add_argument("--trials", type=int, default=None, help="short-QAT trainings to spend")
    g.add_argument("--storage", default=None, help="optuna RDB URL (default: sqlite in RUN/search/study.db)")
    g.add_argument("--workers", type=int, default=None, help="worker processes sharing the study")
    g.add_argument("--device", default=None,
                   help="torch device for this process's training (cpu, cuda, cuda:N; default: the config's, else cpu)")
    g.add_argument("--study-name", default=None)
    g.add_argument("--trials-only", action="store_true",
                   help="only run trials (a worker on another machine); no finalists, compile or report")
    g.add_argument("--no-compile", action="store_true", help="skip compiling the chosen design")
    g.add_argument("--rtl", action="store_true", help="generate RTL for the chosen design")
    g.add_argument("--rtlsim", action="store_true", help="simulate the RTL (Verilator)")
    g.add_argument("--synth", action="store_true", help="synthesize the RTL (Yosys)")
    g.add_argument("--no-progress", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="co-design search: bits/pruning under an FPGA budget",
                       description="Relevance-guided search over per-layer bits and pruning with the cost model "
                                   "in the loop, short QAT to rank, full QAT for the Pareto finalists.",
                       epilog="example: codesign search examples/tfc_fashionmnist_pynqz2.yaml --workers 2")
    p.add_argument("config", type=Path, nargs="?", help="run config (.yaml); not needed with --status")
    p.add_argument("--out", type=Path, default=None, help="override the config's run folder")
    p.add_argument("--status", type=Path, default=None, metavar="RUN",
                   help="print the state of RUN's study (trials done/running/failed, best, per worker) and exit")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    add_search_args(p)
    p.set_defaults(func=run)


def apply_overrides(cfg, args: argparse.Namespace) -> None:
    s = cfg.search
    for key in ("strategy", "trials", "storage", "workers", "study_name"):
        v = getattr(args, key, None)
        if v is not None:
            setattr(s, key, v)
    if getattr(args, "device", None):
        cfg.device = args.device
    for key in ("rtl", "rtlsim", "synth"):
        if getattr(args, key, False):
            setattr(cfg.hw, key, True)
    if cfg.hw.rtlsim or cfg.hw.synth:
        cfg.hw.rtl = True


def execute(cfg, out: Path, args: argparse.Namespace) -> dict | None:
    """prepare -> trials -> finalize -> console table; shared by `search` and `run`."""
    from codesign.search.loop import finalize, prepare, run_trials
    from codesign.search.report import print_summary
    from codesign.train import check_device

    cfg.device = check_device(cfg.device)  # before minutes of data loading and training
    ctx = prepare(cfg, out, progress=not args.no_progress)
    info = run_trials(ctx)
    log.info("trials: %s (%d designs in the study)", info["stop_reason"], len(info["records"]))
    if args.trials_only:
        return None
    summary = finalize(ctx, info, compile_design=not args.no_compile)
    print_summary(summary)
    ch = summary["chosen"]
    log.info("chosen design %s: test acc %.4f, %s LUT, %.0f FPS; report %s", ch["describe"], ch["test_acc"] or 0,
             f"{ch['LUT']:,}", ch["fps"], out / "report" / "index.html")
    return summary


def status(args: argparse.Namespace) -> int:
    import json
    import sys

    from codesign.search.status import print_status, run_status

    st = run_status(args.status, storage=args.storage, study=args.study_name)
    if args.json:
        sys.stdout.write(json.dumps(st, indent=2) + "\n")
    else:
        print_status(st)
    return 0


def run(args: argparse.Namespace) -> int:
    from codesign.config import load_config
    from codesign.errors import CodesignError

    if args.status is not None:
        return status(args)
    if args.config is None:
        raise CodesignError("codesign search: give a run config (codesign search CONFIG.yaml) or --status RUN")
    cfg = load_config(args.config)
    apply_overrides(cfg, args)
    from codesign.commands.common import check_out_dir

    execute(cfg, check_out_dir(Path(args.out or cfg.out), "out"), args)
    return 0
