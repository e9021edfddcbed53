#!/usr/bin/env python
"""The headline benchmark: relevance-guided co-design against the other ways of choosing a
design under the same hardware budget, on synthesised hardware.

Strategies, each under the config's budget at its target FPS (default: TFC, Fashion-MNIST,
PYNQ-Z2, 100k FPS, 8,000 LUT), per seed, from one shared float model and DeepLIFT relevance:

* ``relevance``: the relevance-guided search (`codesign.search.loop`), its finalists fully QAT-trained;
* ``optuna``: optuna (NSGA-II) with the same trial budget, without relevance seeding;
* ``ilp``: the exact ILP bit allocation (`codesign.compress.ilp`) over the DeepLIFT sensitivity table;
* ``hessian``: the same ILP over the HAWQ-V2 Hessian-trace table;
* the config's uniform baselines (``uniform w4a4``, ``uniform w2a2``), always included.

Every final design gets the same full QAT. With ``--synth`` each one (every finalist of a search,
each allocation, each baseline) is compiled (`build_dataflow`, the config's board/clock/FPS) and
synthesised with Yosys; its LUT/FF/BRAM18/DSP are recorded next to the cost model's estimate.
Each (seed, strategy) cell is cached as JSON in ``--cells`` (default
benchmarks/results/codesign_cells/<config stem>-<settings hash>/), written atomically, so a killed
run resumes cell by cell (and a cell's synthesis design by design); other settings get another hash.

Report: accuracy vs LUT (Yosys with --synth, else the estimate, and the axis says which); per
strategy the Pareto front over all seeds' designs (max accuracy, min LUT) and its 2-D hypervolume
against the reference point (1.1 x the largest LUT seen, accuracy 0); mean ± std over seeds; and
the headline: the LUTs of the smallest relevance-guided design at equal accuracy (within the
seeds' std) as a fraction of uniform w4a4's.

    python benchmarks/bench_codesign.py                    # 3 seeds, the example's settings
    python benchmarks/bench_codesign.py --quick --synth    # 1 seed, 12k images, 6 trials, Yosys
    python benchmarks/bench_codesign.py --config examples/lenet_fashionmnist_pynqz2.yaml --quick

Writes benchmarks/results/codesign[_<stem>][_quick].{json,md,png} (no stem for the default TFC
example); run folders in runs/bench_codesign/<stem>-<hash>/seed<N>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_codesign")

DEFAULT_CONFIG = ROOT / "examples" / "tfc_fashionmnist_pynqz2.yaml"
SEARCHES = ("relevance", "optuna")
ALLOCATIONS = {"ilp": "relevance", "hessian": "hessian"}  # strategy -> allocator of the ILP
STRATEGIES = SEARCHES + tuple(ALLOCATIONS)
LABELS = {"relevance": "relevance-guided search", "optuna": "optuna NSGA-II (no relevance)",
          "ilp": "ILP, DeepLIFT table", "hessian": "ILP, HAWQ-V2 Hessian table"}
#: what a cell keeps of a design row (the per-layer breakdown stays in the run folder)
ROW_KEYS = ("name", "plan_hash", "describe", "candidate", "val_acc", "test_acc", "feasible", "reason", "fps",
            "LUT", "FF", "BRAM_18K", "URAM", "DSP", "dir")
RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP")


# ----------------------------------------------------------------------------- settings

def bench_config(cfg_path: Path, quick: bool) -> Any:
    """The run config the benchmark uses (``--quick``: 12k images, fewer epochs and trials)."""
    from codesign.config import load_config

    cfg = load_config(cfg_path)
    if quick:
        cfg.limit_train = 12000
        cfg.limit_test = 5000
        cfg.train.epochs = 2
        cfg.qat.epochs = 1
        cfg.search.trials = 6
        cfg.search.finalists = 1
        cfg.search.rank.max_batches = 20
        cfg.search.rank.val_samples = 1000
    return cfg


def cells_key(cfg: Any) -> str:
    """Hash of everything a cell's numbers depend on except the seed (which names the file):
    the model/data/train/QAT/search settings and the hardware target."""
    from codesign.search.loop import settings_key

    d = dataclasses.asdict(cfg)
    for k in ("seed", "out", "name", "hw", "device"):
        d.pop(k, None)
    return settings_key(d)


def output_stem(cfg_path: Path, quick: bool) -> str:
    """codesign[_<config stem>][_quick]: the default TFC example keeps the historical name."""
    stem = "codesign" if cfg_path.resolve() == DEFAULT_CONFIG.resolve() else f"codesign_{cfg_path.stem}"
    return stem + ("_quick" if quick else "")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _rel(p: Path | str) -> str:
    p = Path(p).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def _abs(p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else ROOT / q


def _slim(row: dict) -> dict:
    out = {k: row.get(k) for k in ROW_KEYS if k in row}
    if "dir" in out:
        out["dir"] = _rel(out["dir"])
    return out


# ----------------------------------------------------------------------------- cells

def compute_cell(ctx: Any, name: str) -> dict:
    """Train one (seed, strategy) cell: a search (its finalists), an allocation or a baseline."""
    from codesign.search.loop import finalize, run_trials, train_allocation, train_baseline

    t0 = time.time()
    cell: dict[str, Any] = {"seed": ctx.cfg.seed, "strategy": name}
    if name in SEARCHES:
        ctx.subdir = f"search-{name}"
        info = run_trials(ctx, strategy=name, seed_relevance=False if name == "optuna" else None)
        keep = ctx.cfg.search.baselines
        ctx.cfg.search.baselines = []  # the baselines are cells of their own
        try:
            summ = finalize(ctx, info, compile_design=False, promote=False)
        finally:
            ctx.cfg.search.baselines = keep
        cell.update(designs=[_slim(r) for r in summ["finalists"]], chosen=summ["chosen"]["plan_hash"],
                    trials=len(info["records"]), stop_reason=info["stop_reason"],
                    # search + finalists' full QAT (float model, relevance and baselines excluded)
                    seconds_to_final=summ["seconds"].get("search", 0.0) + summ["seconds"].get("finalists", 0.0))
    elif name in ALLOCATIONS:
        row = train_allocation(ctx, allocator=ALLOCATIONS[name], kind="ilp")
        cell.update(designs=[_slim(row)], chosen=row["plan_hash"], trials=0, seconds_to_final=time.time() - t0)
    elif name.startswith("uniform "):
        row = train_baseline(ctx, name.split(" ", 1)[1])
        cell.update(designs=[_slim(row)], chosen=row["plan_hash"])
    else:
        from codesign.errors import CodesignError

        raise CodesignError(f"unknown strategy '{name}': choose from {', '.join(STRATEGIES)}")
    fj = ctx.out / "float.json"
    if fj.is_file():
        from codesign.atomic import read_json

        cell["float_test_acc"] = read_json(fj).get("test_acc")
    cell["wall_seconds"] = time.time() - t0
    return cell


def synth_design(cfg: Any, design: dict) -> dict:
    """Compile a trained design's model.onnx for the config's board/clock/target FPS and
    synthesise it with Yosys: the counts next to the compile's own estimate."""
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.hw.synth import synth_build

    from codesign.errors import CodesignError

    t0 = time.time()
    folder = _abs(design["dir"])
    if not (folder / "model.onnx").is_file():
        raise CodesignError(f"{folder / 'model.onnx'} is missing (the cell was trained elsewhere?): delete its "
                            "cell file to train the design again, or run without --synth")
    bdir = folder / "BUILD"
    bcfg = BuildConfig(output_dir=bdir, board=cfg.board, clock_ns=cfg.clock_ns, target_fps=cfg.target_fps,
                       max_fps=cfg.target_fps is None, util=cfg.search.util)
    build = build_dataflow(folder / "model.onnx", bcfg)
    tot = build.cost.get("total", {}) if isinstance(build.cost, dict) else {}
    rep = synth_build(bdir)  # renders the Verilog, runs Yosys; BUILD/report/ooc_synth_and_timing.json
    out = {r: int(rep[r]) for r in RESOURCES}
    out.update(compile_estimate={r: float(tot[r]) for r in RESOURCES if r in tot},
               compile_fps=build.fold.get("estimated_fps"), tool=rep.get("tool"), family=rep.get("family"),
               synth_seconds=rep.get("synth_seconds"), seconds=time.time() - t0, build=_rel(bdir))
    log.info("synth %s: Yosys LUT %d (cost model %s, compile estimate %.0f), FF %d, BRAM18 %d, DSP %d",
             design.get("describe"), out["LUT"], design.get("LUT"), out["compile_estimate"].get("LUT", 0),
             out["FF"], out["BRAM_18K"], out["DSP"])
    return out


