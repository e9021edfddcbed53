"""Single-node HW designs with seeded random weights/thresholds, one builder per op type.

Why: timing and resource measurements (tests, benchmarks, the cost-model corpus) need an
MVAU / Thresholding / ... node at a chosen folding and bit width without training or
exporting a network; weights and thresholds change timing and LUT counts little, so seeded
random integers in the declared datatype stand in for trained ones. The attributes are the
FINN-named ones `codesign.hw.rtl` reads (see docs/contracts.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.hw.rtl import HWNodeSpec


def _rand(rng: np.random.Generator, dt: str, shape: tuple[int, ...]) -> np.ndarray:
    if dt == "BIPOLAR":
        return rng.choice([-1, 1], size=shape)
    bits = int(dt.lstrip("UINT"))
    if dt.startswith("U"):
        return rng.integers(0, 1 << bits, size=shape)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)


def _bits(dt: str) -> int:
    return 1 if dt in ("BIPOLAR", "BINARY") else int(dt.lstrip("UINT"))


def mvau_spec(name: str = "mvau", MW: int = 16, MH: int = 8, PE: int = 1, SIMD: int = 1, idt: str = "UINT4",
              wdt: str = "INT4", odt: str = "UINT4", nthr: int | None = None, res_type: str = "lut",
              ram_style: str = "auto", seed: int = 0) -> HWNodeSpec:
    """An MVAU with random weights; `nthr` thresholds per row (default 2**bits(odt) - 1; 0: no activation)."""
    rng = np.random.default_rng(seed)
    W = _rand(rng, wdt, (MW, MH))
    xnor = idt == wdt == "BIPOLAR"
    if nthr is None:
        nthr = 1 if odt == "BIPOLAR" else (1 << _bits(odt)) - 1
    attrs: dict[str, Any] = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt,
                                 outputDataType=odt, ActVal=0, noActivation=int(nthr == 0), binaryXnorMode=int(xnor),
                                 numInputVectors=[1], resType=res_type, ram_style=ram_style, mem_mode="const")
    inits: dict[str, np.ndarray] = {"W": W}
    if nthr:
        if xnor:
            lo, hi = -MW, MW
        else:
            xl = -1 if idt == "BIPOLAR" else (-(1 << (_bits(idt) - 1)) if idt.startswith("INT") else 0)
            xh = 1 if idt == "BIPOLAR" else ((1 << (_bits(idt) - 1)) - 1 if idt.startswith("INT") else (1 << _bits(idt)) - 1)
            acc_hi = (np.maximum(W, 0) * xh + np.minimum(W, 0) * xl).sum(0)
            acc_lo = (np.maximum(W, 0) * xl + np.minimum(W, 0) * xh).sum(0)
            lo, hi = int(acc_lo.min()), int(acc_hi.max())
        span = max(hi - lo, 1)
        # thresholds spread over the middle of the accumulator range, sorted per row
        T = np.sort(rng.integers(lo + span // 4, hi - span // 4 + 1, size=(MH, nthr)), axis=1)
        inits["T"] = T.astype(np.float64)
    return HWNodeSpec(name, "MVAU", attrs, inits)


def thresholding_spec(name: str = "thr", C: int = 8, PE: int = 1, idt: str = "INT8", odt: str = "UINT4",
                      nthr: int | None = None, ram_style: str = "auto", seed: int = 0) -> HWNodeSpec:
    rng = np.random.default_rng(seed)
    if nthr is None:
        nthr = (1 << _bits(odt)) - 1
    b = _bits(idt)
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if idt.startswith("INT") else (0, (1 << b) - 1)
    T = np.sort(rng.integers(lo, hi + 1, size=(C, nthr)), axis=1).astype(np.float64)
    attrs = dict(NumChannels=C, PE=PE, numSteps=nthr, inputDataType=idt, outputDataType=odt, ActVal=0,
                 numInputVectors=[1], ram_style=ram_style, mem_mode="const")
    return HWNodeSpec(name, "Thresholding", attrs, {"T": T})


def swg_spec(name: str = "swg", ih: int = 8, C: int = 4, SIMD: int = 1, k: int = 3, s: int = 1,
             dt: str = "UINT4") -> HWNodeSpec:
    oh = (ih - k) // s + 1
    return HWNodeSpec(name, "SlidingWindow", dict(ConvKernelDim=[k, k], IFMChannels=C, IFMDim=[ih, ih],
                                                  OFMDim=[oh, oh], SIMD=SIMD, Stride=[s, s], Dilation=[1, 1],
                                                  inputDataType=dt, outputDataType=dt))


def maxpool_spec(name: str = "pool", ih: int = 8, C: int = 4, PE: int = 1, k: int = 2, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingMaxPool", dict(ImgDim=[ih, ih], PoolDim=[k, k], NumChannels=C, PE=PE,
                                                     dataType=dt))


def fmpadding_spec(name: str = "pad", ih: int = 8, C: int = 4, SIMD: int = 1, pad: int = 1,
                   dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "FMPadding", dict(ImgDim=[ih, ih], Padding=[pad] * 4, NumChannels=C, SIMD=SIMD,
                                              inputDataType=dt))


def labelselect_spec(name: str = "top", L: int = 10, PE: int = 1, K: int = 1, idt: str = "INT8") -> HWNodeSpec:
    return HWNodeSpec(name, "LabelSelect", dict(Labels=L, PE=PE, K=K, inputDataType=idt, outputDataType="UINT8"))


def dwc_spec(name: str = "dwc", inw: int = 8, outw: int = 32, elems: int = 64, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingDataWidthConverter", dict(inWidth=inw, outWidth=outw, shape=[1, elems],
                                                                dataType=dt))


def fifo_spec(name: str = "fifo", depth: int = 32, fold: int = 4, words: int = 64, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingFIFO", dict(depth=depth, folded_shape=[1, words, fold], dataType=dt))


BUILDERS = {
    "MVAU": mvau_spec, "Thresholding": thresholding_spec, "SlidingWindow": swg_spec,
    "StreamingMaxPool": maxpool_spec, "FMPadding": fmpadding_spec, "LabelSelect": labelselect_spec,
    "StreamingDataWidthConverter": dwc_spec, "StreamingFIFO": fifo_spec,
}

__all__ = ["BUILDERS", "dwc_spec", "fifo_spec", "fmpadding_spec", "labelselect_spec", "maxpool_spec", "mvau_spec",
           "swg_spec", "thresholding_spec"]
