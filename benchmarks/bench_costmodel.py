"""Cost model vs Yosys: a generated corpus of single-node designs, the fit and the held-out error.

Why: the per-op LUT/FF formulas (``resources`` of each op module in codesign/dataflow/ops) are
structural counts of the pipelined RTL in accel_templates/ with a few fitted coefficients; this
benchmark is where those coefficients come from and where their error is measured on designs
that were not used to fit them. BRAM18 and DSP are discrete and modelled exactly, so their
held-out error must be zero.

Steps:
  1. ``corpus()``: every op at 1..8 bits, a grid of PE/SIMD, both ram styles for ops with
     memories, resType lut and dsp for the MVAU (small designs: seconds each in Yosys).
  2. Synthesis (Debian yosys 0.23 ``synth_xilinx -family xc7``), one node per Yosys run (the
     renderer stitches a chain, and corpus nodes do not chain); each node's counts are cached under a hash
     of its generated Verilog and ROM files (benchmarks/results/yosys_corpus.json; ``--resume``
     re-synthesises only what is missing).
  3. Split: every 4th design of an op held out, plus whole held-out configurations
     (``HELD_OUT_CONFIGS``); ``--fit`` solves non-negative least squares per op and resource on
     the op's structural features (``<op module>.resource_features``) over the training designs
     and prints the coefficient blocks to paste into the op modules.
  4. Report: mean |relative error| per resource and op on the held-out designs, with the
     coefficients shipped in the op modules (benchmarks/results/costmodel.json + .md).
  5. Whole designs (``--designs``, default all; never fitted): the demo's TFC and CNV w2a2 at
     1,000 FPS on a Pynq-Z2 (benchmarks/designs.py, the designs bench_timing.py measures) are
     compiled, every HW node is synthesised alone and cached by its Verilog hash
     (benchmarks/results/yosys_designs.json), and the compiler's own estimate
     (``codesign.dataflow.cost.node_cost``) is put next to Yosys per node, per op and for the
     whole design (benchmarks/results/costmodel_designs.json + .md). CNV takes tens of minutes
     the first time (its widest MVAUs); a rerun with ``--resume`` only compiles.

Run: ``nice -n 10 python benchmarks/bench_costmodel.py --resume [--fit [--write] [--ops VVAU,...]] [--designs demo|cnv|none]``
(``--cached``: no synthesis at all, report what the caches hold).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codesign.atomic import write_json, write_text  # noqa: E402
from codesign.dataflow.cost import MODEL_NAME  # noqa: E402
from codesign.dataflow.ops import op_class  # noqa: E402
from codesign.errors import CodesignError  # noqa: E402
from codesign.hw.opspecs import BUILDERS  # noqa: E402
from codesign.hw.rtl import HWNodeSpec, render_nodes  # noqa: E402
from codesign.hw.synth import synth_design  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import designs as whole_designs  # noqa: E402  (benchmarks/designs.py: the designs bench_timing measures too)

log = logging.getLogger("bench_costmodel")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CORPUS_JSON = RESULTS / "yosys_corpus.json"
#: Yosys counts of the whole designs' nodes, keyed by each node's Verilog hash (as the corpus)
DESIGNS_JSON = RESULTS / "yosys_designs.json"
RES = ("LUT", "FF", "BRAM_18K", "DSP")

#: whole configurations never used for fitting (checked as held out whatever their index)
HELD_OUT_CONFIGS = {"mvau_w3a5", "thr_in6", "swg_k2", "vvau_k25"}


def _dt(bits: int, signed: bool) -> str:
    if bits == 1:
        return "BIPOLAR"
    return f"INT{bits}" if signed else f"UINT{bits}"


def corpus() -> list[dict[str, Any]]:
    """Design descriptions: {id, op, config, kw} with kw the op's example_node arguments."""
    out: list[dict[str, Any]] = []

    def add(op: str, config: str, **kw: Any) -> None:
        out.append({"id": f"{config}_{len([d for d in out if d['config'] == config])}", "op": op,
                    "config": config, "kw": kw})

    # MVAU: (w, a) bits, activation outputs, PE x SIMD grid, ram styles, resType lut / dsp
    mv = [(4, 4, "UINT2"), (2, 2, "UINT2"), (1, 1, "BIPOLAR"), (8, 8, None), (3, 5, "UINT4"),
          (6, 2, "UINT3"), (1, 4, "UINT2"), (4, 1, None), (2, 6, "UINT2"), (5, 3, None)]
    grid = [(1, 1), (1, 2), (2, 2), (2, 4), (4, 2), (4, 4), (1, 8), (8, 1)]
    i = 0
    for wb, ab, odt in mv:
        for pe, simd in grid:
            if pe * simd * max(wb, 1) > 64:
                continue
            i += 1
            if i % 4:  # a quarter of the grid keeps the corpus to minutes in all (~12 s a design)
                continue
            mw, mh = simd * (4 if i % 3 else 8), pe * (2 if i % 4 else 4)
            style = ("auto", "distributed", "block")[i % 3]
            kw = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, idt=_dt(ab, ab > 1 and i % 5 == 0),
                      wdt=_dt(wb, True), odt=odt or "INT32", nthr=None if odt else 0,
                      ram_style=style, seed=i)
            if ab == 1 and wb > 1:
                kw["idt"] = "BIPOLAR"
            add("MVAU", f"mvau_w{wb}a{ab}", **kw)
            if wb >= 2 and ab >= 2 and wb + ab >= 8 and pe * simd <= 8:
                add("MVAU", f"mvau_w{wb}a{ab}", **{**kw, "res_type": "dsp", "seed": i + 100})
    # bigger weight memories (BRAM by the aspect table, LUTRAM with distributed)
    for style in ("block", "distributed", "auto"):
        add("MVAU", "mvau_mem", MW=128, MH=16, PE=1, SIMD=2, idt="UINT2", wdt="INT2", odt="INT32", nthr=0,
            ram_style=style, seed=7)
    add("MVAU", "mvau_mem", MW=256, MH=8, PE=2, SIMD=1, idt="UINT4", wdt="INT4", odt="UINT2",
        ram_style="auto", seed=8)
    # where Yosys' own choice (auto) moves a ROM from logic into block RAM: 8 Kib vs 16 Kib
    add("MVAU", "mvau_mem", MW=256, MH=4, PE=1, SIMD=2, idt="UINT2", wdt="INT8", odt="INT32", nthr=0,
        ram_style="auto", seed=6)
    add("MVAU", "mvau_mem", MW=512, MH=4, PE=1, SIMD=2, idt="UINT2", wdt="INT8", odt="INT32", nthr=0,
        ram_style="auto", seed=5)
    # banked weight ROMs (deeper than one block RAM at their width: one BRAM per bank, the bank
    # select mux after the bank registers), as CNV's last convolutions and its FC layers have
    for mw, mh, pe, simd, wb, ab in ((2304, 64, 1, 8, 1, 1), (1152, 64, 1, 4, 2, 2), (2304, 128, 1, 8, 2, 2),
                                     (576, 64, 2, 4, 1, 1), (1152, 128, 1, 2, 1, 1), (512, 256, 1, 4, 2, 2)):
        add("MVAU", "mvau_bank", MW=mw, MH=mh, PE=pe, SIMD=simd, idt=_dt(ab, False), wdt=_dt(wb, True),
            odt="BIPOLAR" if ab == 1 else "UINT2", nthr=1 if ab == 1 else None, ram_style="auto", seed=mw + mh)
    # wide binary layers (XNOR popcount trees of 16-32 leaves) and a bipolar-weight first layer
    # (8-bit pixels times +-1), as CNV w1a1 folds them
    for mw, mh, pe, simd, idt in ((64, 8, 2, 16, "BIPOLAR"), (128, 4, 1, 32, "BIPOLAR"), (64, 16, 4, 16, "BIPOLAR"),
                                  (27, 64, 16, 1, "UINT8"), (27, 32, 8, 3, "UINT8")):
        add("MVAU", "mvau_xnor_wide", MW=mw, MH=mh, PE=pe, SIMD=simd, idt=idt, wdt="BIPOLAR", odt="BIPOLAR", nthr=1,
            ram_style="auto", seed=mw * pe + simd)
    # the input buffer (2 x 2^clog2(SF) words of SIMD*A bits, no ram_style): LUTRAM or block RAM
    for mw, simd, idt in ((576, 8, "UINT4"), (256, 4, "UINT4"), (512, 4, "UINT2"), (256, 8, "UINT4"),
                          (512, 8, "UINT4"), (384, 12, "UINT3")):
        add("MVAU", "mvau_ibuf", MW=mw, MH=2, PE=1, SIMD=simd, idt=idt, wdt="INT2", odt="UINT2",
            ram_style="auto", seed=mw + simd)
    # Thresholding
    for j, (ib, ob, pe, c) in enumerate([(8, 2, 1, 8), (8, 4, 2, 8), (4, 2, 4, 8), (6, 3, 1, 16), (6, 2, 2, 4),
                                         (3, 1, 1, 8), (7, 2, 1, 32), (4, 4, 2, 64)]):
        odt = "BIPOLAR" if ob == 1 else f"UINT{ob}"
        add("Thresholding", f"thr_in{ib}", C=c, PE=pe, idt=_dt(ib, j % 2 == 0), odt=odt,
            nthr=1 if ob == 1 else None, ram_style=("auto", "distributed", "block")[j % 3], seed=j)
    # Thresholding with one threshold row for all channels (per-tensor activations, as ResNet-8's
    # standalone quantizers): the ROM is constant, the core's compares and registers are not
    for j, (ib, nthr, pe, c) in enumerate([(4, 31, 1, 16), (6, 15, 1, 16), (6, 15, 1, 64), (6, 15, 2, 32),
                                           (8, 3, 1, 8), (4, 7, 4, 16), (5, 31, 2, 32), (7, 15, 1, 32)]):
        add("Thresholding", "thr_tensor", C=c, PE=pe, idt=_dt(ib, j % 2 == 1), odt=f"UINT{nthr.bit_length()}",
            nthr=nthr, ram_style=("auto", "distributed")[j % 2], seed=50 + j, per_tensor=True)
    # deeper per-channel threshold ROMs (a mux tree above 64 words)
    for j, (ib, pe, c) in enumerate([(6, 1, 128), (5, 1, 64), (6, 2, 256)]):
        add("Thresholding", "thr_deep", C=c, PE=pe, idt=_dt(ib, False), odt="UINT4", ram_style="auto", seed=60 + j)
    # VVAU: K (1, 3x3, 5x5, 7x7, 10x4 ...) x C x PE, 2..8 bits and BINARY all-ones weights (average
    # pools), with thresholds per channel (folded batch norm) or one row for all (per-tensor),
    # without activation, ram styles and DSP multiplies
    vv = [  # K, C, PE, SIMD, wdt, idt, nthr, thresholds, ram_style, resType
        (9, 8, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 16, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 32, 1, 1, "INT4", "UINT4", None, "tensor", "auto", "lut"),
        (9, 64, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 128, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 256, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 64, 4, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 32, 2, 1, "INT4", "UINT4", None, "tensor", "auto", "lut"),
        (9, 16, 4, 1, "INT2", "UINT2", None, "channel", "auto", "lut"),
        (9, 8, 2, 1, "INT3", "UINT5", 7, "channel", "distributed", "lut"),
        (4, 16, 2, 1, "INT4", "INT4", 0, None, "auto", "lut"),
        (4, 8, 1, 1, "INT2", "UINT2", 0, None, "auto", "lut"),
        (1, 64, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (1, 256, 1, 1, "BINARY", "UINT4", None, "tensor", "auto", "lut"),
        (49, 64, 1, 1, "BINARY", "UINT4", None, "tensor", "auto", "lut"),
        (40, 16, 1, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (25, 32, 2, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 4, 4, 3, "INT4", "UINT4", 3, "channel", "auto", "dsp"),
        (9, 8, 8, 1, "INT8", "UINT8", 0, None, "auto", "dsp"),
        (9, 16, 1, 1, "INT8", "UINT8", None, "channel", "auto", "lut"),
        (9, 32, 4, 1, "INT6", "UINT2", 7, "channel", "auto", "lut"),
        (9, 128, 2, 1, "INT4", "UINT4", None, "tensor", "auto", "lut"),
        (9, 64, 1, 1, "INT4", "UINT4", None, "channel", "distributed", "lut"),
        (9, 64, 2, 1, "INT4", "UINT4", None, "channel", "block", "lut"),
        (9, 16, 8, 1, "INT4", "UINT4", 0, None, "auto", "lut"),
        (4, 32, 4, 1, "INT3", "UINT3", 3, "channel", "auto", "lut"),
        (9, 256, 4, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (9, 256, 1, 1, "INT2", "UINT2", 3, "channel", "auto", "lut"),
        (16, 128, 1, 1, "INT2", "UINT3", 7, "channel", "auto", "lut"),
        (9, 16, 2, 1, "INT5", "UINT3", 15, "tensor", "distributed", "lut"),
        (9, 48, 3, 1, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (4, 64, 8, 1, "INT4", "UINT4", None, "tensor", "auto", "lut"),
        (9, 8, 8, 9, "INT4", "UINT4", None, "channel", "auto", "lut"),
        (25, 16, 1, 1, "BINARY", "UINT4", None, "tensor", "auto", "lut"),
        (9, 32, 1, 1, "INT4", "INT4", None, "channel", "auto", "lut"),
        (9, 64, 2, 1, "INT2", "UINT4", None, "channel", "auto", "lut"),
    ]
    for j, (k, c, pe, simd, wdt, idt, nthr, thr, style, res) in enumerate(vv):
        kw = dict(K=k, C=c, PE=pe, SIMD=simd, wdt=wdt, idt=idt, nthr=nthr, ram_style=style, res_type=res, seed=200 + j)
        if thr:
            kw["thresholds"] = thr
        if wdt == "BINARY":
            kw["weights"] = "ones"
        add("VVAU", f"vvau_k{k}", **kw)
    # SlidingWindow
    for j, (ih, c, simd, k, s, b) in enumerate([(6, 4, 1, 3, 1, 4), (8, 4, 2, 3, 1, 2), (6, 8, 4, 3, 1, 8),
                                                (8, 2, 1, 2, 2, 4), (10, 4, 4, 2, 2, 1), (8, 16, 4, 3, 1, 2),
                                                # small images: one output row/column (CNV's last
                                                # window, 3x3 -> 1x1: constant counters vanish)
                                                (3, 32, 8, 3, 1, 2), (3, 16, 4, 3, 1, 1), (5, 8, 4, 3, 1, 4),
                                                (4, 8, 2, 3, 1, 2)]):
        add("SlidingWindow", f"swg_k{k}", ih=ih, C=c, SIMD=simd, k=k, s=s, dt=_dt(b, j % 2 == 1) if b > 1 else "BIPOLAR")
    # StreamingMaxPool
    for j, (ih, c, pe, k, b) in enumerate([(8, 4, 1, 2, 4), (8, 4, 2, 2, 2), (12, 8, 4, 2, 8), (6, 2, 1, 3, 3),
                                           (16, 4, 2, 2, 6),
                                           # wide PE, as FINN's StreamingMaxPool folding gives CNV (PE = C)
                                           (8, 64, 64, 2, 2), (16, 32, 16, 2, 4), (8, 128, 128, 2, 1),
                                           (16, 64, 8, 2, 2)]):
        add("StreamingMaxPool", f"pool_k{k}", ih=ih, C=c, PE=pe, k=k, dt=_dt(b, j % 2 == 0) if b > 1 else "BIPOLAR")
    # FMPadding
    for j, (ih, c, simd, pad, b) in enumerate([(6, 4, 1, 1, 4), (8, 4, 2, 1, 2), (6, 8, 4, 2, 8), (4, 2, 2, 1, 1),
                                               (8, 16, 8, 1, 3)]):
        add("FMPadding", "pad", ih=ih, C=c, SIMD=simd, pad=pad, dt=_dt(b, j % 2 == 0) if b > 1 else "BIPOLAR")
    # StreamingDataWidthConverter
    for j, (inw, outw, b) in enumerate([(8, 32, 4), (32, 8, 4), (4, 24, 2), (24, 4, 2), (16, 48, 8),
                                        # wide ratios (a long shift by the fill count)
                                        (48, 3, 3), (3, 48, 3), (32, 2, 2), (4, 64, 4), (72, 6, 3),
                                        # non-integer ratios (the bit queue) and wide integer ones
                                        (16, 24, 4), (24, 16, 4), (40, 24, 4), (96, 64, 4), (64, 96, 4),
                                        (12, 20, 2), (128, 32, 2), (512, 64, 4)]):
        lcm = math.lcm(inw, outw)  # the frame must split into whole words of both widths
        add("StreamingDataWidthConverter", "dwc", inw=inw, outw=outw,
            elems=48 if (48 * b) % lcm == 0 else 2 * lcm // math.gcd(lcm, b), dt=_dt(b, j % 2 == 0))
    # StreamingFIFO
    for j, (depth, fold, b) in enumerate([(2, 4, 4), (8, 4, 4), (32, 2, 8), (64, 8, 2), (256, 4, 4), (16, 1, 1),
                                          (1024, 2, 4), (128, 4, 4), (128, 2, 8), (512, 1, 3),
                                          # shallow FIFOs across the width where Yosys switches
                                          # between flip-flops and LUTRAM
                                          (2, 2, 2), (2, 4, 2), (2, 3, 4), (2, 2, 7), (2, 5, 4), (2, 6, 4),
                                          (2, 8, 4), (2, 7, 8), (4, 3, 4), (8, 6, 2), (32, 3, 4), (4, 8, 4)]):
        add("StreamingFIFO", "fifo", depth=depth, fold=fold, words=64, dt=_dt(b, False) if b > 1 else "BIPOLAR")
    # LabelSelect
    for j, (L, pe, k, b) in enumerate([(10, 1, 1, 8), (10, 2, 3, 8), (16, 4, 2, 6), (12, 3, 1, 4)]):
        add("LabelSelect", "topk", L=L, PE=pe, K=k, idt=_dt(b, True))
    # held-out: every 4th design of each op, plus the whole configurations in HELD_OUT_CONFIGS
    per_op: dict[str, int] = {}
    for d in out:
        n = per_op.get(d["op"], 0)
        per_op[d["op"]] = n + 1
        d["held_out"] = bool(n % 4 == 3 or d["config"] in HELD_OUT_CONFIGS)
    return out


def build(d: dict[str, Any]) -> HWNodeSpec:
    spec = BUILDERS[d["op"]](name=d["id"], **d["kw"])
    return spec


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def params(spec: HWNodeSpec) -> dict[str, Any]:
    """The op's cost parameters of a node spec (what the op's ``resources`` reads)."""
    cls = op_class(spec.op_type)
    a = dict(cls().declared_defaults()) if False else {}
    a.update(spec.attrs)
    a["name"] = spec.name
    return {k: _plain(v) for k, v in cls.params_from_attrs(a, spec.inits).items()}


def design_hash(spec: HWNodeSpec) -> str:
    """Hash of the node's generated Verilog and ROM data (name-independent)."""
    with tempfile.TemporaryDirectory() as td:
        norm = HWNodeSpec("n", spec.op_type, spec.attrs, spec.inits)
        design = render_nodes([norm], Path(td) / "rtl")
        h = hashlib.sha256()
        for f in sorted(design.verilog_files + design.data_files):
            h.update(f.encode())
            h.update((design.out_dir / f).read_bytes())
        return h.hexdigest()[:20]


def _size(d: dict[str, Any]) -> int:
    p = d["params"]
    if d["op"] == "MVAU":
        return int(p["PE"]) * int(p["SIMD"]) * max(int(p["wbits"]), 1) * max(int(p["abits"]), 1)
    return 0


def load_cache(path: Path = CORPUS_JSON) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"tool": None, "designs": {}}


def synthesise(designs: list[dict[str, Any]], resume: bool, batch: int = 1, run: bool = True,
               cache_path: Path = CORPUS_JSON) -> dict[str, Any]:
    """Cached Yosys counts for every design (``run=False``: only what the cache holds).

    A design is {id, op, ...} with either ``kw`` (corpus: built by the op's example builder) or
    ``spec`` (a node of a compiled design, as ``hw_node_specs`` gives it)."""
    cache = load_cache(cache_path) if resume or not run else {"tool": None, "designs": {}}
    todo = []
    for d in designs:
        spec = d["spec"] if "spec" in d else build(d)
        try:
            d["hash"] = design_hash(spec)
        except CodesignError as exc:  # a corpus design the generator refuses: reported, skipped
            log.warning("%s: not generated (%s)", d["id"], str(exc).strip().splitlines()[-1][:200])
            d["hash"] = None
            continue
        d["params"] = params(spec)
        if d["hash"] not in cache["designs"]:
            todo.append((d, spec))
    if not run:
        return cache
    # small designs first: an interrupted run still covers every op
    todo.sort(key=lambda t: (t[0]["op"] == "MVAU", _size(t[0])))
    log.info("%d designs, %d to synthesise", len(designs), len(todo))
    for i in range(0, len(todo), batch):
        chunk = todo[i:i + batch]
        with tempfile.TemporaryDirectory() as td:
            t0 = time.time()
            try:
                rep = synth_design(render_nodes([s for _, s in chunk], Path(td) / "rtl"), "xc7")
            except CodesignError as exc:  # recorded, reported, never fitted
                msg = str(exc).strip().splitlines()[-1][:300]
                for d, _ in chunk:
                    cache["designs"][d["hash"]] = {"error": msg}
                log.warning("%s: %s", [d["id"] for d, _ in chunk], msg)
                write_json(cache_path, cache)
                continue
            cache["tool"] = rep["tool"] + " synth_xilinx -family xc7"
            for d, s in chunk:
                n = rep["nodes"][s.name]
                cache["designs"][d["hash"]] = {r: int(n[r]) for r in RES} | {"cells": n["cells"]}
            log.info("synthesised %s in %.1f s", [d["id"] for d, _ in chunk], time.time() - t0)
        write_json(cache_path, cache)  # after every batch: --resume continues from here
    return cache


def rows(designs: list[dict[str, Any]], cache: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for d in designs:
        meas = cache["designs"].get(d["hash"]) if d.get("hash") else None
        if meas is None or "error" in meas:
            continue
        out.append({**d, "yosys": {r: meas[r] for r in RES}})
    return out


def estimate(op: str, p: dict[str, Any], coef: dict[str, Any] | None = None) -> dict[str, float]:
    cls = op_class(op)
    if coef is not None:
        mod = sys.modules[cls.__module__]
        old = dict(mod.RESOURCE_COEFFS)
        mod.RESOURCE_COEFFS.update(coef)
        try:
            r = cls.resources(p)
        finally:
            mod.RESOURCE_COEFFS.clear()
            mod.RESOURCE_COEFFS.update(old)
    else:
        r = cls.resources(p)
    return {k: float(np.asarray(r[k])) for k in RES}


def fit(rs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """NNLS per op and resource (LUT, FF) on the op module's structural features, training rows."""
    from scipy.optimize import nnls

    coefs: dict[str, dict[str, list[float]]] = {}
    for op in sorted({r["op"] for r in rs}):
        train = [r for r in rs if r["op"] == op and not r["held_out"]]
        coefs[op] = {}
        for res in ("LUT", "FF"):
            X = np.array([[float(np.asarray(v)) for v in op_class(op).resource_features(r["params"])[res]] for r in train])
            y = np.array([r["yosys"][res] for r in train], dtype=np.float64)
            # relative-error weighting: each design counts by 1/measured, so small designs matter
            w = 1.0 / np.maximum(y, 4.0)
            c, _ = nnls(X * w[:, None], y * w)
            coefs[op][res] = [round(float(v), 4) for v in c]
    return coefs


def write_coeffs(coefs: dict[str, dict[str, list[float]]]) -> None:
    """Rewrite the RESOURCE_COEFFS literal between the coefficient markers of each op module."""
    import re

    for op, c in coefs.items():
        path = Path(sys.modules[op_class(op).__module__].__file__)
        text = path.read_text()
        block = ('RESOURCE_COEFFS: dict[str, list[float]] = {\n'
                 f'    "LUT": {c["LUT"]},\n    "FF": {c["FF"]},\n}}\n')
        new, n = re.subn(r"RESOURCE_COEFFS: dict\[str, list\[float\]\] = \{\n.*?\n\}\n", block, text, count=1,
                         flags=re.S)
        if n != 1:
            raise SystemExit(f"{path}: no RESOURCE_COEFFS block")
        write_text(path, new)
        log.info("wrote %s coefficients into %s", op, path)


def report(rs: list[dict[str, Any]], tool: str) -> dict[str, Any]:
    per_op: dict[str, Any] = {}
    allerr: dict[str, list[float]] = {r: [] for r in RES}
    detail = []
    for r in rs:
        est = estimate(r["op"], r["params"])
        detail.append({"id": r["id"], "op": r["op"], "held_out": r["held_out"], "yosys": r["yosys"],
                       "estimate": {k: round(v, 1) for k, v in est.items()}})
        if not r["held_out"]:
            continue
        e = per_op.setdefault(r["op"], {k: [] for k in RES})
        for k in RES:
            y = r["yosys"][k]
            err = abs(est[k] - y) / y if y else float(abs(est[k]) > 0.5)
            e[k].append(err)
            allerr[k].append(err)
    summary = {op: {k: round(float(np.mean(v)), 4) for k, v in e.items()} | {"n": len(e["LUT"])}
               for op, e in sorted(per_op.items())}
    exact = {k: all(abs(d["estimate"][k] - d["yosys"][k]) < 0.5 for d in detail if d["held_out"])
             for k in ("BRAM_18K", "DSP")}
    return {"tool": tool, "model": MODEL_NAME, "n_designs": len(rs), "n_held_out": sum(r["held_out"] for r in rs),
            "held_out_mean_abs_rel_error": {k: round(float(np.mean(v)), 4) for k, v in allerr.items()},
            "held_out_per_op": summary, "held_out_exact": exact, "designs": detail}


def markdown(rep: dict[str, Any]) -> str:
    lines = [f"# Cost model vs Yosys ({rep['tool']})", "",
             f"Model: {rep['model']}. {rep['n_designs']} single-node designs, {rep['n_held_out']} held out "
             "(every 4th design of each op plus whole configurations: "
             f"{', '.join(sorted(HELD_OUT_CONFIGS))}). Mean |relative error| on held-out designs "
             "(BRAM18/DSP: share of designs off by any count when Yosys maps none).", "",
             "| op | n | LUT | FF | BRAM18 | DSP |", "|---|---|---|---|---|---|"]
    for op, e in rep["held_out_per_op"].items():
        lines.append(f"| {op} | {e['n']} | {e['LUT']:.1%} | {e['FF']:.1%} | {e['BRAM_18K']:.1%} | {e['DSP']:.1%} |")
    a = rep["held_out_mean_abs_rel_error"]
    lines.append(f"| **all** | {rep['n_held_out']} | {a['LUT']:.1%} | {a['FF']:.1%} | {a['BRAM_18K']:.1%} | {a['DSP']:.1%} |")
    lines += ["", f"BRAM18 exact on every held-out design: {rep['held_out_exact']['BRAM_18K']}; "
              f"DSP exact: {rep['held_out_exact']['DSP']}.", "",
              "Reproduce: `nice -n 10 python benchmarks/bench_costmodel.py --resume --designs none` "
              "(refit: add `--fit --write`).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- whole designs

def rel_err(est: float, meas: float) -> float:
    """|est - meas| / meas; where Yosys maps none: 1 if the estimate has any, else 0 (as the corpus)."""
    return abs(est - meas) / meas if meas else float(abs(est) > 0.5)


def aggregate(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per op and whole-design figures from per-node rows {op, estimate, yosys}.

    Per op and for the design: the summed estimate and Yosys count per resource, the relative
    error of the sums (``err``: what a resource budget sees) and the mean per-node |relative
    error| (``node_err``: the figure the corpus reports); BRAM18/DSP also ``exact`` (every node)."""
    def summ(rs: list[dict[str, Any]]) -> dict[str, Any]:
        est = {k: float(sum(r["estimate"][k] for r in rs)) for k in RES}
        ys = {k: int(sum(r["yosys"][k] for r in rs)) for k in RES}
        return {"n": len(rs), "estimate": est, "yosys": ys,
                "err": {k: round(rel_err(est[k], ys[k]), 4) for k in RES},
                "node_err": {k: round(float(np.mean([rel_err(r["estimate"][k], r["yosys"][k]) for r in rs])), 4)
                             for k in RES},
                "exact": {k: all(abs(r["estimate"][k] - r["yosys"][k]) < 0.5 for r in rs) for k in ("BRAM_18K", "DSP")}}

    ops = sorted({r["op"] for r in nodes})
    return {"per_op": {op: summ([r for r in nodes if r["op"] == op]) for op in ops}, "total": summ(nodes)}


_SHOWN = ("PE", "SIMD", "MW", "MH", "C", "wdt", "idt", "odt", "n_thr", "acc_bits", "ram_style", "resType", "depth")


def compile_design(which: str, work: Path) -> tuple[Any, str, float]:
    """Compile one of benchmarks/designs.py's designs into work/; (dataflow model, label, est. FPS)."""
    from qonnx.core.modelwrapper import ModelWrapper

    res, label = whole_designs.BUILDERS[which](work)
    return (ModelWrapper(str(res.output_dir / "dataflow.onnx")), label,
            float(res.performance["estimated_throughput_fps"]))


def design_nodes(model: Any) -> list[dict[str, Any]]:
    """Every HW node of a compiled design with the compiler's own estimate (``estimates_for``:
    ``codesign.dataflow.cost.node_cost``, what compile, search and the reports use)."""
    from codesign.hw.rtl import hw_node_specs
    from codesign.hw.synth import estimates_for

    est = estimates_for(model)
    return [{"id": s.name, "op": s.op_type, "spec": s,
             "estimate": {k: float(np.asarray(est[s.name][k])) for k in RES}} for s in hw_node_specs(model)]


def bench_designs(which: list[str], resume: bool = True, run: bool = True) -> dict[str, Any]:
    """Compile each design, synthesise every node alone (Yosys xc7, cached by Verilog hash in
    DESIGNS_JSON) and put the estimate next to the count per node, per op and for the design.
    These designs are never used for fitting."""
    out: dict[str, Any] = {}
    for w in which:
        with tempfile.TemporaryDirectory(prefix=f"cmd_{w}.") as td:
            t0 = time.time()
            model, label, fps = compile_design(w, Path(td))
            nodes = design_nodes(model)
            log.info("%s: compiled %d HW nodes in %.0f s", w, len(nodes), time.time() - t0)
            cache = synthesise(nodes, resume, run=run, cache_path=DESIGNS_JSON)
        rows, pending = [], []
        for d in nodes:
            meas = cache["designs"].get(d["hash"])
            fold = {k: d["params"][k] for k in _SHOWN if k in d["params"]}
            if meas is None or "error" in meas:  # --cached before synthesis finished, or Yosys failed
                pending.append({"node": d["id"], "op": d["op"], "hash": d["hash"], "folding": fold,
                                "estimate": d["estimate"], "why": (meas or {}).get("error", "not synthesised yet")})
                continue
            rows.append({"node": d["id"], "op": d["op"], "hash": d["hash"], "folding": fold,
                         "estimate": d["estimate"], "yosys": {k: meas[k] for k in RES},
                         "err": {k: round(rel_err(d["estimate"][k], meas[k]), 4) for k in RES}})
        if pending:
            log.warning("%s: %d of %d nodes have no Yosys count yet: the sums cover the others", w, len(pending),
                        len(nodes))
        out[w] = {"design": label, "estimated_fps": fps, "tool": cache["tool"], "complete": not pending,
                  "nodes": rows, "pending": pending, **aggregate(rows)}
    return out


def _cell(est: float, ys: int, err: float) -> str:
    return f"{est:.0f} / {ys} ({err:.0%})"


def designs_markdown(doc: dict[str, Any]) -> str:
    """One table per design: per node, per op and the whole design, estimate / Yosys (|rel. error|)."""
    lines = [f"# Cost model vs Yosys on whole designs ({doc['tool']})", "",
             f"Model: {doc['model']}. Every HW node of each compiled design synthesised alone (Yosys "
             "`synth_xilinx -family xc7`, hierarchy kept), the estimate being the compiler's own "
             "(`codesign.dataflow.cost.node_cost`). None of these designs was used for fitting. Cells: "
             "estimate / Yosys (|relative error|); per op and design rows sum the nodes, *node mean* is "
             "the mean per-node |relative error|.", "",
             f"Reproduce: `{doc['command']}`.", ""]
    for w, d in doc["designs"].items():
        lines += [f"## {d['design']} (estimated {d['estimated_fps']:,.0f} FPS)", "",
                  "| node | op | folding | LUT | FF | BRAM18 | DSP |", "|---|---|---|---|---|---|---|"]
        for r in d["nodes"]:
            f = r["folding"]
            fold = " ".join(f"{k}={f[k]}" for k in ("PE", "SIMD", "wdt", "idt", "ram_style", "resType", "depth")
                            if k in f and f[k] not in ("auto", "lut"))
            lines.append(f"| {r['node']} | {r['op']} | {fold} | "
                         + " | ".join(_cell(r["estimate"][k], r["yosys"][k], r["err"][k]) for k in RES) + " |")
        lines += ["", "| op | nodes | LUT | FF | BRAM18 | DSP | node mean LUT / FF |", "|---|---|---|---|---|---|---|"]
        for op, a in list(d["per_op"].items()) + [("**whole design**", d["total"])]:
            lines.append(f"| {op} | {a['n']} | "
                         + " | ".join(_cell(a["estimate"][k], a["yosys"][k], a["err"][k]) for k in RES)
                         + f" | {a['node_err']['LUT']:.1%} / {a['node_err']['FF']:.1%} |")
        t = d["total"]
        lines += ["", f"BRAM18 exact on every node: {t['exact']['BRAM_18K']}; DSP exact on every node: "
                  f"{t['exact']['DSP']}.", ""]
        if d.get("pending"):
            lines += [f"**Partial**: {len(d['pending'])} of {len(d['pending']) + len(d['nodes'])} nodes have no Yosys "
                      "count yet (the sums above leave them out; estimates shown here): "
                      + ", ".join(f"{r['node']} ({r['op']}, {' '.join(f'{k}={v}' for k, v in r['folding'].items() if k in ('PE', 'SIMD'))}: "
                                  f"LUT {r['estimate']['LUT']:.0f}, BRAM18 {r['estimate']['BRAM_18K']:.0f})"
                                  for r in d["pending"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resume", action="store_true", help="reuse cached Yosys counts (by Verilog hash)")
    ap.add_argument("--fit", action="store_true", help="print freshly fitted coefficient blocks")
    ap.add_argument("--write", action="store_true", help="with --fit: write the coefficients into the op modules")
    ap.add_argument("--ops", default="",
                    help="with --fit: fit (and --write) only these op types, comma-separated (default all); "
                         "the other ops keep their shipped coefficients")
    ap.add_argument("--cached", action="store_true", help="no synthesis: fit/report on the cached designs only")
    ap.add_argument("--synth-only", action="store_true", help="stop after synthesis")
    ap.add_argument("--designs", choices=("all", "none", *whole_designs.BUILDERS), default="all",
                    help="whole designs (benchmarks/designs.py) to compile, synthesise node by node and "
                         "report in costmodel_designs.json/.md (default all; cached by Verilog hash)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("codesign").setLevel(logging.WARNING)
    designs = corpus()
    cache = synthesise(designs, args.resume, run=not args.cached)
    if args.synth_only:
        return 0
    rs = rows(designs, cache)
    if args.fit:
        coefs = fit(rs)
        if args.ops:
            keep = set(args.ops.split(","))
            unknown = keep - set(coefs)
            if unknown:
                raise SystemExit(f"--ops: no corpus designs of {', '.join(sorted(unknown))}; known: {', '.join(coefs)}")
            coefs = {op: c for op, c in coefs.items() if op in keep}
        print(json.dumps(coefs, indent=1))
        if args.write:
            write_coeffs(coefs)
            for op in coefs:  # the report below uses the new coefficients
                sys.modules[op_class(op).__module__].RESOURCE_COEFFS.update(coefs[op])
    rep = report(rs, cache["tool"])
    write_json(RESULTS / "costmodel.json", rep)
    write_text(RESULTS / "costmodel.md", markdown(rep))
    print(markdown(rep))
    if args.designs != "none":
        which = list(whole_designs.BUILDERS) if args.designs == "all" else [args.designs]
        res = bench_designs(which, resume=args.resume, run=not args.cached)
        doc = {"tool": next(iter(res.values()))["tool"], "model": MODEL_NAME,
               "command": "nice -n 10 python benchmarks/bench_costmodel.py --resume"
                          + ("" if args.designs == "all" else f" --designs {args.designs}"),
               "designs": res}
        path = RESULTS / "costmodel_designs.json"
        if args.designs != "all" and path.is_file():  # one design rerun: keep the other's table
            old = json.loads(path.read_text())
            doc["designs"] = {**old.get("designs", {}), **res}
        write_json(path, doc)
        write_text(RESULTS / "costmodel_designs.md", designs_markdown(doc))
        print(designs_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
