"""SlidingWindow (FINN: ConvolutionInputGenerator): im2col of an NHWC stream, in one place."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.dataflow.cost import RAM_BLOCK, RAM_DISTRIBUTED, _i, _memory, ram_code, res_out
from codesign.dataflow.ops.base import _clog2, HWCustomOp, as_pair, param_dt, ram_auto_in_bram
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def sliding_window(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Im2col in NHWC: (N, H, W, C) -> (N, OH, OW, kh*kw*C), order (kh, kw, c), c innermost."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                        j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
    return out.reshape(n, oh, ow, kh * kw * c)


def sliding_window_cycles(C: Any, SIMD: Any, IH: Any, IW: Any, OH: Any, OW: Any, kh: Any, kw: Any,
                          sh: Any, sw: Any, dh: Any = 1, dw: Any = 1) -> np.ndarray:
    """buf + OH*max(OW*kw*kh*CF, sw*IW*CF), buf = ((kh-1)*dh*IW + (kw-1)*dw + 1)*CF, CF = C/SIMD
    (finn-reference §3; IH enters only through OH)."""
    CF = _i(C) // _i(SIMD)
    buf = ((_i(kh) - 1) * _i(dh) * _i(IW) + (_i(kw) - 1) * _i(dw) + 1) * CF
    return buf + _i(OH) * np.maximum(_i(OW) * _i(kw) * _i(kh) * CF, _i(sw) * _i(IW) * CF)


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``sliding_window_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single SlidingWindow nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [135.9893, 0.0, 1.3564, 31.8462],
    "FF": [93.0, 1.0, 1.0, 1.0],  # fitted 85.0; + 6 "counter at its last value" flags + two read-valid bits (measured)
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def _swg_buffer(C: Any, SIMD: Any, IW: Any, kh: Any, sh: Any, abits: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codesign_swg.v's line buffer: BR = 2^clog2(KH+SH) row slots of 2^RWB words (RWB =
    clog2(IW*C/SIMD)) of SIMD*bits; returns (depth, width, RWB)."""
    rwb = np.maximum(_clog2(_i(IW) * (_i(C) // _i(SIMD))), 1)
    br = np.left_shift(1, _clog2(_i(kh) + _i(sh)))
    return br * np.left_shift(1, rwb), _i(SIMD) * _i(abits), rwb


def sliding_window_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_swg.v (columns of RESOURCE_COEFFS).

    LUT: [1, output-word bits (read mux / register), line-buffer LUTRAM (64 words per LUT per
    bit, none when in block RAM)]; FF: [1, output-word bits, address bits] (the window counters
    are fixed 16-bit registers: in the constant). Address bits are left out of the LUT columns on
    purpose: fitted, they made a wider SIMD look cheaper (fewer words), which no synthesis showed
    beyond noise and which would pull the folding off its consumer's SIMD.
    Last column of both (a removal, <= 0): with one output column the window-column counter ox,
    its flag and the column bookkeeping (pix_base, need_wi) are constants that Yosys removes;
    with one output row the row counter oy and its flag (CNV's last window: 3x3 -> 1x1 drops
    45 of 109 FF and 74 of 152 LUT); with one kernel row (a 1x1 stride-2 shortcut) the kernel-row
    counter ky, its flag and the row-slot adder (Yosys 0.23: 77 FF / 109 LUT at C 2, IW 14, UINT4
    and 101 / 95 at C 16, SIMD 4, IW 28 where the model without it said 110 / 146 and 132 / 135)."""
    depth, width, rwb = _swg_buffer(p["C"], p["SIMD"], p["IW"], p["kh"], p["sh"], p["abits"])
    mem = _swg_memory(depth, width)
    one = np.ones_like(width)
    ow1 = (_i(p.get("OW", 2)) == 1).astype(np.int64)
    oh1 = (_i(p.get("OH", 2)) == 1).astype(np.int64)
    kh1 = (_i(p.get("kh", 3)) == 1).astype(np.int64)
    # the line buffer's read register is the RAM's own output latch in block RAM (Yosys: 512-bit
    # word, 15 RAMB18, 101 FF), SIMD*bits flip-flops in LUTRAM; the RAM-side register and the
    # output register always are
    return {"LUT": [one, width, mem["LUTRAM"], -(ow1 + oh1 + kh1)],
            "FF": [one, np.where(mem["in_bram"], 2, 3) * width, rwb, -(ow1 * (20 + 2 * rwb) + oh1 * 17 + kh1 * 32)]}


def _swg_memory(depth: Any, width: Any) -> dict[str, np.ndarray]:
    """The template sets no ram_style: Yosys' own choice by its cost (``ram_auto_in_bram``: a
    128 x 512-bit buffer goes to 15 RAMB18, not to 2,736 LUTRAM cost units), as for a weight layer's
    input buffer; "in_bram" marks it (the block RAM's output latch then holds the read word)."""
    in_bram = ram_auto_in_bram(depth, width)
    mem = _memory(depth, width, np.where(in_bram, RAM_BLOCK, RAM_DISTRIBUTED))
    mem["in_bram"] = in_bram
    return mem


def sliding_window_cost(C: Any, SIMD: Any, IH: Any, IW: Any, OH: Any, OW: Any, kh: Any, kw: Any,
                        sh: Any, sw: Any, dh: Any, dw: Any, abits: Any, ram_style: Any = 0) -> dict[str, np.ndarray]:
    """Cycles and resources of codesign_swg.v: ``sliding_window_resource_features`` times the
    fitted RESOURCE_COEFFS; BRAM18 of the line buffer by the aspect table (the template leaves
    the RAM style to Yosys, so ``ram_style`` does not change the count)."""
    p = dict(C=C, SIMD=SIMD, IW=IW, OH=OH, OW=OW, kh=kh, sh=sh, abits=abits)
    f = sliding_window_resource_features(p)
    depth, width, _ = _swg_buffer(C, SIMD, IW, kh, sh, abits)
    mem = _swg_memory(depth, width)
    ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
    out = res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])
    out["cycles"] = sliding_window_cycles(C, SIMD, IH, IW, OH, OW, kh, kw, sh, sw, dh, dw)
    return out


class SlidingWindow(HWCustomOp):
    """Im2col in NHWC (FINN's ConvolutionInputGenerator): (1,IH,IW,C) -> (1,OH,OW,kh*kw*C)."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "ConvKernelDim": ("ints", True, []),
            "IFMChannels": ("i", True, 0),
            "IFMDim": ("ints", True, []),
            "OFMDim": ("ints", True, []),
            "SIMD": ("i", False, 1),
            "Stride": ("ints", True, []),
            "Dilation": ("ints", False, [1, 1]),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "depthwise": ("i", False, 0, {0, 1}),
            "ram_style": ("s", False, "distributed"),
        }

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        ih, iw = self.get_nodeattr("IFMDim")
        return (1, ih, iw, self.get_nodeattr("IFMChannels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        oh, ow = self.get_nodeattr("OFMDim")
        kh, kw = self.get_nodeattr("ConvKernelDim")
        return (1, oh, ow, kh * kw * self.get_nodeattr("IFMChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        n, h, w, c = self.get_normal_input_shape()
        return (n, h, w, c // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        n, h, w, k = self.get_normal_output_shape()
        return (n, h, w, k // simd, simd)

    def verify_folding(self) -> list[str]:
        c, simd = self.get_nodeattr("IFMChannels"), self.get_nodeattr("SIMD")
        msgs = [] if c % simd == 0 else [f"IFMChannels={c} is not divisible by SIMD={simd}"]
        ih, iw = self.get_nodeattr("IFMDim")
        kh, kw = self.get_nodeattr("ConvKernelDim")
        sh, sw = self.get_nodeattr("Stride")
        dh, dw = self.get_nodeattr("Dilation")
        exp = [(ih - dh * (kh - 1) - 1) // sh + 1, (iw - dw * (kw - 1) - 1) // sw + 1]
        if list(self.get_nodeattr("OFMDim")) != exp:
            msgs.append(f"OFMDim={self.get_nodeattr('OFMDim')} but the geometry gives {exp}")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return sliding_window(x, tuple(self.get_nodeattr("ConvKernelDim")), tuple(self.get_nodeattr("Stride")),
                              tuple(self.get_nodeattr("Dilation")))

    # -- the op's models -----------------------------------------------------------------------
    finn_op_type = "ConvolutionInputGenerator"
    finn_folding_attrs = ("SIMD", "parallel_window", "ram_style")
    fold_dims = {"SIMD": ("IFMChannels", "C")}
    in_fold_attr, out_fold_attr = "SIMD", "SIMD"
    follows_consumer = True
    layer_role = "next"
    template = "codesign_swg.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        idt = param_dt(a, "inputDataType", tensor_dt, "input", str(a.get("name", "SlidingWindow node")))
        kh, kw = as_pair(a["ConvKernelDim"])
        ih, iw = as_pair(a["IFMDim"])
        oh, ow = as_pair(a["OFMDim"])
        sh, sw = as_pair(a.get("Stride", [1, 1]))
        dh, dw = as_pair(a.get("Dilation", [1, 1]))
        return dict(C=int(a["IFMChannels"]), SIMD=int(a.get("SIMD", 1)), IH=ih, IW=iw, OH=oh, OW=ow,
                    kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, abits=idt.bitwidth(),
                    ram_style=str(a.get("ram_style", "auto")))

    @classmethod
    def cycles(cls, p):
        return sliding_window_cycles(p["C"], p["SIMD"], p["IH"], p["IW"], p["OH"], p["OW"], p["kh"], p["kw"],
                                     p["sh"], p["sw"], p["dh"], p["dw"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return sliding_window_cost(p["C"], p["SIMD"], p["IH"], p["IW"], p["OH"], p["OW"], p["kh"], p["kw"],
                                   p["sh"], p["sw"], p["dh"], p["dw"], p["abits"], ram_code(p["ram_style"]))

    resource_features = staticmethod(sliding_window_resource_features)

    @classmethod
    def input_buffer_words(cls, p):
        """The RTL's writer runs ahead of the windows being read: its line buffer has
        BR = pow2 >= kh + sh rows, kh of which the windows use."""
        kh, sh = int(p["kh"]), int(p["sh"])
        br = 1 << max(0, (kh + sh - 1).bit_length())
        return (br - kh) * int(p["IW"]) * (int(p["C"]) // int(p["SIMD"]))

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_swg.v: a window's first word is in the output register 4 cycles after the
        input word that completes it (buffer read register, RAM-side register, output register)."""
        return np.asarray(4, dtype=np.int64)

    @classmethod
    def io_pattern(cls, p):
        """Line-buffer warm-up (buf words in, nothing out), then per output row a phase of
        max(OW*kh*kw*CF, sw*IW*CF) clocks that emits the row's windows while taking the next
        sw image rows; input words left after the last phase are taken at its end."""
        cf = int(p["C"]) // int(p["SIMD"])
        kh, kw, iw, ih = int(p["kh"]), int(p["kw"]), int(p["IW"]), int(p["IH"])
        oh, ow, sw_, dh, dw = int(p["OH"]), int(p["OW"]), int(p["sw"]), int(p["dh"]), int(p["dw"])
        buf = ((kh - 1) * dh * iw + (kw - 1) * dw + 1) * cf
        n_out, n_row_in = ow * kh * kw * cf, sw_ * iw * cf
        phase = max(n_out, n_row_in)
        starts = buf + np.arange(oh) * phase
        prod_ = (starts[:, None] + np.arange(n_out)[None, :]).ravel()
        cons = np.concatenate([np.arange(buf), (starts[:, None] + np.arange(n_row_in)[None, :]).ravel()])
        n_in = ih * iw * cf
        n = int(cls.cycles(p))
        cons = cons[:n_in]
        if len(cons) < n_in:  # rows the windows never reach are still read, at the end
            cons = np.concatenate([cons, np.arange(n, n + n_in - len(cons))])
            n = int(cons[-1]) + 1
        return n, cons, prod_

    #: short name of the single-node example builder (``codesign.hw.opspecs.swg_spec``)
    example_name = "swg"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_swg(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_swg(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    kh, kw = [int(v) for v in _attr(a, "ConvKernelDim")]
    C, SIMD = int(_attr(a, "IFMChannels")), int(_attr(a, "SIMD", 1))
    ih, iw = [int(v) for v in _attr(a, "IFMDim")]
    sh, sw = [int(v) for v in _attr(a, "Stride", [1, 1])]
    dil = [int(v) for v in _attr(a, "Dilation", [1, 1])]
    if dil != [1, 1]:
        raise UnsupportedError(f"{spec.name}: SlidingWindow RTL supports Dilation [1, 1] only, got {dil}")
    if C % SIMD:
        raise FoldingError(f"{spec.name}: IFMChannels={C} % SIMD={SIMD} must be 0")
    oh, ow = (ih - kh) // sh + 1, (iw - kw) // sw + 1
    ofm = [int(v) for v in _attr(a, "OFMDim", [oh, ow])]
    if ofm != [oh, ow]:
        raise UnsupportedError(f"{spec.name}: OFMDim {ofm} != computed {[oh, ow]}")
    dt = dtype(_attr(a, "inputDataType"))
    CF = C // SIMD
    params = _p({"IH": ih, "IW": iw, "C": C, "SIMD": SIMD, "KH": kh, "KW": kw, "SH": sh, "SW": sw, "BITS": dt.bits})
    cyc = SlidingWindow.rtl_cycles(spec)
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_swg", params,
                   _stream(dt, SIMD, ih * iw * CF), _stream(dt, SIMD, oh * ow * kh * kw * CF), [], cyc)


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "swg", ih: int = 8, C: int = 4, SIMD: int = 1, k: int = 3, s: int = 1,
             dt: str = "UINT4") -> HWNodeSpec:
    oh = (ih - k) // s + 1
    return HWNodeSpec(name, "SlidingWindow", dict(ConvKernelDim=[k, k], IFMChannels=C, IFMDim=[ih, ih],
                                                  OFMDim=[oh, oh], SIMD=SIMD, Stride=[s, s], Dilation=[1, 1],
                                                  inputDataType=dt, outputDataType=dt))

