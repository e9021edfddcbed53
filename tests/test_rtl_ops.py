"""Per-op RTL vs the golden numpy semantics, with Verilator, at >= 2 foldings per op.

Every case streams several frames with seeded random input bubbles AND random drops of the
output ready (so every module's backpressure path is exercised at arbitrary cycles), and
compares every output element exactly. Builds are cached per Verilog hash, so cases that
only change weights/thresholds reuse a binary.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from codesign.dataflow import golden
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.rtlsim import first_mismatch, run_frames

BP = dict(p_bubble=0.3, p_stall=0.35)


def _run(tmp_path, specs, x, expected, seed=1, **bp):
    design = render_nodes(specs, tmp_path / "rtl")
    res = run_frames(design, x, seed=seed, **(bp or BP))
    mism = first_mismatch(np.asarray(expected).reshape(x.shape[0], -1), res.outputs)
    assert mism is None, mism
    return design, res


def _rand(rng, dt, shape):
    if dt == "BIPOLAR":
        return rng.choice([-1, 1], size=shape)
    bits = int(dt.lstrip("UINT"))
    if dt.startswith("U"):
        return rng.integers(0, 1 << bits, size=shape)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)


def _thresholds(rng, lo, hi, rows, n):
    return np.sort(rng.integers(lo, hi + 1, size=(rows, n)), axis=1).astype(np.float64)


# ------------------------------------------------------------------ MVAU
MVAU_CASES = [
    # id, MW, MH, PE, SIMD, idt, wdt, odt, n_thr, act_val, resType, nv
    ("u2xi2_thr_p1s1", 12, 6, 1, 1, "UINT2", "INT2", "UINT2", 3, 0, "lut", [1]),
    ("u2xi2_thr_wide_dsp", 12, 6, 3, 4, "UINT2", "INT2", "UINT2", 3, 0, "dsp", [1]),
    ("i4xi4_noact_p1s1", 8, 4, 1, 1, "INT4", "INT4", "INT12", 0, 0, "lut", [1]),
    ("i4xi4_noact_wide", 16, 8, 4, 8, "INT4", "INT4", "INT12", 0, 0, "lut", [1]),
    ("u8xi3_signedact_conv", 9, 4, 2, 3, "UINT8", "INT3", "INT3", 7, -4, "lut", [1, 2, 3]),
    ("xnor_bipolar_out_p1s1", 8, 4, 1, 1, "BIPOLAR", "BIPOLAR", "BIPOLAR", 1, 0, "lut", [1]),
    ("xnor_thr_wide", 32, 16, 4, 16, "BIPOLAR", "BIPOLAR", "UINT2", 3, 0, "lut", [1]),
    ("xnor_noact_wide", 16, 8, 8, 16, "BIPOLAR", "BIPOLAR", "INT6", 0, 0, "lut", [1]),
    ("u4xbip_thr_wide", 16, 6, 2, 4, "UINT4", "BIPOLAR", "UINT3", 7, 0, "lut", [1]),
    ("bipxi2_noact_p1s1", 6, 3, 1, 1, "BIPOLAR", "INT2", "INT5", 0, 0, "lut", [1]),
]


@pytest.mark.parametrize("case", MVAU_CASES, ids=[c[0] for c in MVAU_CASES])
def test_mvau(tmp_path, case):
    cid, MW, MH, PE, SIMD, idt, wdt, odt, nthr, act_val, res_type, nv = case
    rng = np.random.default_rng(zlib.crc32(cid.encode()))
    nframes = 6
    x = _rand(rng, idt, (nframes, *nv[1:], MW)) if len(nv) > 1 else _rand(rng, idt, (nframes, MW))
    attrs = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt, outputDataType=odt,
                 ActVal=act_val, noActivation=int(nthr == 0), binaryXnorMode=int(idt == wdt == "BIPOLAR"),
                 numInputVectors=nv, resType=res_type, ram_style="auto", mem_mode="const")
    for trial in range(2):  # second trial: new weights/thresholds, same structure (cached build)
        W = _rand(rng, wdt, (MW, MH))
        inits = {"W": W}
        acc = golden.mvau(x, W)
        if nthr:
            T = _thresholds(rng, int(acc.min()) - 2, int(acc.max()) + 2, MH, nthr)
            if trial == 1:
                T = T - 0.5  # fractional thresholds: the generator must ceil them
            inits["T"] = T
            exp = golden.mvau(x, W, T, act_val)
            if odt == "BIPOLAR":
                exp = 2 * exp - 1
        else:
            exp = acc
        spec = HWNodeSpec(f"MVAU {cid}", "MVAU", attrs, inits)
        _run(tmp_path / str(trial), [spec], x, exp, seed=trial + 3)


def test_mvau_cycles_match_folding(tmp_path):
    """Without backpressure the MVAU sustains NF*SF cycles per vector."""
    rng = np.random.default_rng(7)
    MW, MH, PE, SIMD = 12, 6, 3, 4
    x = rng.integers(0, 4, size=(8, MW))
    W = rng.integers(-2, 2, size=(MW, MH))
    attrs = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType="UINT2", weightDataType="INT2",
                 outputDataType="INT8", noActivation=1, numInputVectors=[1], resType="dsp")
    design, res = _run(tmp_path, [HWNodeSpec("m", "MVAU", attrs, {"W": W})], x, golden.mvau(x, W),
                       p_bubble=0.0, p_stall=0.0)
    perf = res.performance(100.0)
    assert perf["stable_cycles_per_frame"] == (MH // PE) * (MW // SIMD)


# ------------------------------------------------------------------ Thresholding
@pytest.mark.parametrize("C,PE,idt,odt,nthr,act", [
    (6, 1, "UINT8", "UINT2", 3, 0),
    (8, 4, "INT6", "INT3", 7, -4),
])
def test_thresholding(tmp_path, C, PE, idt, odt, nthr, act):
    rng = np.random.default_rng(C * 10 + PE)
    nv = [1, 3, 2]
    x = _rand(rng, idt, (4, 3, 2, C))
    bits = int(idt.lstrip("UINT"))
    T = _thresholds(rng, -(1 << bits), (1 << bits), C, nthr)  # some outside the input range
    attrs = dict(NumChannels=C, PE=PE, numSteps=nthr, inputDataType=idt, outputDataType=odt, ActVal=act,
                 numInputVectors=nv)
    _run(tmp_path, [HWNodeSpec("thr", "Thresholding", attrs, {"T": T})], x, golden.thresholding(x, T, act))


# ------------------------------------------------------------------ SlidingWindow
@pytest.mark.parametrize("ih,iw,C,SIMD,k,s,dt", [
    (5, 5, 2, 1, 3, 1, "UINT4"),
    (7, 6, 4, 4, 2, 2, "INT3"),      # remainder row dropped, SIMD = C
    (6, 7, 4, 2, 3, 2, "UINT8"),
    (3, 3, 2, 2, 3, 1, "UINT2"),     # one output pixel (OH = OW = 1): every "last" flag starts set
    (4, 3, 2, 2, 1, 1, "UINT2"),     # 1x1 kernel, SIMD = C: one word per window (KWC = KH = 1)
])
def test_sliding_window(tmp_path, ih, iw, C, SIMD, k, s, dt):
    rng = np.random.default_rng(ih * 100 + iw)
    x = _rand(rng, dt, (3, ih, iw, C))
    oh, ow = (ih - k) // s + 1, (iw - k) // s + 1
    attrs = dict(ConvKernelDim=[k, k], IFMChannels=C, IFMDim=[ih, iw], OFMDim=[oh, ow], SIMD=SIMD,
                 Stride=[s, s], Dilation=[1, 1], inputDataType=dt, outputDataType=dt)
    _run(tmp_path, [HWNodeSpec("swg", "SlidingWindow", attrs)], x, golden.sliding_window(x, (k, k), (s, s)))


# ------------------------------------------------------------------ StreamingMaxPool
@pytest.mark.parametrize("ih,iw,C,PE,k,dt", [
    (4, 4, 2, 1, 2, "UINT4"),
    (7, 5, 6, 3, 2, "INT4"),         # remainders dropped, signed compare
    (6, 6, 4, 4, 3, "BIPOLAR"),
])
def test_maxpool(tmp_path, ih, iw, C, PE, k, dt):
    rng = np.random.default_rng(ih * 7 + C)
    x = _rand(rng, dt, (3, ih, iw, C))
    attrs = dict(ImgDim=[ih, iw], PoolDim=[k, k], NumChannels=C, PE=PE, dataType=dt)
    _run(tmp_path, [HWNodeSpec("pool", "StreamingMaxPool", attrs)], x, golden.maxpool(x, k))


# ------------------------------------------------------------------ FMPadding
@pytest.mark.parametrize("ih,iw,C,SIMD,pad,dt", [
    (3, 4, 2, 1, [1, 1, 1, 1], "UINT4"),
    (4, 3, 6, 3, [0, 2, 1, 0], "INT8"),
])
def test_fmpadding(tmp_path, ih, iw, C, SIMD, pad, dt):
    rng = np.random.default_rng(ih + iw + C)
    x = _rand(rng, dt, (3, ih, iw, C))
    attrs = dict(ImgDim=[ih, iw], Padding=pad, NumChannels=C, SIMD=SIMD, inputDataType=dt)
    _run(tmp_path, [HWNodeSpec("pad", "FMPadding", attrs)], x, golden.fmpadding(x, tuple(pad)))


# ------------------------------------------------------------------ LabelSelect
@pytest.mark.parametrize("L,PE,K,idt", [
    (10, 1, 1, "INT12"),
    (12, 4, 3, "UINT3"),             # many ties: lower index first
])
def test_labelselect(tmp_path, L, PE, K, idt):
    rng = np.random.default_rng(L + PE)
    x = _rand(rng, idt, (8, L))
    attrs = dict(Labels=L, PE=PE, K=K, inputDataType=idt, outputDataType="UINT4")
    _run(tmp_path, [HWNodeSpec("top", "LabelSelect", attrs)], x, golden.label_select(x, K))


# ------------------------------------------------------------------ DWC and FIFO
def test_dwc_and_fifo_chain(tmp_path):
    """All width ratios (split, gather, non-integer 24->12->8, 8->32, identity) and FIFOs of
    depth 1 and 5, chained in one design (one build) under random backpressure."""
    rng = np.random.default_rng(11)
    x = _rand(rng, "INT4", (5, 6, 4))          # 96 bits per frame: divisible by every width below
    shape = [1, 6, 4]

    def dwc(i, a, b):
        return HWNodeSpec(f"dwc{i}", "StreamingDataWidthConverter",
                          dict(shape=shape, inWidth=a, outWidth=b, dataType="INT4"))

    def fifo(i, depth, width):
        return HWNodeSpec(f"fifo{i}", "StreamingFIFO",
                          dict(depth=depth, folded_shape=[1, 96 // width, width // 4], dataType="INT4"))

    chain = [fifo(0, 1, 24), dwc(0, 24, 8), dwc(1, 8, 24), dwc(2, 24, 12), fifo(1, 5, 12), dwc(3, 12, 8),
             dwc(4, 8, 32), dwc(5, 32, 4), dwc(6, 4, 4), fifo(2, 2, 4)]
    _run(tmp_path, chain, x, x)
    _run(tmp_path / "b", chain, x, x, seed=9, p_bubble=0.0, p_stall=0.7)


def test_chain_names_sanitised(tmp_path):
    """A small chain with hostile node names: legal, unique identifiers; still bit-exact."""
    rng = np.random.default_rng(3)
    x = _rand(rng, "UINT4", (3, 4, 4, 2))
    pad = HWNodeSpec("1 pad/x", "FMPadding", dict(ImgDim=[4, 4], Padding=[1, 1, 1, 1], NumChannels=2, SIMD=2,
                                                   inputDataType="UINT4"))
    fifo = HWNodeSpec("1 pad/x", "StreamingFIFO", dict(depth=4, folded_shape=[1, 6, 6, 2], dataType="UINT4"))
    pool = HWNodeSpec("module", "StreamingMaxPool", dict(ImgDim=[6, 6], PoolDim=[2, 2], NumChannels=2, PE=2,
                                                          dataType="UINT4"))
    design, _ = _run(tmp_path, [pad, fifo, pool], x, golden.maxpool(golden.fmpadding(x, (1, 1, 1, 1)), 2))
    insts = [n.inst for n in design.nodes]
    assert len(set(i.lower() for i in insts)) == 3
    assert all(i[0].isalpha() or i[0] == "_" for i in insts) and "module" not in insts


# ------------------------------------------------------------------ deep pipelines under long stalls
@pytest.mark.parametrize("op", ["MVAU", "Thresholding", "StreamingMaxPool", "LabelSelect"])
def test_deep_pipelines_long_stalls(tmp_path, op):
    """The pipelined cores (adder/popcount trees of several levels, 2-stage read-modify-write,
    serialised lanes) stay bit-exact when the consumer holds ready low for long runs (p 0.9 per
    cycle: stalls of ~10 cycles, often far longer than any pipeline) and the producer bubbles."""
    from codesign.hw import opspecs

    rng = np.random.default_rng(7)
    if op == "MVAU":  # 8 x 4 leaves -> 5 tree levels, 15 thresholds -> 4 popcount levels, SF = 1 and NF = 4
        spec = opspecs.mvau_spec("m", MW=8, MH=8, PE=2, SIMD=8, idt="INT4", wdt="INT4", odt="UINT4", seed=3)
        x = _rand(rng, "INT4", (5, 8))
        exp = golden.mvau(x, spec.inits["W"], spec.inits["T"], 0)
    elif op == "Thresholding":
        spec = opspecs.thresholding_spec("t", C=4, PE=2, idt="INT8", odt="UINT4", seed=3)
        x = _rand(rng, "INT8", (5, 4))
        exp = golden.thresholding(x, spec.inits["T"], 0)
    elif op == "StreamingMaxPool":  # CF = 1: every word hits the address written just before
        spec = opspecs.maxpool_spec("p", ih=6, C=2, PE=2, k=3, dt="INT4")
        x = _rand(rng, "INT4", (4, 6, 6, 2))
        exp = golden.maxpool(x, 3)
    else:
        spec = opspecs.labelselect_spec("l", L=12, PE=3, K=4, idt="UINT2")
        x = _rand(rng, "UINT2", (6, 12))
        exp = golden.label_select(x, 4)
    _run(tmp_path, [spec], x, exp, seed=11, p_bubble=0.4, p_stall=0.9)


@pytest.mark.parametrize("ram_style,MW", [("block", 128), ("distributed", 128), ("block", 640)])
def test_mvau_deep_bram_rom_latency_is_the_pipeline_depth(tmp_path, ram_style, MW):
    """A 2048 x 16 weight ROM in block RAM is deeper than one BRAM at its width, so it is banked
    (each bank read into its own register, the bank select after them: timing); the same layer
    in logic is not. A 10240 x 16 ROM has 10 banks: its select is two registered levels (groups
    of 4 banks, the last one of 2). All are bit-exact under backpressure, and the first output
    comes exactly `pipeline_depth` cycles after the last input word, with one more stage for the
    registered ROM and two for the grouped select."""
    from codesign.dataflow.cost import RAM_STYLES
    from codesign.dataflow.ops.mvau import MVAU, wrom_extra_latency, wrom_out_reg

    rng = np.random.default_rng(11)
    MH, PE, SIMD = 64, 1, 4
    attrs = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType="UINT2", weightDataType="INT4",
                 outputDataType="UINT2", ActVal=0, noActivation=0, numInputVectors=[1], resType="lut",
                 ram_style=ram_style, mem_mode="const")
    x = rng.integers(0, 4, size=(3, MW))
    W = rng.integers(-8, 8, size=(MW, MH))
    acc = golden.mvau(x, W)
    T = _thresholds(rng, int(acc.min()), int(acc.max()), MH, 3)
    spec = HWNodeSpec("deep", "MVAU", attrs, {"W": W, "T": T})
    registered = ram_style == "block"
    assert bool(wrom_out_reg(MW, MH, PE, SIMD, 4, RAM_STYLES[ram_style])) is registered
    design, _ = _run(tmp_path / "bp", [spec], x, golden.mvau(x, W, T, 0))
    text = (design.out_dir / design.nodes[0].files[0]).read_text() if design.nodes[0].files else ""
    assert ("wrom0_b1_q2" in text) is registered  # banked: 2048 words = 2 banks of 1024 x 16
    grouped = MW == 640
    assert int(wrom_extra_latency(MW, MH, PE, SIMD, 4, RAM_STYLES[ram_style])) == (2 if grouped else int(registered))
    assert ("wrom0_g2_q3" in text and "wrom0_b9_q2" in text) is grouped
    free = run_frames(design, x, seed=0)
    sim = free.sim
    words = len(sim.in_cycles) // x.shape[0]
    latency = int(sim.out_cycles[0] - sim.in_cycles[words - 1])
    p = MVAU.params_from_attrs(attrs, {"W": W, "T": T})
    assert latency == int(MVAU.pipeline_depth(p)), (latency, MVAU.pipeline_depth(p))


# ------------------------------------------------------------------ padded / overlapping max pool
def _maxpool_ref(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], pad: tuple[int, int, int, int]) -> np.ndarray:
    """Max pool with -inf padding, computed window by window (independent of the ops' goldens)."""
    n, h, w, c = x.shape
    t, l, b, r = pad
    xp = np.full((n, h + t + b, w + l + r, c), -np.inf)
    xp[:, t: t + h, l: l + w] = x
    oh, ow = (h + t + b - k[0]) // s[0] + 1, (w + l + r - k[1]) // s[1] + 1
    out = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[:, i * s[0]: i * s[0] + k[0], j * s[1]: j * s[1] + k[1]].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("ih,iw,C,PE,k,s,pad,dt", [
    (7, 6, 4, 2, (3, 3), (2, 2), (1, 0, 2, 1), "INT4"),    # asymmetric padding with the minimum -8
    (5, 5, 3, 3, (3, 2), (1, 2), (1, 1, 1, 1), "BIPOLAR"),  # one word per pixel, non-square kernel
])
def test_padded_maxpool_chain(tmp_path, ih, iw, C, PE, k, s, pad, dt):
    """FMPadding (PadValue min) -> SlidingWindow -> WindowMax: the lowering of a padded max pool,
    bit-exact under random backpressure against a window-by-window max pool with -inf padding;
    without backpressure the steady state lies within the two nodes' cycle models."""
    from codesign.dataflow.ops.sliding_window import SlidingWindow
    from codesign.dataflow.ops.windowmax import WindowMax

    rng = np.random.default_rng(ih * iw + C)
    x = _rand(rng, dt, (4, ih, iw, C))
    hp, wp = ih + pad[0] + pad[2], iw + pad[1] + pad[3]
    oh, ow = (hp - k[0]) // s[0] + 1, (wp - k[1]) // s[1] + 1
    specs = [HWNodeSpec("pad", "FMPadding", dict(ImgDim=[ih, iw], Padding=list(pad), NumChannels=C, SIMD=PE,
                                                 inputDataType=dt, PadValue="min")),
             HWNodeSpec("swg", "SlidingWindow", dict(ConvKernelDim=list(k), IFMChannels=C, IFMDim=[hp, wp],
                                                     OFMDim=[oh, ow], SIMD=PE, Stride=list(s), Dilation=[1, 1],
                                                     inputDataType=dt, outputDataType=dt)),
             HWNodeSpec("wmax", "WindowMax", dict(Channels=C, Kernel=list(k), PE=PE, inputDataType=dt,
                                                  numInputVectors=[1, oh, ow]))]
    exp = _maxpool_ref(x, k, s, pad)
    design, _ = _run(tmp_path, specs, x, exp)
    free = run_frames(design, x, seed=2, p_bubble=0.0, p_stall=0.0)
    assert first_mismatch(exp.reshape(x.shape[0], -1), free.outputs) is None
    # the window max takes one window word a clock, never stalling: the steady state lies between
    # its cycle model and the sliding window's (whose figure adds the line-buffer warm-up that
    # overlaps the previous frame); the first case is bound by the window words alone
    stable = free.performance(100.0)["stable_cycles_per_frame"]
    assert WindowMax.rtl_cycles(specs[2]) <= stable <= SlidingWindow.rtl_cycles(specs[1])
    if dt == "INT4":
        assert stable == WindowMax.rtl_cycles(specs[2])
