#!/usr/bin/env python
"""The headline benchmark: relevance-guided co-design vs uniform w4a4 / w2a2 vs optuna (NSGA-II)
without relevance seeding, on the default example (TFC, Fashion-MNIST, PYNQ-Z2, 100k FPS,
8,000-LUT budget), same target FPS, several seeds.

Per seed: one float model + relevance (shared), then each strategy's search with the same
trial budget, full QAT of its finalists, and the uniform baselines with the same full QAT.
Reported: estimated LUT at the target FPS (compiler cost model), test accuracy, whether the
budget is met, and the time from float model to final design (search + finalists).

    python benchmarks/bench_codesign.py            # 3 seeds, the example's settings
    python benchmarks/bench_codesign.py --quick    # 1 seed, 12k training images, fewer trials

Writes benchmarks/results/codesign[_quick].json and .png; run folders in runs/bench_codesign/.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_codesign")


def run_seed(cfg_path: Path, seed: int, quick: bool, strategies: list[str], runs: Path) -> dict:
    from codesign.config import load_config
    from codesign.search.loop import finalize, prepare, run_trials

    cfg = load_config(cfg_path)
    cfg.seed = seed
    if quick:
        cfg.limit_train = 12000
        cfg.limit_test = 5000
        cfg.train.epochs = 2
        cfg.qat.epochs = 1
        cfg.search.trials = 6
        cfg.search.finalists = 1
        cfg.search.rank.max_batches = 20
        cfg.search.rank.val_samples = 1000
    out = runs / f"seed{seed}{'_quick' if quick else ''}"
    t0 = time.time()
    ctx = prepare(cfg, out)
    res: dict = {"seed": seed, "prepare_s": time.time() - t0, "float_test_acc": None, "strategies": {}}
    for strat in strategies:
        ctx.subdir = f"search-{strat}"
        t1 = time.time()
        info = run_trials(ctx, strategy=strat, seed_relevance=False if strat == "optuna" else None)
        summ = finalize(ctx, info, compile_design=False, promote=False)
        ch = summ["chosen"]
        res["strategies"][strat] = {"test_acc": ch["test_acc"], "LUT": ch["LUT"], "BRAM_18K": ch["BRAM_18K"],
                                    "DSP": ch["DSP"], "fps": ch["fps"], "feasible": ch["feasible"],
                                    "design": ch["describe"], "trials": len(info["records"]),
                                    # search + finalists' full QAT (the shared baselines excluded)
                                    "seconds_to_final": summ["seconds"].get("search", 0.0)
                                    + summ["seconds"].get("finalists", 0.0),
                                    "wall_seconds": time.time() - t1, "stop_reason": info["stop_reason"]}
        res["float_test_acc"] = summ.get("float_test_acc")
        for b in summ["baselines"]:
            res["strategies"][f"uniform {b['name']}"] = {"test_acc": b["test_acc"], "LUT": b["LUT"],
                                                         "BRAM_18K": b["BRAM_18K"], "DSP": b["DSP"], "fps": b["fps"],
                                                         "feasible": b["feasible"], "design": b["describe"]}
    return res


def aggregate(results: list[dict]) -> dict:
    names = list(results[0]["strategies"])
    agg = {}
    for n in names:
        vals = [r["strategies"][n] for r in results if n in r["strategies"]]
        accs = [v["test_acc"] for v in vals if v["test_acc"] is not None]
        agg[n] = {"test_acc_mean": statistics.mean(accs), "test_acc_std": statistics.pstdev(accs),
                  "LUT_mean": statistics.mean(v["LUT"] for v in vals), "fits": all(v["feasible"] for v in vals),
                  "seconds_to_final_mean": (statistics.mean(v["seconds_to_final"] for v in vals)
                                            if "seconds_to_final" in vals[0] else None), "seeds": len(vals)}
    return agg


def plot(agg: dict, path: Path, lut_limit: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, a in agg.items():
        ax.errorbar([a["LUT_mean"]], [a["test_acc_mean"]], yerr=[a["test_acc_std"]], fmt="o", capsize=4, label=n)
    ax.axvline(lut_limit, color="k", ls="--", lw=1, label="LUT budget")
    ax.set_xlabel("LUT (cost model, at the target FPS)")
    ax.set_ylabel("test accuracy (full QAT)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("co-design: relevance-guided vs baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from codesign.atomic import write_json
    from codesign.config import load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "tfc_fashionmnist_pynqz2.yaml")
    ap.add_argument("--strategies", nargs="+", default=["relevance", "optuna"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for n in ("codesign.train", "codesign.compress.pipeline", "codesign.compress.prune", "codesign.flow",
              "codesign.export"):
        logging.getLogger(n).setLevel(logging.WARNING)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    runs = ROOT / "runs" / "bench_codesign"
    t0 = time.time()
    results = [run_seed(args.config, s, args.quick, args.strategies, runs) for s in seeds]
    agg = aggregate(results)
    cfg = load_config(args.config)
    tag = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"codesign{tag}.json", {"config": str(args.config.relative_to(ROOT)), "quick": args.quick,
                                                  "seeds": seeds, "target_fps": cfg.target_fps, "board": cfg.board,
                                                  "budget": cfg.search.budget, "aggregate": agg, "runs": results,
                                                  "total_seconds": time.time() - t0})
    plot(agg, args.out / f"codesign{tag}.png", float(cfg.search.budget.get("LUT", 0) or 0))
    print(f"{'design':<18} {'test acc':>16} {'LUT':>8} {'fits':>5} {'time to final':>14}")
    for n, a in agg.items():
        tt = f"{a['seconds_to_final_mean']:.0f} s" if a["seconds_to_final_mean"] else "-"
        print(f"{n:<18} {100 * a['test_acc_mean']:>8.2f} ± {100 * a['test_acc_std']:.2f}% {a['LUT_mean']:>8.0f} "
              f"{'yes' if a['fits'] else 'NO':>5} {tt:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