def run_cells(cfg0: Any, seeds: list[int], names: list[str], synth: bool, cells_dir: Path, runs: Path) -> list[dict]:
    """Every (seed, strategy) cell, from the cache when it is there (the float model and the
    relevance are prepared only if some cell of the seed must be trained)."""
    from codesign.atomic import read_json, write_json
    from codesign.search.loop import prepare

    cells = []
    for seed in seeds:
        cfg = dataclasses.replace(cfg0, seed=seed)
        cfg.search = dataclasses.replace(cfg0.search, baselines=list(cfg0.search.baselines))
        ctx = None
        for name in names:
            path = cells_dir / f"s{seed}-{slug(name)}.json"
            cell = read_json(path) if path.is_file() else None
            if cell is None:
                prep = None
                if ctx is None:
                    t0 = time.time()
                    ctx = prepare(cfg, runs / f"seed{seed}")
                    prep = time.time() - t0
                log.info("seed %d, %s: training", seed, name)
                cell = compute_cell(ctx, name)
                if prep is not None:  # the seed's float model + relevance, counted once
                    cell["prepare_seconds"] = prep
                write_json(path, cell)
            else:
                log.info("seed %d, %s: cached (%s)", seed, name, _rel(path))
            if synth:
                for d in cell["designs"]:
                    if "synth" not in d:
                        d["synth"] = synth_design(cfg, d)
                        write_json(path, cell)  # design by design: a killed synthesis resumes here
            cells.append(cell)
    return cells


