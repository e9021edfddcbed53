#!/usr/bin/env python
"""Bit allocation under one hardware budget: the ILP against its baselines, same LUT limit.

For one float model (Fashion-MNIST subset) and a LUT budget at a target FPS (by default halfway
between uniform w2a2's and w4a4's LUTs), every allocator goes through `codesign.compress.pipeline.compress`
with the same QAT budget: the exact ILP with the DeepLIFT sensitivity table, the greedy walk
with the same table, the ILP with the HAWQ-V2 Hessian table, with magnitude and random tables,
and the widest uniform plan that fits. Reported per design: LUTs from the full cost model, the
DeepLIFT table's relevance lost (the ILP's objective) and test accuracy after QAT.

    .venv/bin/python scripts/hw_budget_allocation.py --model tfc --seeds 0

Results: benchmarks/results/hw_budget_allocation.{json,md}.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codesign.atomic import write_json, write_text  # noqa: E402
from codesign.compress.ilp import hw_budget_text  # noqa: E402
from codesign.compress.pipeline import CompressConfig, compress  # noqa: E402
from codesign.compress.sensitivity import load_table  # noqa: E402
from codesign.data import load_dataset, sample_batch  # noqa: E402
from codesign.flow import train_float  # noqa: E402
from codesign.models import build_float  # noqa: E402
from codesign.relevance import compute_relevance  # noqa: E402
from codesign.designspace.estimate import HwEstimator  # noqa: E402
from codesign.designspace.space import Candidate, SearchSpace  # noqa: E402
from codesign.train import TrainConfig, load_checkpoint  # noqa: E402

log = logging.getLogger("hw_budget_allocation")

ARMS = (("ilp", "deeplift", "relevance"), ("greedy", "deeplift", "relevance"), ("ilp", "deeplift", "hessian"),
        ("ilp", "magnitude", "relevance"), ("ilp", "random", "relevance"), ("ilp", "deeplift", "uniform"))


def _lut(hw: HwEstimator, plan: dict) -> int:
    return int(hw.estimate(Candidate.from_plan(plan)).totals["LUT"])


def run_seed(a: argparse.Namespace, seed: int, work: Path) -> list[dict]:
    splits = load_dataset("fashion-mnist", seed=seed, limit_train=a.limit_train, limit_test=a.limit_test)
    run = work / f"{a.model}_s{seed}"
    fl = train_float(a.model, "fashion-mnist", run,
                     TrainConfig(epochs=a.float_epochs, lr=2e-3, patience=None, seed=seed, progress=False),
                     limit_train=a.limit_train, limit_test=a.limit_test, splits=splits)
    ck = load_checkpoint(run / "float.pt")
    spec = ck["spec"]
    model = build_float(spec)
    model.load_state_dict(ck["state_dict"])
    x, y = sample_batch(splits, a.samples, "train")
    rels = {m: compute_relevance(model.eval(), spec, x, y, method=m, seed=seed, progress=False)
            for m in ("deeplift", "magnitude", "random")}
    sp = SearchSpace(spec, weight_bits=tuple(range(2, 9)), act_bits=tuple(range(2, 9)), prune_levels=(0.0,))
    hw = HwEstimator(sp, a.board, a.fps, None)
    ref = int(hw.estimate(sp.uniform(4, 4)).totals["LUT"])
    low = int(hw.estimate(sp.uniform(2, 2)).totals["LUT"])
    limit = int(low + a.budget_point * (ref - low))
    budget = hw_budget_text("ilp", {"LUT": limit}, a.fps, a.board).split(":", 1)[1]
    log.info("%s seed %d: float acc %.4f; uniform w4a4 %d LUT; budget %s", a.model, seed, fl["test_acc"], ref, budget)
    rows = [{"seed": seed, "arm": "float", "acc": fl["test_acc"], "w4a4_lut": ref, "w2a2_lut": low}]
    dl_table = None
    for kind, crit, alloc in ARMS:
        name = f"{kind}_{crit}_{alloc}"
        t0 = time.time()
        qat = TrainConfig(epochs=a.qat_epochs, lr=5e-4, patience=None, seed=seed, progress=False)
        cfg = CompressConfig(bits=f"{kind}:{budget}", allocator=alloc, qat=qat, export=False, seed=seed,
                             relevance_samples=a.samples)
        s = compress(run / "float.pt", rels[crit], run / name, cfg, splits=splits)
        if name == "ilp_deeplift_relevance":
            dl_table = load_table(run / name / "sensitivity.json")
        plan = s["plan"]
        wb = {n: e["weight_bits"] for n, e in plan["layers"].items()}
        ab = {n: e["act_bits"] for n, e in plan["layers"].items() if "act_bits" in e}
        rows.append({"seed": seed, "arm": name, "acc": s["test_acc"], "lut": _lut(hw, plan), "limit": limit,
                     "w4a4_lut": ref, "plan": {n: [wb[n], ab.get(n)] for n in wb},
                     "deeplift_damage": dl_table.damage(wb, ab) if dl_table else None,
                     "seconds": time.time() - t0})
        log.info("%s: acc %.4f, %d LUT (limit %d), plan %s", name, s["test_acc"], rows[-1]["lut"], limit,
                 rows[-1]["plan"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tfc")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--limit-train", type=int, default=2000)
    p.add_argument("--limit-test", type=int, default=1000)
    p.add_argument("--float-epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--fps", type=float, default=10000.0)
    p.add_argument("--board", default="Pynq-Z2")
    p.add_argument("--budget-point", type=float, default=0.5,
                   help="LUT budget between uniform w2a2 (0) and w4a4 (1) (default 0.5)")
    p.add_argument("--work", type=Path, default=Path("/tmp/codesign-hwbudget"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("codesign.train", "codesign.flow", "codesign.relevance", "codesign.data",
                  "codesign.compress.sensitivity"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t0 = time.time()
    rows = [r for s in a.seeds for r in run_seed(a, s, a.work)]
    cmd = "python scripts/hw_budget_allocation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(a.out / "hw_budget_allocation.json", {"args": {k: str(v) for k, v in vars(a).items()},
                                                     "seconds": time.time() - t0, "rows": rows})
    lines = [f"Command: `{cmd}` ({(time.time() - t0) / 60:.1f} min). LUT budget {a.budget_point:g} of the way from uniform w2a2 "
             f"to w4a4 at {a.fps:g} FPS on {a.board}; LUT from the cost model; relevance lost = the DeepLIFT table's.", "",
             "| seed | allocation | test acc | LUT | limit | DeepLIFT relevance lost | plan (w, a) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["arm"] == "float":
            lines.append(f"| {r['seed']} | float | {r['acc']:.4f} | w2a2 {r['w2a2_lut']:,}, w4a4 {r['w4a4_lut']:,} "
                         "| - | - | - |")
            continue
        d = f"{r['deeplift_damage']:.4f}" if r["deeplift_damage"] is not None else "-"
        plan = " ".join(f"{n}:{w}/{ab or '-'}" for n, (w, ab) in r["plan"].items())
        lines.append(f"| {r['seed']} | {r['arm']} | {r['acc']:.4f} | {r['lut']:,} | {r['limit']:,} | {d} | {plan} |")
    write_text(a.out / "hw_budget_allocation.md", "\n".join(lines) + "\n")
    log.info("wrote %s", a.out / "hw_budget_allocation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
