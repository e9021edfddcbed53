#!/usr/bin/env python
"""The graph zoo end to end (issue 13): ResNet-8, MobileNet-v1 (0.25) and DS-CNN on Fashion-MNIST.

For each model, bit plan and seed (one *cell*): float training, Brevitas QAT at the plan, QONNX
export (checked against torch), compilation for a PYNQ-Z2 at a target frame rate, the compiled
graph checked exact against the QONNX model on real test images; for the hardware seed also the
Verilog, a Verilator run of at least 20 real test images (bit-exact against the compiled graph
and the QONNX model, steady-state cycles per frame against the estimate) and Yosys synthesis.

Plans: ``w4a4`` (uniform) and ``mixed`` (DeepLIFT relevance of the float model allocates the
weight bits, 2..8 at a mean of 3.5, activations following; the project's own greedy allocator).

Every cell is one JSON file under ``--cells`` (atomic write): a killed run resumes, and cells can
be spread over several runs (``--models``, ``--plans``, ``--seeds``). The report is written from
whatever cells exist: benchmarks/results/zoo_graphs.{json,md}.

    .venv/bin/python benchmarks/bench_zoo_graphs.py                       # all cells, defaults
    .venv/bin/python benchmarks/bench_zoo_graphs.py --models resnet8 --seeds 0 --plans w4a4
    .venv/bin/python benchmarks/bench_zoo_graphs.py --report-only
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

from codesign.atomic import write_json, write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("resnet8", "mobilenet", "dscnn")
PLANS = ("w4a4", "mixed", "w4a4-p25", "w4a4-p50")
#: plans that prune filters first (DeepLIFT relevance, dependency-aware groups), then QAT at w4a4
PRUNED = {"w4a4-p25": 0.25, "w4a4-p50": 0.5}
log = logging.getLogger("bench_zoo_graphs")


def _plan(name: str, spec: dict, float_ckpt: Path, splits, samples: int, seed: int) -> dict:
    from codesign.compress.bits import Budget, allocate_bits
    from codesign.data import sample_batch
    from codesign.models import uniform_plan
    from codesign.relevance import compute_relevance
    from codesign.flow import model_from_checkpoint
    from codesign.train import load_checkpoint

    if name == "w4a4":
        return uniform_plan(spec, 4, 4)
    ck = load_checkpoint(float_ckpt)
    model = model_from_checkpoint(float_ckpt, ck["spec"], None, ck["state_dict"]).eval()
    x, y = sample_batch(splits, samples, split="train")
    rel = compute_relevance(model, spec, x, y, method="deeplift", seed=seed, progress=False)
    return allocate_bits(spec, rel.layer_scores(), Budget("avg", 3.5), act_bounds=(3, 6))


def _pruned(float_ckpt: Path, spec: dict, out: Path, ratio: float, qat_cfg, splits, samples: int, seed: int):
    """Relevance-guided structured pruning (DeepLIFT on the float model; channels tied by a residual
    add or a depthwise conv pruned as one group) at ``ratio``, then QAT at w4a4 and export: the
    product's own `compress` step. Returns (QAT summary, plan, per-layer widths before -> after)."""
    from codesign.compress.pipeline import CompressConfig, compress
    from codesign.data import sample_batch
    from codesign.flow import model_from_checkpoint
    from codesign.relevance import compute_relevance
    from codesign.train import load_checkpoint

    ck = load_checkpoint(float_ckpt)
    model = model_from_checkpoint(float_ckpt, ck["spec"], None, ck["state_dict"]).eval()
    x, y = sample_batch(splits, samples, split="train")
    rel = compute_relevance(model, spec, x, y, method="deeplift", seed=seed, progress=False)
    cfg = CompressConfig(prune_filters=ratio, bits="uniform:w4a4", qat=qat_cfg, seed=seed, relevance_samples=samples)
    summary = compress(float_ckpt, rel, out, cfg, splits=splits)
    return ({"test_acc": summary["test_acc"]}, json.loads((out / "plan.json").read_text()),
            summary["prune_filters"]["widths"])


