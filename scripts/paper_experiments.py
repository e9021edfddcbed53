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
    .venv/bin/python scripts/paper_experiments.py --full-data --shard 0/4 --no-report   # one of 4 runs
    .venv/bin/python scripts/paper_experiments.py --full-data  # resumes: cached cells are skipped

Every cell (study, model, criterion, ratio/K/budget, seed, fine-tune epochs) is cached as one
JSON file under WORK/cells/ (atomic write), so a killed study resumes and shards share results.
The report adds paired differences between criteria with 95% t-intervals over seeds.

Results: benchmarks/results/paper_experiments[_quick][_60k].{json,png,md} (_60k: --full-data).
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
from codesign.compress.depgraph import needs_depgraph, prune_structured_graph  # noqa: E402
from codesign.compress.pipeline import CompressConfig, compress  # noqa: E402
from codesign.compress.prune import MaskHook, prune_structured, weight_masks  # noqa: E402
from codesign.data import load_dataset, make_loaders, sample_batch  # noqa: E402
from codesign.flow import train_float  # noqa: E402
from codesign.models import build_float  # noqa: E402
from codesign.models.zoo import module_paths, quant_layers  # noqa: E402
from codesign.relevance import compute_relevance, weight_relevance  # noqa: E402
from codesign.train import TrainConfig, evaluate, load_checkpoint  # noqa: E402

log = logging.getLogger("paper_experiments")

PRUNE_METHODS = ("deeplift", "magnitude", "taylor", "random")
ALLOCATORS = ("relevance", "uniform", "hessian")


def settings(quick: bool, full_data: bool = False) -> dict:
    """Study settings. ``full_data``: the whole Fashion-MNIST (60k train / 10k test)."""
    if quick:
        st = {"seeds": [0], "limit_train": 2000, "limit_test": 1000, "float_epochs": 3, "ft_budgets": [1],
              "samples": 256, "ratios": [0.5, 0.8], "ks": [2, 8], "avg_bits": [3.0, 4.0]}
    else:
        st = {"seeds": [0, 1, 2], "limit_train": 10000, "limit_test": 10000, "float_epochs": 6,
              "ft_budgets": [0, 1, 5], "samples": 512, "ratios": [0.25, 0.5, 0.75, 0.9], "ks": [2, 4, 8, 16],
              "avg_bits": [2.5, 3.0, 4.0, 5.0]}
    if full_data:
        st["limit_train"] = st["limit_test"] = None
    return st


# ------------------------------------------------------------------------------- cells

def _eval_state(spec, state, splits) -> float:
    """Test accuracy of a float model with ``state`` (the before-fine-tuning figure)."""
    m = build_float(spec)
    m.load_state_dict(state)
    _, _, test = make_loaders(splits, 256)
    return evaluate(m.eval(), test)[0]


#: the pruning studies: filters, FC weights ranked across each layer, FC weights ranked within each
#: unit (every unit, e.g. every output class, keeps its strongest inputs; see prune.weight_masks).
#: Within one unit a weight's score is the unit's score times its share |w| * mean|a| of the
#: unit's input, so DeepLIFT, magnitude and Taylor rank a unit's weights identically
#: (weight_relevance; measured equal for DeepLIFT and magnitude on SFC at 75% and 90%): the
#: per-unit study runs DeepLIFT alone.
PRUNE_STUDIES = ("prune_structured", "prune_unstructured", "prune_unstructured_unit")


def cell_key(c: dict) -> str:
    """Stable file name of one cell: study, model, criterion, x (ratio/k/budget), seed, fine-tune epochs."""
    x = "-" if c.get("x") is None else f"{float(c['x']):g}"
    return f"{c['study']}__{c['model']}__{c['method']}__{x}__s{c['seed']}__ft{c['ft']}"


