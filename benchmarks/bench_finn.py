"""Three estimators side by side (issue 12, item 6): ours, FINN+ 1.6.1's and Yosys's.

For zoo models (random weights, w2a2, through the project's own QAT model and export) and FINN's
classic networks from brevitas_examples.bnn_pynq (untrained), each at two target FPS:
1. our compile (`build_dataflow`): per-node cycles / LUT / BRAM / DSP (calibrated cost model);
2. FINN+'s estimate-only flow on the same QONNX model and the same folding (one subprocess
   for every design; `codesign.backends.finn_plus`);
3. Yosys out-of-context synthesis (xc7) of our RTL for that design (`codesign.hw.synth`).
Per node where all three exist (FINN's node matched to ours by order and type; FIFOs/DWCs and
the nodes only FINN puts in hardware are excluded), the mean relative LUT error and the mean
absolute BRAM18 error of ours and of FINN+'s against Yosys.

Writes benchmarks/results/finn.json and benchmarks/results/finn.md (markdown table).

    .venv/bin/python benchmarks/bench_finn.py [--quick] [--finn-python .venv-finn/bin/python]

--quick: tfc and FINN's TFC-w1a1 only (~6 min on 2 idle cores, mostly Yosys); full adds sfc,
cnv (3x32x32) and CNV-w1a1 (Yosys on the CNVs takes many minutes each). --no-yosys: every
network, ours vs FINN+ only (benchmarks/results/finn_estimates.json).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from codesign.atomic import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_finn")

# name -> (source, key, input shape, two target FPS at 100 MHz)
NETWORKS = {
    "tfc-w2a2": ("zoo", "tfc", (1, 28, 28), (20000, 200000)),
    "sfc-w2a2": ("zoo", "sfc", (1, 28, 28), (5000, 50000)),
    "cnv-w2a2": ("zoo", "cnv", (3, 32, 32), (200, 1000)),
    "TFC-w1a1": ("bnn_pynq", "tfc_1w1a", (1, 28, 28), (20000, 200000)),
    "CNV-w1a1": ("bnn_pynq", "cnv_1w1a", (3, 32, 32), (200, 1000)),
}
QUICK = ("tfc-w2a2", "TFC-w1a1")
PLUMBING = ("StreamingFIFO", "StreamingDataWidthConverter")


def export(name: str, path: Path) -> Path:
    """QONNX export through the project's own code paths (random / untrained weights)."""
    import torch

    from codesign.export import export_qonnx

    source, key, shape, _ = NETWORKS[name]
    torch.manual_seed(0)
    if source == "zoo":
        from codesign.models import build_quant, make_spec, uniform_plan

        spec = make_spec(key, shape)
        model = build_quant(spec, uniform_plan(spec, 2, 2))
    else:
        import brevitas_examples.bnn_pynq.models as bnn

        model = getattr(bnn, key)(pretrained=False)
    return export_qonnx(model.eval(), torch.rand(1, *shape), path)


def _rel(est: float, ref: float) -> float:
    return abs(est - ref) / max(ref, 1.0)