def run_cell(model: str, plan_name: str, seed: int, st: dict, work: Path, hw: bool) -> dict:
    """One (model, plan, seed): train -> QAT -> export -> compile -> verify [-> rtlsim, synth]."""
    from codesign.data import load_dataset, sample_batch
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.dataflow.verify import verify_build
    from codesign.flow import export_checkpoint, run_qat, train_float
    from codesign.train import TrainConfig, load_checkpoint

    t0 = time.time()
    splits = load_dataset("fashion-mnist", seed=seed, limit_train=st["limit_train"], limit_test=st["limit_test"])
    run = work / f"{model}_s{seed}"
    times: dict[str, float] = {}
    if not (run / "float.pt").is_file():
        t = time.time()
        train_float(model, "fashion-mnist", run, TrainConfig(epochs=st["float_epochs"], lr=2e-3, patience=None,
                                                            seed=seed, progress=st["progress"]),
                    limit_train=st["limit_train"], limit_test=st["limit_test"], splits=splits)
        times["float_s"] = time.time() - t
    fck = load_checkpoint(run / "float.pt")
    spec = fck["spec"]
    out = run / plan_name
    t = time.time()
    qat_cfg = TrainConfig(epochs=st["qat_epochs"], lr=1e-3, patience=None, seed=seed, progress=st["progress"])
    if plan_name in PRUNED:
        q, plan, widths = _pruned(run / "float.pt", spec, out, PRUNED[plan_name], qat_cfg, splits, st["samples"], seed)
        onnx_path = out / "model.onnx"
    else:
        plan = _plan(plan_name, spec, run / "float.pt", splits, st["samples"], seed)
        q = run_qat(run / "float.pt", plan, out, qat_cfg, splits=splits)
        widths = None
        onnx_path = export_checkpoint(out / "qat.pt", out / "model.onnx", check_samples=64, splits=splits)
    times["qat_s"] = time.time() - t
    t = time.time()
    build = out / "build"
    res = build_dataflow(onnx_path, BuildConfig(output_dir=build, board="Pynq-Z2", clock_ns=10.0,
                                                target_fps=st["target_fps"]))
    times["compile_s"] = time.time() - t
    x_test, _ = sample_batch(splits, st["verify"], split="test")
    rep = verify_build(build / "source.onnx", res.model, st["verify"], inputs=x_test.numpy(),
                       report_path=build / "report" / "verify.json")
    est = json.loads((build / "report" / "estimate_layer_resources.json").read_text()).get("total", {})
    row = {"model": model, "plan": plan_name, "seed": seed, "plan_bits": plan, "pruned_widths": widths,
           "float_test_acc": fck["meta"].get("test_acc"), "qat_test_acc": q["test_acc"],
           "verify_ok": rep["ok"], "verify_inputs": rep["inputs_checked"],
           "estimated_fps": res.performance["estimated_throughput_fps"],
           "estimated_cycles": res.performance.get("max_cycles"), "estimate": est,
           "hw_nodes": len(res.model.graph.node)}
    if hw:
        from codesign.hw.steps import run_hw_steps

        t = time.time()
        x_sim, _ = sample_batch(splits, st["rtlsim"], split="test")
        hwr = run_hw_steps(build, rtlsim_frames=st["rtlsim"], synth=True, inputs=x_sim.numpy(),
                           synth_timeout=st["synth_timeout"])
        times["hw_s"] = time.time() - t
        perf, syn = hwr["rtlsim"], hwr["synth"]
        cyc, est_c = perf["stable_cycles_per_frame"], perf.get("estimated_max_cycles")
        row.update({"rtlsim_frames": perf["N"], "rtlsim_checked_against": perf.get("checked_against"),
                    "rtlsim_cycles_per_frame": cyc, "rtlsim_estimated_cycles": est_c,
                    "rtlsim_cycle_error": (cyc - est_c) / est_c if est_c else None,
                    "yosys": {k: syn[k] for k in ("LUT", "FF", "BRAM_18K", "DSP")}, "yosys_family": syn["family"]})
    row["seconds"] = {**times, "total_s": time.time() - t0}
    return row


def re_estimate(cells: Path, work: Path) -> int:
    """Recompute every cell's whole-design estimate with the cost model of this checkout, from
    the cell's compiled graph (``WORK/<model>_s<seed>/<plan>/build/dataflow.onnx``) when it is
    there: the estimate column then compares today's model with the Yosys counts, and the old
    figure stays in the cell as ``estimate_at_run``. Returns the number of cells updated."""
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.dataflow.cost import Calibration, model_cost

    n = 0
    for f in sorted(cells.glob("*.json")):
        row = json.loads(f.read_text())
        onnx_path = work / f"{row['model']}_s{row['seed']}" / row["plan"] / "build" / "dataflow.onnx"
        if not onnx_path.is_file():
            continue
        mc = model_cost(ModelWrapper(str(onnx_path)), Calibration.load())
        est = {**{r: mc["total"][r] for r in ("BRAM_18K", "LUT", "URAM", "DSP", "FF")},
               "model": mc["model"], "calibration": mc["calibration"]}
        if est != row.get("estimate"):
            row.setdefault("estimate_at_run", row.get("estimate"))
            row["estimate"] = est
            write_json(f, row)
            n += 1
    return n


def _mean_sd(vals: list[float]) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0]:.2f}%"
    return f"{100 * statistics.mean(vals):.2f} ± {100 * statistics.stdev(vals):.2f}% (n={len(vals)})"