def enumerate_cells(st: dict, models: list[str]) -> list[dict]:
    """Every cell of the study in a fixed order (the shard and resume unit). At 0 fine-tune
    epochs the bits study is left out: QAT needs training to set its activation scales."""
    cells: list[dict] = []
    for seed in st["seeds"]:
        for m in models:
            cells.append({"study": "float", "model": m, "method": "-", "x": None, "seed": seed, "ft": 0})
            for ft in st["ft_budgets"]:
                for r in st["ratios"]:
                    for method in PRUNE_METHODS:
                        for study in PRUNE_STUDIES:
                            if study == "prune_unstructured_unit" and method != "deeplift":
                                continue  # within a unit every unit-derived criterion ranks alike (PRUNE_STUDIES)
                            cells.append({"study": study, "model": m, "method": method, "x": r, "seed": seed, "ft": ft})
                for k in st["ks"]:
                    for method in ("relevance-weighted", "plain"):
                        cells.append({"study": "cluster", "model": m, "method": method, "x": k, "seed": seed, "ft": ft})
                if ft > 0:
                    for b in st["avg_bits"]:
                        for alloc in ALLOCATORS:
                            cells.append({"study": "bits", "model": m, "method": alloc, "x": b, "seed": seed, "ft": ft})
    return cells


def select_cells(cells: list[dict], shard: str | None = None, keys: list[str] | None = None) -> list[dict]:
    """``shard`` 'i/n': every n-th cell from i (0-based); ``keys``: only these cell keys."""
    if keys is not None:
        want = set(keys)
        unknown = want - {cell_key(c) for c in cells}
        if unknown:
            raise SystemExit(f"--cells-from names unknown cells, e.g. {sorted(unknown)[0]} (see --list-cells)")
        cells = [c for c in cells if cell_key(c) in want]
    if shard:
        try:
            i, n = (int(v) for v in shard.split("/"))
            assert 0 <= i < n
        except (ValueError, AssertionError):
            raise SystemExit(f"--shard '{shard}' not understood: use i/n with 0 <= i < n, e.g. 0/4") from None
        cells = [c for j, c in enumerate(cells) if j % n == i]
    return cells


def run_cells(cells: list[dict], runner, cache: Path) -> tuple[list[dict], int]:
    """Run the cells not yet in ``cache`` (one JSON per cell, written atomically as it finishes,
    so a killed study resumes where it stopped). Returns (rows of these cells, newly run count)."""
    rows, ran = [], 0
    for c in cells:
        f = cache / f"{cell_key(c)}.json"
        if f.is_file():
            rows.append(json.loads(f.read_text()))
            continue
        row = {**c, **runner(c)}
        write_json(f, row)
        rows.append(row)
        ran += 1
    return rows, ran


class ModelContext:
    """Float model, relevances and data of one (model, seed), built once per process and cached
    on disk (float.pt, rel_<method>.json) so another shard reuses them."""

    def __init__(self, model_name: str, seed: int, st: dict, work: Path, progress: bool, device: str = "cpu"):
        from codesign.relevance import load_relevance

        self.model_name, self.seed, self.st, self.device = model_name, seed, st, device
        self.run = work / f"{model_name}_s{seed}"
        self.splits = load_dataset("fashion-mnist", seed=seed, limit_train=st["limit_train"],
                                   limit_test=st["limit_test"])
        if not (self.run / "float.pt").is_file():
            tc = TrainConfig(epochs=st["float_epochs"], lr=2e-3, patience=None, seed=seed, progress=progress,
                             device=device)
            train_float(model_name, "fashion-mnist", self.run, tc, limit_train=st["limit_train"],
                        limit_test=st["limit_test"], splits=self.splits)
        ck = load_checkpoint(self.run / "float.pt")
        self.float_acc = ck["meta"].get("test_acc")
        self.spec, self.state = ck["spec"], ck["state_dict"]
        self.model = build_float(self.spec)
        self.model.load_state_dict(self.state)
        self.model.eval()
        x, y = sample_batch(self.splits, st["samples"], "train")
        self.rels = {}
        for m in PRUNE_METHODS:
            f = self.run / f"rel_{m}.json"
            if f.is_file():
                self.rels[m] = load_relevance(f, self.spec)
            else:
                self.rels[m] = compute_relevance(self.model, self.spec, x, y, method=m, seed=seed, progress=False)
                self.rels[m].save(f)
        self.progress = progress