def run(names: list[str], finn_python: str | None, work: Path, yosys: bool = True) -> dict:
    from codesign.backends import finn
    from codesign.backends.finn_plus import FinnConfig, compare_build, run_jobs
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.hw.synth import synth_build

    cfg = FinnConfig.from_env(finn_python)
    designs = []
    for name in names:
        q = export(name, work / name / "model.onnx")
        for fps in NETWORKS[name][3]:
            b = work / name / f"fps{fps}"
            t0 = time.perf_counter()
            build_dataflow(q, BuildConfig(output_dir=b, board="Pynq-Z2", clock_ns=10.0, target_fps=fps))
            ours_s = time.perf_counter() - t0
            finn.write_finn_build_dir(q, b / "finn", "Pynq-Z2", 10.0, folding=b / "folding_config.json")
            t0 = time.perf_counter()
            syn = synth_build(b) if yosys else None
            designs.append({"network": name, "target_fps": fps, "build": b, "ours_s": ours_s,
                            "yosys_s": time.perf_counter() - t0, "yosys": syn})
            log.info("%s @ %d FPS: compiled %.1f s, Yosys %.1f s", name, fps, ours_s, designs[-1]["yosys_s"])
    t0 = time.perf_counter()
    doc = run_jobs([{"kind": "estimate", "build_dir": str((d["build"] / "finn").resolve())} for d in designs], cfg,
                   work / "runner")
    finn_wall = time.perf_counter() - t0
    rows, errs = [], {"ours": {"LUT": [], "BRAM_18K": []}, "finn": {"LUT": [], "BRAM_18K": []}}
    for d, est in zip(designs, doc["results"]):
        row = {"network": d["network"], "target_fps": d["target_fps"], "ours_compile_s": round(d["ours_s"], 2),
               "yosys_s": round(d["yosys_s"], 1), "finn_s": est.get("seconds"), "finn_ok": est.get("ok")}
        if not est.get("ok"):
            row["finn_error"] = est.get("error")
            rows.append(row)
            continue
        cmp = compare_build(d["build"], est["output_dir"])
        ynodes = d["yosys"]["nodes"] if d["yosys"] else None
        nodes = []
        for r in cmp["rows"]:
            if r["node"] is None or r["op"] in PLUMBING or r["finn"] is None or (ynodes is not None and r["node"] not in ynodes):
                continue
            y = ynodes[r["node"]] if ynodes is not None else {"LUT": None, "BRAM_18K": None}
            nodes.append({"node": r["node"], "op": r["op"], "yosys_LUT": y["LUT"], "yosys_BRAM_18K": y["BRAM_18K"],
                          "ours_LUT": r["ours"]["LUT"], "finn_LUT": r["finn"]["LUT"],
                          "ours_BRAM_18K": r["ours"]["BRAM_18K"], "finn_BRAM_18K": r["finn"]["BRAM_18K"],
                          "ours_cycles": r["ours"]["cycles"], "finn_cycles": r["finn"]["cycles"]})
            for who in ("ours", "finn") if ynodes is not None else ():
                errs[who]["LUT"].append(_rel(nodes[-1][f"{who}_LUT"], y["LUT"]))
                errs[who]["BRAM_18K"].append(abs(nodes[-1][f"{who}_BRAM_18K"] - y["BRAM_18K"]))
        tot = {k: sum(n[k] for n in nodes) if ynodes is not None or not k.startswith("yosys") else None for k in ("yosys_LUT", "ours_LUT", "finn_LUT", "yosys_BRAM_18K",
                                                      "ours_BRAM_18K", "finn_BRAM_18K")}
        row.update(matched_nodes=len(nodes), **tot, yosys_total_LUT=d["yosys"]["LUT"] if d["yosys"] else None,
                   ours_total_LUT=cmp["totals"]["ours"]["LUT"], finn_total_LUT=cmp["totals"]["finn"]["LUT"],
                   ours_max_cycles=cmp["network"]["ours"]["max_cycles"], finn_max_cycles=cmp["network"]["finn"]["max_cycles"],
                   finn_only_nodes=cmp["finn_only_nodes"], nodes=nodes)
        rows.append(row)
    n = max(1, len(designs))
    return {"board": "Pynq-Z2", "clock_ns": 10.0, "yosys_family": "xc7", "designs": rows,
            "mean_error_vs_yosys": summarise(rows, errs),
            "finn_timing": {"designs": len(designs), "wall_s": round(finn_wall, 2), "import_s": doc["import_seconds"],
                            "per_design_s": round((finn_wall - doc["import_seconds"]) / n, 2)},
            "finn_plus_version": doc.get("finn_plus_version")}