def report(rows: list[dict], st: dict, out: Path) -> None:
    write_json(out / "zoo_graphs.json", {"settings": st, "cells": rows})
    lines = ["# Graph zoo on Fashion-MNIST (`benchmarks/bench_zoo_graphs.py`)", "",
             f"Settings: {json.dumps({k: v for k, v in st.items() if k != 'progress'})}", "",
             "| model | plan | float acc | QAT acc | compiled == QONNX | est. FPS | rtlsim cycles / estimate | "
             "Yosys LUT / FF / BRAM18 / DSP | estimate LUT / BRAM18 |", "|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        for p in PLANS:
            cell = [r for r in rows if r["model"] == m and r["plan"] == p]
            if not cell:
                continue
            hwr = next((r for r in cell if "yosys" in r), None)
            ok = all(r["verify_ok"] for r in cell)
            sim = (f"{hwr['rtlsim_cycles_per_frame']:,.0f} / {hwr['rtlsim_estimated_cycles']:,} "
                   f"({100 * hwr['rtlsim_cycle_error']:+.2f}%, {hwr['rtlsim_frames']} images)") if hwr else "–"
            y = hwr["yosys"] if hwr else None
            syn = f"{y['LUT']:,} / {y['FF']:,} / {y['BRAM_18K']} / {y['DSP']}" if y else "–"
            e = cell[0]["estimate"]
            lines.append(f"| {m} | {p} | {_mean_sd([r['float_test_acc'] for r in cell if r['float_test_acc'] is not None])} "
                         f"| {_mean_sd([r['qat_test_acc'] for r in cell])} | {'yes' if ok else 'NO'} "
                         f"({sum(r['verify_inputs'] for r in cell)} images) | {cell[0]['estimated_fps']:,.0f} | {sim} | "
                         f"{syn} | {e.get('LUT', 0):,.0f} / {e.get('BRAM_18K', 0):,.0f} |")
    write_text(out / "zoo_graphs.md", "\n".join(lines) + "\n")
    log.info("wrote %s and %s", out / "zoo_graphs.json", out / "zoo_graphs.md")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--plans", nargs="+", default=["w4a4", "mixed"], choices=PLANS,
                   help="bit plans; w4a4-p25 / w4a4-p50 prune 25%% / 50%% of the filters first (see PRUNED)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--hw-seed", type=int, default=0, help="the seed whose design is simulated and synthesised")
    p.add_argument("--limit-train", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--limit-test", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--float-epochs", type=int, default=4)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--samples", type=int, default=256, help="relevance samples for the mixed plan")
    p.add_argument("--target-fps", type=float, default=2000.0)
    p.add_argument("--verify", type=int, default=100, help="test images for compiled == QONNX")
    p.add_argument("--rtlsim", type=int, default=20, help="test images simulated in Verilator")
    p.add_argument("--cells", type=Path, default=RESULTS / "zoo_graphs_cells")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "zoo_graphs")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--synth-timeout", type=int, default=4 * 3600,
                   help="seconds Yosys may take on one whole design (a mixed plan's 8-bit layers on a loaded "
                        "machine took over an hour)")
    p.add_argument("--re-estimate", action="store_true",
                   help="recompute the cells' estimates with this checkout's cost model (from their builds under --work)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    st = {k: getattr(args, k) for k in ("limit_train", "limit_test", "float_epochs", "qat_epochs", "samples",
                                        "target_fps", "verify", "rtlsim", "progress", "synth_timeout")}
    if not args.report_only:
        failed = []
        for pl in args.plans:
            for seed in args.seeds:
                for m in args.models:
                    f = args.cells / f"{m}__{pl}__s{seed}.json"
                    if f.is_file():
                        continue
                    log.info("cell %s %s seed %d", m, pl, seed)
                    try:
                        row = run_cell(m, pl, seed, st, args.work, hw=seed == args.hw_seed)
                    except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the others
                        log.exception("cell %s %s seed %d failed", m, pl, seed)
                        failed.append(f"{m} {pl} s{seed}: {type(exc).__name__}: {exc}"[:300])
                        continue
                    write_json(f, {**row, "settings": st})
                    log.info("cell %s %s seed %d: QAT acc %.4f, exact %s, %.0f s", m, pl, seed, row["qat_test_acc"],
                             row["verify_ok"], row["seconds"]["total_s"])
        for line in failed:
            log.error("failed cell (not cached, rerun to retry): %s", line)
    if args.re_estimate and args.cells.is_dir():
        log.info("re-estimated %d cells with the current cost model", re_estimate(args.cells, args.work))
    rows = [json.loads(f.read_text()) for f in sorted(args.cells.glob("*.json"))] if args.cells.is_dir() else []
    report(rows, st, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