def run_cell(c: dict, ctx: ModelContext) -> dict:
    """One cell: the compressed model's test accuracy (and before fine-tuning where defined)."""
    spec, state, splits, model, st = ctx.spec, ctx.state, ctx.splits, ctx.model, ctx.st
    if c["study"] == "float":
        return {"acc": ctx.float_acc}
    seed, ft, x = c["seed"], c["ft"], c["x"]
    tcf = TrainConfig(epochs=max(ft, 1), lr=5e-4, patience=None, seed=seed, progress=ctx.progress, device=ctx.device)
    out = ctx.run / cell_key(c)
    t0 = time.time()
    if c["study"] in PRUNE_STUDIES:
        rel = ctx.rels[c["method"]]
        if c["study"] == "prune_structured":
            # residual / depthwise nets (ResNet-8): channels tied by an add prune as one DepGraph group
            pr = (prune_structured_graph if needs_depgraph(spec) else prune_structured)(spec, state, rel, x)
            no_ft = _eval_state(pr.spec, pr.state_dict, splits)
            cfg = CompressConfig(prune_filters=x, qat=tcf, quantize=False, seed=seed)
        else:
            per_unit = c["study"] == "prune_unstructured_unit"
            masks = weight_masks(model, spec, rel, x, per_unit=per_unit)
            no_ft = _eval_state(spec, MaskHook(masks).apply_state(dict(state)), splits)
            cfg = CompressConfig(prune_weights=x, prune_weights_per_unit=per_unit, qat=tcf, quantize=False, seed=seed)
    elif c["study"] == "cluster":
        rel = ctx.rels["deeplift"]
        weighted = c["method"] == "relevance-weighted"
        cs = dict(state)
        paths = module_paths(spec)              # `body.res1.body.conv3` inside a residual block
        for l in quant_layers(spec):
            n = l["name"]
            w = model.layer(n).weight
            cl = cluster_layer(w, int(x), relevance=weight_relevance(rel, n, w) if weighted else None, seed=seed)
            cs[f"{paths[n]}.weight"] = cl.tie(w.detach())
        no_ft = _eval_state(spec, cs, splits)
        cfg = CompressConfig(cluster=int(x), cluster_weighted=weighted, qat=tcf, quantize=False, seed=seed)
    else:
        rel = ctx.rels["deeplift"]
        no_ft = None
        cfg = CompressConfig(bits=f"avg:{x}", allocator=c["method"], qat=tcf, export=False, seed=seed,
                             relevance_samples=st["samples"])
    if ft == 0:      # the criterion's choice alone, no repair by fine-tuning
        return {"acc": no_ft, "acc_no_ft": no_ft, "seconds": time.time() - t0}
    s = compress(ctx.run / "float.pt", rel, out, cfg, splits=splits)
    row = {"acc": s["test_acc"], "acc_no_ft": no_ft, "weights": s["weights"],
           "avg_weight_bits": s["avg_weight_bits"], "seconds": time.time() - t0}
    if c["study"] == "bits":
        row["plan"] = json.loads((out / "plan.json").read_text())["layers"]
    log.info("%s: acc %.4f (no fine-tune %s)", cell_key(c), s["test_acc"], f"{no_ft:.4f}" if no_ft is not None else "-")
    return row


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per (model, study, method, x, fine-tune epochs)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["model"], r["study"], r["method"], -1.0 if r.get("x") is None else float(r["x"]), int(r.get("ft", 0)))
        groups.setdefault(key, []).append(r)
    out = []
    for (model, study, method, xv, ft), rs in sorted(groups.items()):
        accs = [r["acc"] for r in rs if r.get("acc") is not None]
        if not accs:
            continue
        nft = [r["acc_no_ft"] for r in rs if r.get("acc_no_ft") is not None]
        out.append({"model": model, "study": study, "method": method, "x": xv, "ft": ft, "n": len(accs),
                    "acc_mean": statistics.fmean(accs), "acc_std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                    "acc_no_ft_mean": statistics.fmean(nft) if nft else None,
                    "avg_weight_bits": statistics.fmean(r.get("avg_weight_bits", 32) for r in rs)})
    return out


