#!/usr/bin/env python
"""The paper's three studies on Fashion-MNIST with SFC (MLP) and LeNet (CNN).

(a) accuracy vs pruning ratio, structured (filters/neurons removed) and unstructured (FC
    weights masked), DeepLIFT vs magnitude vs Taylor vs random;
(b) accuracy vs K for weight sharing, relevance-weighted vs plain k-means;
(c) accuracy vs average weight bits, relevance vs uniform vs Hessian allocation.

Every compressed model goes through the same `codesign.compress.pipeline.compress` with the
same fine-tuning budget (epochs, learning rate, batches), so only the criterion differs.
Studies (a) and (b) fine-tune in float (`quantize=False`: they compare criteria, and Brevitas
QAT costs ~5x more CPU); study (c) is about precision and runs real QAT.
Each point also records the accuracy *before* fine-tuning (pruned/clustered float model,
evaluated directly), which shows the criterion's choice without fine-tuning's repair.

    .venv/bin/python scripts/paper_experiments.py --quick      # 1 seed, small subsets, minutes
    .venv/bin/python scripts/paper_experiments.py              # 3 seeds, the full study

Results: benchmarks/results/paper_experiments[_quick].{json,png,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codesign.atomic import atomic_write, write_json, write_text  # noqa: E402
from codesign.compress.cluster import cluster_layer  # noqa: E402
from codesign.compress.pipeline import CompressConfig, compress  # noqa: E402
from codesign.compress.prune import MaskHook, prune_structured, weight_masks  # noqa: E402
from codesign.data import load_dataset, make_loaders, sample_batch  # noqa: E402
from codesign.flow import train_float  # noqa: E402
from codesign.models import build_float  # noqa: E402
from codesign.models.zoo import quant_layers  # noqa: E402
from codesign.relevance import compute_relevance, weight_relevance  # noqa: E402
from codesign.train import TrainConfig, evaluate, load_checkpoint  # noqa: E402

log = logging.getLogger("paper_experiments")

PRUNE_METHODS = ("deeplift", "magnitude", "taylor", "random")
ALLOCATORS = ("relevance", "uniform", "hessian")


def settings(quick: bool) -> dict:
    if quick:
        return {"seeds": [0], "limit_train": 2000, "limit_test": 1000, "float_epochs": 3, "ft_epochs": 1,
                "samples": 256, "ratios": [0.5, 0.8], "ks": [2, 8], "avg_bits": [3.0, 4.0]}
    return {"seeds": [0, 1, 2], "limit_train": 10000, "limit_test": 10000, "float_epochs": 6, "ft_epochs": 2,
            "samples": 512, "ratios": [0.25, 0.5, 0.75, 0.9], "ks": [2, 4, 8, 16], "avg_bits": [2.5, 3.0, 4.0, 5.0]}


def _eval_state(spec, state, splits) -> float:
    m = build_float(spec)
    m.load_state_dict(state)
    _, _, test = make_loaders(splits, 256)
    return evaluate(m.eval(), test)[0]


def run_model(model_name: str, seed: int, st: dict, work: Path, splits, progress: bool) -> list[dict]:
    rows: list[dict] = []
    run = work / f"{model_name}_s{seed}"
    tc = TrainConfig(epochs=st["float_epochs"], lr=2e-3, patience=None, seed=seed, progress=progress)
    fl = train_float(model_name, "fashion-mnist", run, tc, limit_train=st["limit_train"],
                     limit_test=st["limit_test"], splits=splits)
    ck = load_checkpoint(run / "float.pt")
    spec, state = ck["spec"], ck["state_dict"]
    model = build_float(spec)
    model.load_state_dict(state)
    model.eval()
    x, y = sample_batch(splits, st["samples"], "train")
    rels = {m: compute_relevance(model, spec, x, y, method=m, seed=seed, progress=False) for m in PRUNE_METHODS}
    base = {"model": model_name, "seed": seed}
    rows.append({**base, "study": "float", "acc": fl["test_acc"]})
    ft = TrainConfig(epochs=st["ft_epochs"], lr=5e-4, patience=None, seed=seed, progress=progress)

    def point(study: str, out: str, cfg: CompressConfig, rel, extra: dict, acc_no_ft: float | None) -> None:
        t0 = time.time()
        s = compress(run / "float.pt", rel, run / out, cfg, splits=splits)
        rows.append({**base, "study": study, **extra, "acc": s["test_acc"], "acc_no_ft": acc_no_ft,
                     "weights": s["weights"], "avg_weight_bits": s["avg_weight_bits"],
                     "seconds": time.time() - t0})
        log.info("%s %s %s: acc %.4f (no fine-tune %s)", model_name, study, extra, s["test_acc"],
                 f"{acc_no_ft:.4f}" if acc_no_ft is not None else "-")

    # (a) pruning
    for r in st["ratios"]:
        for method in PRUNE_METHODS:
            rel = rels[method]
            pr = prune_structured(spec, state, rel, r)
            point("prune_structured", f"ps_{method}_{r}",
                  CompressConfig(prune_filters=r, qat=ft, quantize=False, seed=seed),
                  rel, {"method": method, "ratio": r}, _eval_state(pr.spec, pr.state_dict, splits))
            masks = weight_masks(model, spec, rel, r)
            ms = MaskHook(masks).apply_state(dict(state))
            point("prune_unstructured", f"pu_{method}_{r}",
                  CompressConfig(prune_weights=r, qat=ft, quantize=False, seed=seed),
                  rel, {"method": method, "ratio": r}, _eval_state(spec, ms, splits))
    # (b) weight sharing
    rel = rels["deeplift"]
    for k in st["ks"]:
        for weighted in (True, False):
            cs = dict(state)
            for l in quant_layers(spec):
                n = l["name"]
                w = model.layer(n).weight
                c = cluster_layer(w, k, relevance=weight_relevance(rel, n, w) if weighted else None, seed=seed)
                cs[f"body.{n}.weight"] = c.tie(w.detach())
            point("cluster", f"cl_{'w' if weighted else 'p'}_{k}",
                  CompressConfig(cluster=k, cluster_weighted=weighted, qat=ft, quantize=False, seed=seed),
                  rel, {"method": "relevance-weighted" if weighted else "plain", "k": k},
                  _eval_state(spec, cs, splits))
    # (c) bit allocation
    for b in st["avg_bits"]:
        for alloc in ALLOCATORS:
            point("bits", f"b_{alloc}_{b}",
                  CompressConfig(bits=f"avg:{b}", allocator=alloc, qat=ft, export=False, seed=seed,
                                 relevance_samples=st["samples"]),
                  rel, {"method": alloc, "budget": b}, None)
            rows[-1]["plan"] = json.loads((run / f"b_{alloc}_{b}" / "plan.json").read_text())["layers"]
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per (model, study, method, x)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["study"] == "float":
            key = (r["model"], "float", "-", 0.0)
        else:
            xk = {"prune_structured": "ratio", "prune_unstructured": "ratio", "cluster": "k", "bits": "budget"}[r["study"]]
            key = (r["model"], r["study"], r["method"], float(r[xk]))
        groups.setdefault(key, []).append(r)
    out = []
    for (model, study, method, xv), rs in sorted(groups.items()):
        accs = [r["acc"] for r in rs]
        nft = [r["acc_no_ft"] for r in rs if r.get("acc_no_ft") is not None]
        out.append({"model": model, "study": study, "method": method, "x": xv, "n": len(rs),
                    "acc_mean": statistics.fmean(accs), "acc_std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                    "acc_no_ft_mean": statistics.fmean(nft) if nft else None,
                    "avg_weight_bits": statistics.fmean(r.get("avg_weight_bits", 32) for r in rs)})
    return out


def plot(agg: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({a["model"] for a in agg})
    studies = [("prune_structured", "pruning ratio (structured)"), ("prune_unstructured", "pruning ratio (unstructured FC)"),
               ("cluster", "K (shared values / layer)"), ("bits", "average weight bits")]
    fig, axes = plt.subplots(len(models), len(studies), figsize=(4.2 * len(studies), 3.4 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        fl = [a for a in agg if a["model"] == m and a["study"] == "float"]
        for j, (study, label) in enumerate(studies):
            ax = axes[i][j]
            pts = [a for a in agg if a["model"] == m and a["study"] == study]
            for method in sorted({a["method"] for a in pts}):
                ps = sorted((a for a in pts if a["method"] == method), key=lambda a: a["x"])
                ax.errorbar([p["x"] for p in ps], [p["acc_mean"] for p in ps], yerr=[p["acc_std"] for p in ps],
                            marker="o", capsize=3, label=method)
            if fl:
                ax.axhline(fl[0]["acc_mean"], color="gray", ls="--", lw=1, label="float")
            if study == "cluster":
                ax.set_xscale("log", base=2)
            ax.set_title(f"{m}: {label}", fontsize=9)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel("test accuracy", fontsize=8)
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def table(agg: list[dict], st: dict, cmd: str, seconds: float) -> str:
    lines = [f"Command: `{cmd}` ({seconds / 60:.1f} min; seeds {st['seeds']}, {st['limit_train']} train / "
             f"{st['limit_test']} test images, float {st['float_epochs']} epochs, equal fine-tune budget of "
             f"{st['ft_epochs']} epoch(s) per point: float fine-tuning for pruning and clustering, QAT for "
             "bits). Accuracy: test accuracy, mean over seeds (± std); 'no FT': before fine-tuning.", ""]
    lines += ["| model | study | x | method | acc | no FT |", "|---|---|---|---|---|---|"]
    for a in agg:
        if a["study"] == "float":
            lines.append(f"| {a['model']} | float | - | - | {a['acc_mean']:.4f} | - |")
            continue
        nft = f"{a['acc_no_ft_mean']:.4f}" if a["acc_no_ft_mean"] is not None else "-"
        std = f" ± {a['acc_std']:.4f}" if a["n"] > 1 else ""
        xs = f"{a['x']:g}"
        lines.append(f"| {a['model']} | {a['study']} | {xs} | {a['method']} | {a['acc_mean']:.4f}{std} | {nft} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 seed, small subsets (a few minutes)")
    p.add_argument("--models", nargs="+", default=["sfc", "lenet"])
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--work", type=Path, default=None, help="run folders (default: /tmp/codesign-paper)")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("codesign.train", "codesign.flow", "codesign.compress", "codesign.relevance", "codesign.data"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    st = settings(args.quick)
    if args.seeds:
        st["seeds"] = args.seeds
    work = args.work or Path("/tmp/codesign-paper") / ("quick" if args.quick else "full")
    t0 = time.time()
    rows: list[dict] = []
    for seed in st["seeds"]:
        splits = load_dataset("fashion-mnist", seed=seed, limit_train=st["limit_train"], limit_test=st["limit_test"])
        for m in args.models:
            rows += run_model(m, seed, st, work, splits, args.progress)
    seconds = time.time() - t0
    agg = aggregate(rows)
    stem = "paper_experiments" + ("_quick" if args.quick else "")
    cmd = "python scripts/paper_experiments.py" + (" --quick" if args.quick else "")
    write_json(args.out / f"{stem}.json", {"settings": st, "seconds": seconds, "rows": rows, "summary": agg})
    plot(agg, args.out / f"{stem}.png")
    write_text(args.out / f"{stem}.md", table(agg, st, cmd, seconds))
    log.info("done in %.1f min: %s", seconds / 60, args.out / f"{stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