def summarise(rows: list[dict], errs: dict) -> dict:
    """Mean errors against Yosys: per node (relative LUT, absolute BRAM18) and per design (relative
    LUT of the matched nodes' sum, which weighs big nodes as the board budget does)."""
    out = {}
    for who, e in errs.items():
        tot = [_rel(r[f"{who}_LUT"], r["yosys_LUT"]) for r in rows if r.get("finn_ok") and r.get("yosys_LUT") is not None]
        out[who] = {"LUT_mean_rel_error": round(float(np.mean(e["LUT"])), 4) if e["LUT"] else None,
                    "BRAM_18K_mean_abs_error": round(float(np.mean(e["BRAM_18K"])), 3) if e["BRAM_18K"] else None,
                    "nodes": len(e["LUT"]),
                    "design_LUT_mean_rel_error": round(float(np.mean(tot)), 4) if tot else None, "designs": len(tot)}
    return out


def markdown(res: dict) -> str:
    lines = ["| network | target FPS | max cycles ours / FINN+ | LUT Yosys | LUT ours | LUT FINN+ | BRAM18 Yosys / ours / FINN+ |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["designs"]:
        if not r.get("finn_ok"):
            lines.append(f"| {r['network']} | {r['target_fps']:,} | FINN+ failed: {r.get('finn_error')} | | | | |")
            continue
        f = (lambda v: "-" if v is None else f"{v:,.0f}")
        lines.append(f"| {r['network']} | {r['target_fps']:,} | {r['ours_max_cycles']:,} / {r['finn_max_cycles']:,} | "
                     f"{f(r['yosys_LUT'])} | {f(r['ours_LUT'])} | {f(r['finn_LUT'])} | "
                     f"{f(r['yosys_BRAM_18K'])} / {f(r['ours_BRAM_18K'])} / {f(r['finn_BRAM_18K'])} |")
    m = res["mean_error_vs_yosys"]
    if m["ours"]["designs"]:
        lines += ["", "| estimator | mean LUT error vs Yosys, per design | per node | mean BRAM18 error per node | designs / nodes |",
                  "|---|---:|---:|---:|---:|"]
    for who, label in (("ours", "codesign"), ("finn", "FINN+ 1.6.1")) if m["ours"]["designs"] else ():
        e = m[who]
        pct = (lambda v: f"{v:.1%}" if v is not None else "-")
        lines.append(f"| {label} | {pct(e['design_LUT_mean_rel_error'])} | {pct(e['LUT_mean_rel_error'])} | "
                     f"{e['BRAM_18K_mean_abs_error']} | {e['designs']} / {e['nodes']} |")
    t = res["finn_timing"]
    lines += ["", "Matched nodes only (FIFOs/DWCs and the nodes only FINN+ puts in hardware excluded). "
                  "Max cycles differ where FINN+'s input Thresholding (a 1-channel image: PE <= NumChannels = 1, one pixel per cycle) is its bottleneck.",
              "", f"FINN+ estimate flow: {t['per_design_s']} s per design + {t['import_s']} s import "
                  f"({t['designs']} designs in one subprocess, {t['wall_s']} s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tfc and TFC-w1a1 only")
    ap.add_argument("--networks", nargs="*", choices=sorted(NETWORKS), help="override the network list")
    ap.add_argument("--finn-python", default=None, help="FINN+ environment's python (default .venv-finn/bin/python)")
    ap.add_argument("--no-yosys", action="store_true",
                    help="ours vs FINN+ only (no synthesis: minutes instead of an hour for the CNVs); "
                         "default out benchmarks/results/finn_estimates.json")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/finn.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.networks or (list(QUICK) if args.quick else list(NETWORKS))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_finn_") as tmp:
        res = run(names, args.finn_python, Path(tmp), yosys=not args.no_yosys)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["mode"] = ("quick" if args.quick else "full") + (" no-yosys" if args.no_yosys else "")
    if args.out is None:
        args.out = RESULTS / ("finn_estimates.json" if args.no_yosys else "finn.json")
    write_json(args.out, res)
    md = markdown(res)
    write_text(args.out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