REFERENCE = {"prune_structured": "deeplift", "prune_unstructured": "deeplift", "prune_unstructured_unit": "deeplift",
             "cluster": "relevance-weighted",
             "bits": "relevance"}


def t_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean and the Student-t confidence interval of paired differences (None for n < 2)."""
    from scipy import stats

    n = len(diffs)
    m = statistics.fmean(diffs)
    if n < 2:
        return m, None, None
    sem = statistics.stdev(diffs) / n ** 0.5
    if sem == 0:
        return m, m, m
    lo, hi = stats.t.interval(level, n - 1, loc=m, scale=sem)
    return m, float(lo), float(hi)


def paired(rows: list[dict]) -> list[dict]:
    """Per (model, study, x, ft): the relevance criterion minus every other criterion, paired by
    seed, with a 95% t-interval over seeds; 'verdict' wins / loses when the interval excludes 0."""
    by: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        if r["study"] not in REFERENCE or r.get("acc") is None:
            continue
        key = (r["model"], r["study"], float(r["x"]), int(r.get("ft", 0)))
        by.setdefault(key, {}).setdefault(r["method"], {})[int(r["seed"])] = float(r["acc"])
    out = []
    for (model, study, x, ft), methods in sorted(by.items()):
        ref = methods.get(REFERENCE[study])
        if not ref:
            continue
        for other, accs in sorted(methods.items()):
            if other == REFERENCE[study]:
                continue
            seeds = sorted(set(ref) & set(accs))
            if not seeds:
                continue
            m, lo, hi = t_interval([ref[s] - accs[s] for s in seeds])
            verdict = "n/a" if lo is None else ("wins" if lo > 0 else "loses" if hi < 0 else "ties")
            out.append({"model": model, "study": study, "x": x, "ft": ft, "reference": REFERENCE[study],
                        "other": other, "n": len(seeds), "diff_mean": m, "ci95": [lo, hi], "verdict": verdict})
    return out


def plot(agg: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max((a["ft"] for a in agg if a["study"] != "float"), default=0)
    agg = [a for a in agg if a["study"] == "float" or a["ft"] == top]    # plot the largest fine-tune budget
    models = sorted({a["model"] for a in agg})
    studies = [("prune_structured", "pruning ratio (structured)"), ("prune_unstructured", "pruning ratio (unstructured FC)"),
               ("prune_unstructured_unit", "pruning ratio (unstructured FC, per unit)"),
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


def table(agg: list[dict], pairs: list[dict], st: dict, cmd: str, seconds: float, missing: int) -> str:
    data = (f"{st['limit_train']} train / {st['limit_test']} test images" if st["limit_train"]
            else "full Fashion-MNIST, 60k train / 10k test")
    lines = [f"Command: `{cmd}` ({seconds / 60:.1f} min in this run; seeds {st['seeds']}, {data}, float "
             f"{st['float_epochs']} epochs, fine-tune budgets {st['ft_budgets']} epoch(s) per point: float "
             "fine-tuning for pruning and clustering, QAT for bits; 0 = the criterion's choice alone). "
             "Accuracy: test accuracy, mean over seeds (± std); 'no FT': before fine-tuning."
             + (f" **{missing} cells not yet run** (see --shard / resume)." if missing else ""), ""]
    lines += ["| model | study | x | FT epochs | method | acc | no FT |", "|---|---|---|---|---|---|---|"]
    for a in agg:
        if a["study"] == "float":
            lines.append(f"| {a['model']} | float | - | - | - | {a['acc_mean']:.4f} | - |")
            continue
        nft = f"{a['acc_no_ft_mean']:.4f}" if a["acc_no_ft_mean"] is not None else "-"
        std = f" ± {a['acc_std']:.4f}" if a["n"] > 1 else ""
        lines.append(f"| {a['model']} | {a['study']} | {a['x']:g} | {a['ft']} | {a['method']} | "
                     f"{a['acc_mean']:.4f}{std} | {nft} |")
    if pairs:
        lines += ["", "Paired differences (relevance criterion minus the other, same seed), 95% t-interval over seeds:", "",
                  "| model | study | x | FT epochs | relevance - other | n | mean diff | 95% CI | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in pairs:
            ci = "-" if p["ci95"][0] is None else f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]"
            lines.append(f"| {p['model']} | {p['study']} | {p['x']:g} | {p['ft']} | {p['reference']} - {p['other']} "
                         f"| {p['n']} | {p['diff_mean']:+.4f} | {ci} | {p['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 seed, small subsets (a few minutes)")
    p.add_argument("--full-data", action="store_true", help="the whole Fashion-MNIST (60k train / 10k test)")
    p.add_argument("--models", nargs="+", default=["sfc", "lenet"])
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--ft-budgets", nargs="+", type=int, default=None, help="fine-tune epochs per point (default 0 1 5)")
    p.add_argument("--shard", default=None, metavar="i/n", help="run only every n-th cell from i (several runs)")
    p.add_argument("--cells-from", type=Path, default=None, help="JSON list of cell keys to run (see --list-cells)")
    p.add_argument("--list-cells", action="store_true", help="print the cell keys and whether they are cached")
    p.add_argument("--no-report", action="store_true", help="run cells only (another run writes the report)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--work", type=Path, default=None, help="run folders and the cell cache (default: /tmp/codesign-paper)")
    p.add_argument("--cells", type=Path, default=None,
                   help="the cell cache (default: WORK/cells); a committed folder lets a study resume across machines")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--device", default="cpu",
                   help="where training runs: cpu, cuda or cuda:N (CNV and ResNet-8 at full size need a GPU)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("codesign.train", "codesign.flow", "codesign.compress", "codesign.relevance", "codesign.data"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    st = settings(args.quick, args.full_data)
    if args.seeds:
        st["seeds"] = args.seeds
    if args.ft_budgets:
        st["ft_budgets"] = args.ft_budgets
    tag = ("quick" if args.quick else "full") + ("_60k" if args.full_data else "")
    work = args.work or Path("/tmp/codesign-paper") / tag
    cache = args.cells or work / "cells"
    cells = enumerate_cells(st, args.models)
    if args.list_cells:
        for c in cells:
            print(cell_key(c), "cached" if (cache / f"{cell_key(c)}.json").is_file() else "todo")  # noqa: T201
        return 0
    keys = json.loads(args.cells_from.read_text()) if args.cells_from else None
    todo = select_cells(cells, args.shard, keys)
    t0 = time.time()
    contexts: dict[tuple, ModelContext] = {}

    def runner(c: dict) -> dict:
        k = (c["model"], c["seed"])
        if k not in contexts:
            contexts.clear()                          # one model's data and relevances in memory at a time
            contexts[k] = ModelContext(c["model"], c["seed"], st, work, args.progress, args.device)
        return run_cell(c, contexts[k])

    _, ran = run_cells(todo, runner, cache)
    seconds = time.time() - t0
    log.info("ran %d of %d selected cells (%d cached) in %.1f min", ran, len(todo), len(todo) - ran, seconds / 60)
    if args.no_report:
        return 0
    rows = [json.loads((cache / f"{cell_key(c)}.json").read_text()) for c in cells
            if (cache / f"{cell_key(c)}.json").is_file()]
    missing = len(cells) - len(rows)
    agg = aggregate(rows)
    pairs = paired(rows)
    stem = "paper_experiments" + ("_quick" if args.quick else "") + ("_60k" if args.full_data else "")
    cmd = "python scripts/paper_experiments.py" + (" --quick" if args.quick else "") + (" --full-data" if args.full_data else "")
    write_json(args.out / f"{stem}.json", {"settings": st, "seconds": seconds, "missing_cells": missing,
                                           "rows": rows, "summary": agg, "paired": pairs})
    if agg:
        plot(agg, args.out / f"{stem}.png")
    write_text(args.out / f"{stem}.md", table(agg, pairs, st, cmd, seconds, missing))
    log.info("report (%d cells, %d missing): %s", len(rows), missing, args.out / f"{stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