# ----------------------------------------------------------------------------- report

def _lut(d: dict, synth: bool) -> float:
    return float(d["synth"]["LUT"]) if synth else float(d["LUT"])


def _ms(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return statistics.mean(vals), (statistics.pstdev(vals) if len(vals) > 1 else 0.0)


def summarize(cells: list[dict], names: list[str], synth: bool, lut_limit: float | None) -> dict:
    """Per strategy: the chosen designs' mean ± std over seeds, the Pareto front over every
    design of every seed, its hypervolume; the reference point; the equal-accuracy LUT ratios."""
    from codesign.search.pareto import hypervolume_2d, pareto_front

    per: dict[str, dict] = {}
    all_luts = []
    for n in names:
        mine = [c for c in cells if c["strategy"] == n]
        chosen = [next(d for d in c["designs"] if d["plan_hash"] == c["chosen"]) for c in mine]
        designs = [{"seed": c["seed"], **d} for c in mine for d in c["designs"]]
        pts = [{"accuracy": d["test_acc"], "LUT": _lut(d, synth), "seed": d["seed"], "describe": d["describe"]}
               for d in designs if d.get("test_acc") is not None]
        all_luts += [p["LUT"] for p in pts]
        acc_m, acc_s = _ms([d["test_acc"] for d in chosen])
        a: dict[str, Any] = {"label": LABELS.get(n, n), "seeds": len(mine), "test_acc_mean": acc_m, "test_acc_std": acc_s,
                             "LUT_est_mean": _ms([d["LUT"] for d in chosen])[0],
                             "LUT_axis_mean": _ms([_lut(d, synth) for d in chosen])[0],
                             "fits_estimate": all(d["feasible"] for d in chosen),
                             "seconds_to_final_mean": _ms([c.get("seconds_to_final") for c in mine])[0],
                             "chosen": [{"seed": c["seed"], **d} for c, d in zip(mine, chosen)],
                             "points": pts, "front": pareto_front(pts, (("accuracy", 1), ("LUT", -1)))}
        if synth:
            for r in RESOURCES:
                a[f"{r}_yosys_mean"], a[f"{r}_yosys_std"] = _ms([d["synth"][r] for d in chosen])
            a["fits_yosys"] = None if not lut_limit else all(d["synth"]["LUT"] <= lut_limit for d in chosen)
        per[n] = a
    ref = (1.1 * max(all_luts), 0.0) if all_luts else (0.0, 0.0)
    for a in per.values():
        a["hypervolume"] = hypervolume_2d([(p["LUT"], p["accuracy"]) for p in a["front"]], ref)
    return {"lut_source": "yosys" if synth else "estimate", "reference_point": {"LUT": ref[0], "accuracy": ref[1]},
            "strategies": per, "equal_accuracy": equal_accuracy(per)}


def equal_accuracy(per: dict[str, dict], base: str = "uniform w4a4") -> dict:
    """For every strategy: its smallest design (any seed, any finalist) whose test accuracy is
    at least the baseline's mean minus the larger of the two seed stds, and its LUTs as a
    fraction of the baseline's mean LUTs (on the report's LUT axis). None when none is that
    accurate (then the most accurate design and its gap are given instead)."""
    b = per.get(base)
    if not b or b["test_acc_mean"] is None:
        return {}
    b_lut = b["LUT_axis_mean"]
    out = {"baseline": base, "baseline_acc": b["test_acc_mean"], "baseline_LUT": b_lut, "per_strategy": {}}
    for n, a in per.items():
        if n == base or not a["points"]:
            continue
        tol = max(a["test_acc_std"] or 0.0, b["test_acc_std"] or 0.0)
        thr = b["test_acc_mean"] - tol
        ok = [p for p in a["points"] if p["accuracy"] >= thr - 1e-12]
        best = min(ok, key=lambda p: (p["LUT"], -p["accuracy"])) if ok else None
        top = max(a["points"], key=lambda p: p["accuracy"])
        out["per_strategy"][n] = {
            "threshold": thr, "tolerance": tol,
            "design": best, "LUT_fraction": best["LUT"] / b_lut if best else None,
            "most_accurate": top, "most_accurate_gap": top["accuracy"] - b["test_acc_mean"],
            "most_accurate_LUT_fraction": top["LUT"] / b_lut}
    return out


def plot(summary: dict, path: Path, lut_limit: float | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for a in summary["strategies"].values():
        pts = a["points"]
        if not pts:
            continue
        line = ax.scatter([p["LUT"] for p in pts], [100 * p["accuracy"] for p in pts], s=18, alpha=0.45)
        col = line.get_facecolor()[0]
        fr = sorted(a["front"], key=lambda p: p["LUT"])
        xs, ys = [], []
        for p in fr:  # the front as a staircase (what it dominates)
            if xs:
                xs.append(p["LUT"])
                ys.append(ys[-1])
            xs.append(p["LUT"])
            ys.append(100 * p["accuracy"])
        ax.plot(xs, ys, "-o", color=col, ms=5, label=f"{a['label']} (HV {a['hypervolume']:.0f})")
    if lut_limit:
        ax.axvline(lut_limit, color="k", ls="--", lw=1, label="LUT budget")
    src = summary["lut_source"]
    ax.set_xlabel("LUT (Yosys synth_xilinx, at the target FPS)" if src == "yosys"
                  else "LUT (cost-model estimate at the target FPS; --synth for Yosys)")
    ax.set_ylabel("test accuracy % (full QAT)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pm(m: float | None, s: float | None, scale: float = 1.0, fmt: str = ".2f") -> str:
    if m is None:
        return "-"
    return f"{scale * m:{fmt}} ± {scale * (s or 0):{fmt}}"


def _desc(text: str) -> str:
    """A design's description inside a markdown table cell (its ' | ' separators would split it)."""
    return text.replace(" | ", ", ")


def markdown(meta: dict, summary: dict, cells: list[dict]) -> str:
    synth = summary["lut_source"] == "yosys"
    ref = summary["reference_point"]
    budget = ", ".join(f"{k} {v:,.0f}" for k, v in meta["budget"].items())
    lines = [(f"Command: `{meta['command']}` ({meta['total_seconds'] / 60:.1f} min this invocation, "
              f"{meta['cell_seconds'] / 60:.1f} min of cell compute incl. synthesis and the float models); "
              f"config `{meta['config']}` ({meta['model']}, {meta['dataset']}, {meta['board']}, "
              f"{meta['target_fps']:,.0f} FPS, budget {budget}); seeds {meta['seeds']}; cells `{meta['cells']}`."), "",
             ("Chosen design per seed (a search's is its best finalist by validation accuracy); test accuracy "
              "after full QAT; LUT est = the cost model at the target FPS"
              + ("; Yosys = `synth_xilinx` of the compiled design." if synth else "; run with --synth for Yosys.")), ""]
    head = "| design | test acc % | LUT est |"
    sep = "|---|---|---|"
    if synth:
        head += " LUT Yosys | FF Yosys | BRAM18 | DSP | fits (Yosys) |"
        sep += "---|---|---|---|---|"
    else:
        head += " fits (est.) |"
        sep += "---|"
    head += " time to final | front | hypervolume |"
    sep += "---|---|---|"
    lines += [head, sep]
    for n, a in summary["strategies"].items():
        row = f"| {a['label']} | {_pm(a['test_acc_mean'], a['test_acc_std'], 100)} | {a['LUT_est_mean']:,.0f} |"
        if synth:
            fits = "-" if a["fits_yosys"] is None else ("yes" if a["fits_yosys"] else "**no**")
            row += (f" {_pm(a['LUT_yosys_mean'], a['LUT_yosys_std'], 1, ',.0f')} | {a['FF_yosys_mean']:,.0f} | "
                    f"{a['BRAM_18K_yosys_mean']:.0f} | {a['DSP_yosys_mean']:.0f} | {fits} |")
        else:
            row += f" {'yes' if a['fits_estimate'] else '**no**'} |"
        t = a["seconds_to_final_mean"]
        row += f" {f'{t:.0f} s' if t else '-'} | {len(a['front'])} | {a['hypervolume']:,.1f} |"
        lines.append(row)
    axis = "Yosys LUT" if synth else "estimated LUT"
    lines += ["", (f"Pareto front per strategy: the non-dominated designs over all seeds' designs (every "
                   f"finalist of a search), max test accuracy, min {axis}. Hypervolume: the area (LUT x accuracy "
                   f"fraction) they dominate up to the reference point LUT = {ref['LUT']:,.0f} (1.1 x the largest "
                   f"LUT seen), accuracy = {ref['accuracy']:g}; with accuracy 0 as the reference the volume is "
                   f"about accuracy x LUTs saved, so it favours small designs: read it with the accuracy column."),
              ""]
    eq = summary["equal_accuracy"]
    if eq:
        lines.append(f"Equal accuracy: the smallest design (any seed or finalist) with test accuracy >= "
                     f"{eq['baseline']}'s mean ({100 * eq['baseline_acc']:.2f}%) minus the larger seed std of the two; "
                     f"its {axis} as a fraction of {eq['baseline']}'s mean ({eq['baseline_LUT']:,.0f})."
                     + (" With one seed there is no std: equal means at least as accurate." if len(meta["seeds"]) == 1
                        else ""))
        lines.append("")
        lines += [("| design | threshold % | smallest design at equal accuracy | LUT | fraction of w4a4 | "
                   "most accurate (gap, LUT fraction) |"), "|---|---|---|---|---|---|"]
        for n, e in eq["per_strategy"].items():
            lab = summary["strategies"][n]["label"]
            d = e["design"]
            top = e["most_accurate"]
            lines.append(f"| {lab} | {100 * e['threshold']:.2f} | "
                         + (f"{_desc(d['describe'])} (seed {d['seed']}, {100 * d['accuracy']:.2f}%) | {d['LUT']:,.0f} | "
                            f"**{e['LUT_fraction']:.2f}** |" if d else "none that accurate | - | - |")
                         + f" {100 * top['accuracy']:.2f}% ({100 * e['most_accurate_gap']:+.2f} pts), "
                         f"{e['most_accurate_LUT_fraction']:.2f} |")
        h = eq["per_strategy"].get("relevance")
        if h:
            lines += ["", "**Headline**: " + (
                f"the smallest relevance-guided design at equal accuracy needs {h['LUT_fraction']:.2f} x the "
                f"{axis}s of uniform w4a4 ({h['design']['LUT']:,.0f} vs {eq['baseline_LUT']:,.0f}; "
                f"{100 * h['design']['accuracy']:.2f}% vs {100 * eq['baseline_acc']:.2f}%)." if h["design"] else
                f"no relevance-guided design reached uniform w4a4's accuracy within the seed std; the most "
                f"accurate one is {100 * -h['most_accurate_gap']:.2f} points below it at "
                f"{h['most_accurate_LUT_fraction']:.2f} x its {axis}s.")]
    lines += ["", "Every design:", "", "| seed | strategy | design | test acc % | LUT est |"
              + (" LUT Yosys | FF | BRAM18 | DSP |" if synth else ""), "|---|---|---|---|---|"
              + ("---|---|---|---|" if synth else "")]
    for c in cells:
        for d in c["designs"]:
            mark = " (chosen)" if d["plan_hash"] == c["chosen"] and len(c["designs"]) > 1 else ""
            row = (f"| {c['seed']} | {c['strategy']} | {_desc(d['describe'])}{mark} | {100 * (d['test_acc'] or 0):.2f} | "
                   f"{d['LUT']:,} |")
            if synth:
                s = d["synth"]
                row += f" {s['LUT']:,} | {s['FF']:,} | {s['BRAM_18K']} | {s['DSP']} |"
            lines.append(row)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    from codesign.atomic import write_json, write_text
    from codesign.errors import CodesignError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, 12k training images, 6 trials, 1 QAT epoch")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES),
                    help="the config's uniform baselines are always added")
    ap.add_argument("--synth", action="store_true", help="compile and synthesise every final design with Yosys")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--cells", type=Path, default=None,
                    help="cell cache root (default OUT/codesign_cells); a folder per config + settings")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_codesign")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for n in ("codesign.train", "codesign.compress.pipeline", "codesign.compress.prune", "codesign.flow",
              "codesign.export", "codesign.compress.sensitivity", "codesign.relevance", "codesign.data"):
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        cfg = bench_config(args.config, args.quick)
    except CodesignError as exc:
        log.error("%s", exc)
        return 2
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    key = cells_key(cfg)
    folder = f"{args.config.stem}-{key}"
    cells_dir = (args.cells or args.out / "codesign_cells") / folder
    t0 = time.time()
    names = [s for s in STRATEGIES if s in args.strategies] + [f"uniform {b}" for b in cfg.search.baselines]
    try:
        cells = run_cells(cfg, seeds, names, args.synth, cells_dir, args.runs / folder)
    except CodesignError as exc:  # one line, as the CLI prints it; the cells done so far are kept
        log.error("%s", exc)
        return 2
    lut_limit = float(cfg.search.budget.get("LUT", 0) or 0) or None
    summary = summarize(cells, names, args.synth, lut_limit)
    stem = output_stem(args.config, args.quick)
    cmd = "python benchmarks/bench_codesign.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": cmd.strip(), "config": _rel(args.config), "model": cfg.model, "dataset": cfg.dataset,
            "quick": args.quick, "synth": args.synth, "seeds": seeds, "target_fps": cfg.target_fps or 0,
            "board": cfg.board, "clock_ns": cfg.clock_ns, "budget": dict(cfg.search.budget), "cells": _rel(cells_dir),
            "settings_key": key, "total_seconds": time.time() - t0,
            "cell_seconds": sum(c.get("wall_seconds", 0.0) + c.get("prepare_seconds", 0.0) + sum(d.get("synth", {}).get("seconds", 0.0)
                                                                 for d in c["designs"]) for c in cells)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", {**meta, "summary": summary, "cells": cells})
    write_text(args.out / f"{stem}.md", markdown(meta, summary, cells))
    plot(summary, args.out / f"{stem}.png", lut_limit,
         f"{cfg.model} / {cfg.dataset} / {cfg.board} @ {cfg.target_fps or 0:,.0f} FPS: accuracy vs LUT, fronts over seeds")
    for n, a in summary["strategies"].items():
        lut = a.get("LUT_yosys_mean") if args.synth else a["LUT_est_mean"]
        log.info("%-32s acc %s%%  LUT (%s) %s  HV %.1f", a["label"], _pm(a["test_acc_mean"], a["test_acc_std"], 100),
                 summary["lut_source"], f"{lut:,.0f}", a["hypervolume"])
    log.info("wrote %s.{json,md,png} in %.1f min", args.out / stem, (time.time() - t0) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
