#!/usr/bin/env python
"""Sweep target FPS across boards: the relevance-guided design that fits each (board, FPS) and
its resources — from the cost model alone (milliseconds per design) — and, with `--qat`, its
accuracy after a short QAT on the run folder's float model.

Start from a run folder made by `codesign run` (float.pt + relevance.json):

    python scripts/sweep_boards.py runs/tfc_fashionmnist_pynqz2 \
        --boards Pynq-Z2 Ultra96-V2 ZCU104 --fps 10000 100000 1000000 [--util 0.8] [--qat]

Prints a table (board, FPS, design, LUT, BRAM18, DSP, binding utilisation, [val acc]) and writes
sweep.json into the run folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesign.atomic import write_json  # noqa: E402
from codesign.errors import CodesignError  # noqa: E402

log = logging.getLogger("sweep_boards")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder with float.pt and relevance.json")
    ap.add_argument("--boards", nargs="+", default=["Pynq-Z2", "Ultra96-V2", "ZCU104", "KV260"])
    ap.add_argument("--fps", nargs="+", type=float, default=[1e4, 1e5, 1e6])
    ap.add_argument("--util", type=float, default=0.8, help="cap per resource (fraction of the board)")
    ap.add_argument("--lut", type=int, default=None, help="extra absolute LUT budget")
    ap.add_argument("--qat", action="store_true", help="short-QAT each design for its accuracy")
    ap.add_argument("--max-batches", type=int, default=30)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return sweep(args)
    except CodesignError as exc:
        log.error("%s", exc)
        return 2


def sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from codesign.config import RunConfig, SearchSettings
    from codesign.dataflow.boards import get_board
    from codesign.relevance import load_relevance
    from codesign.search.feedback import InfeasibleBudgetError, RelevanceFeedback, check_achievable
    from codesign.designspace.estimate import HwEstimator
    from codesign.search.loop import SearchContext, build_space, train_candidate
    from codesign.search.strategies import boundary_seeds
    from codesign.train import load_checkpoint

    fck = args.run / "float.pt"
    if not fck.is_file() or not (args.run / "relevance.json").is_file():
        raise CodesignError(f"{args.run} lacks float.pt/relevance.json: run `codesign run CONFIG` first")
    ck = load_checkpoint(fck)
    spec = ck["spec"]
    rel = load_relevance(args.run / "relevance.json", spec)
    cfg = RunConfig(model=spec["name"], dataset=ck["meta"]["dataset"], search=SearchSettings())
    cfg.search.rank.max_batches = args.max_batches
    space = build_space(cfg, spec)
    splits = None
    rows = []
    for bname in args.boards:
        board = get_board(bname)
        for fps in args.fps:
            hw = HwEstimator(space, board.name, fps, board.default_clock_ns, args.util,
                             {"LUT": args.lut} if args.lut else None)
            row = {"board": board.name, "fps": fps, "clock_ns": board.default_clock_ns}
            try:
                check_achievable(space, hw)
            except InfeasibleBudgetError as exc:
                row.update(design=None, reason=str(exc).split(". Raise")[0])
                rows.append(row)
                continue
            fb = RelevanceFeedback(space, hw, rel.layer_scores(), {n: rel.units(n) for n in space.prunable})
            seeds = boundary_seeds(space, fb)
            best = min(seeds, key=lambda c: fb.damage(space.largest(), c))  # least relevance lost
            est = hw.estimate(best)
            u = max(est.totals[r] / (getattr(board, r) or 1) for r in ("LUT", "BRAM_18K", "DSP"))
            row.update(design=best.describe(), candidate=best.to_json(), **est.totals, est_fps=est.fps, binding=u)
            if args.qat:
                from codesign.flow import dataset_for

                splits = splits or dataset_for(ck["meta"])
                from codesign.search.loop import _subset
                from codesign.data import DatasetSplits

                val = _subset(splits.val, 2000)
                ctx = SearchContext(cfg, args.run, splits, DatasetSplits(splits.train, val, _subset(val, 256),
                                    splits.num_classes, splits.input_shape, splits.class_names, splits.name),
                                    spec, rel, space, hw, fck)
                res = train_candidate(ctx, best, args.run / "sweep" / best.hash, short=True)
                row["val_acc"] = res["val_acc"]
            rows.append(row)
    t = Table(title=f"{spec['name']}: relevance-guided designs per board and target FPS (util cap {args.util:.0%})")
    for c in ("board", "FPS", "design", "LUT", "BRAM18", "DSP", "util", "val acc"):
        t.add_column(c)
    for r in rows:
        if r.get("design") is None:
            t.add_row(r["board"], f"{r['fps']:,.0f}", f"[red]{r['reason']}[/red]", "", "", "", "", "")
        else:
            t.add_row(r["board"], f"{r['fps']:,.0f}", r["design"], f"{r['LUT']:,}", str(r["BRAM_18K"]), str(r["DSP"]),
                      f"{r['binding']:.0%}", f"{r['val_acc']:.2%}" if "val_acc" in r else "-")
    Console().print(t)
    write_json(args.run / "sweep.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
