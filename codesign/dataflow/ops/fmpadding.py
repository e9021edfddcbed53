"""FMPadding (zero padding of an NHWC feature map): everything about the op in one place."""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import HWCustomOp, as_pair, param_dt
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def fmpadding(x: np.ndarray, pad: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Constant padding in NHWC (zeros unless ``value``); pad = [top, left, bottom, right]."""
    top, left, bottom, right = pad
    return np.pad(np.asarray(x), ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


#: ``PadValue`` modes: "zero" (a padded conv) or "min", the smallest value of the input datatype
#: (-inf on a float tensor): the identity of max, so a padded max pool never picks a border pixel
PAD_VALUES = ("zero", "min")


def pad_value(mode: str, dt: DataType) -> float:
    """The value a ``PadValue`` mode pads ``dt`` with (bipolar "min" is -1, the code 0)."""
    if mode == "zero":
        return 0.0
    return float(dt.min()) if dt.is_integer() else -np.inf


def fmpadding_cost(H: Any, W: Any, pad_t: Any, pad_l: Any, pad_b: Any, pad_r: Any, C: Any,
                   SIMD: Any, bits: Any) -> dict[str, np.ndarray]:
    """Formula-level entry point: cycles and resources of the padding op."""
    p = dict(H=H, W=W, pad_t=pad_t, pad_l=pad_l, pad_b=pad_b, pad_r=pad_r, C=C, SIMD=SIMD, bits=bits)
    return FMPadding.cost(p)


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``fmpadding_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single FMPadding nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [70.4192, 1.0205],
    "FF": [49.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def fmpadding_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_fmpadding.v (columns of RESOURCE_COEFFS): the
    output register of SIMD*bits behind a pad-or-pass AND; the three 16-bit position counters
    and their compares are the constant. LUT: [1, SIMD*bits]; FF: [1, SIMD*bits]."""
    width = _i(p["SIMD"]) * _i(p["bits"])
    one = np.ones_like(width)
    return {"LUT": [one, width], "FF": [one, width]}


class FMPadding(HWCustomOp):
    """Constant padding of an NHWC feature map; Padding = [top, left, bottom, right]; zeros
    (a conv) or, with ``PadValue`` "min", the datatype's smallest value (a max pool)."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "ImgDim": ("ints", True, []),
            "Padding": ("ints", True, []),
            "NumChannels": ("i", True, 0),
            "SIMD": ("i", False, 1),
            "inputDataType": ("s", True, ""),
            "PadValue": ("s", False, "zero", set(PAD_VALUES)),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return self.get_input_datatype()

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        return (1, h, w, self.get_nodeattr("NumChannels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        top, left, bottom, right = self.get_nodeattr("Padding")
        return (1, h + top + bottom, w + left + right, self.get_nodeattr("NumChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_input_shape()
        simd = self.get_nodeattr("SIMD")
        return (n, h, w, c // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_output_shape()
        simd = self.get_nodeattr("SIMD")
        return (n, h, w, c // simd, simd)

    def verify_folding(self) -> list[str]:
        c, simd = self.get_nodeattr("NumChannels"), self.get_nodeattr("SIMD")
        return [] if c % simd == 0 else [f"NumChannels={c} is not divisible by SIMD={simd}"]

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return fmpadding(x, tuple(self.get_nodeattr("Padding")),
                         pad_value(self.get_nodeattr("PadValue"), self.get_input_datatype()))

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("SIMD",)
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("FMPadding_Batch",)
    fold_dims = {"SIMD": ("NumChannels", "C")}
    in_fold_attr, out_fold_attr = "SIMD", "SIMD"
    follows_consumer = True
    layer_role = "next"
    template = "codesign_fmpadding.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "inputDataType", tensor_dt, "input", str(a.get("name", "FMPadding node")))
        h, w = as_pair(a["ImgDim"])
        t, l, b, r = (list(a["Padding"]) + [0, 0, 0, 0])[:4]
        return dict(H=h, W=w, pad_t=int(t), pad_l=int(l), pad_b=int(b), pad_r=int(r),
                    C=int(a["NumChannels"]), SIMD=int(a.get("SIMD", 1)), bits=dt.bitwidth())

    @classmethod
    def cycles(cls, p):
        """(C/SIMD) * OH * OW: one output word per clock."""
        oh = _i(p["H"]) + _i(p["pad_t"]) + _i(p["pad_b"])
        ow = _i(p["W"]) + _i(p["pad_l"]) + _i(p["pad_r"])
        return (_i(p["C"]) // _i(p["SIMD"])) * oh * ow

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``fmpadding_resource_features`` times the fitted RESOURCE_COEFFS (no memories)."""
        f = fmpadding_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(fmpadding_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """One output word per clock; an input word is taken with every output inside the image."""
        h, w, cf = int(p["H"]), int(p["W"]), int(p["C"]) // int(p["SIMD"])
        oh, ow = h + int(p["pad_t"]) + int(p["pad_b"]), w + int(p["pad_l"]) + int(p["pad_r"])
        r, c = np.divmod(np.arange(oh * ow), ow)
        inside = (r >= int(p["pad_t"])) & (r < int(p["pad_t"]) + h) & (c >= int(p["pad_l"])) & (c < int(p["pad_l"]) + w)
        pix = np.nonzero(inside)[0]
        n = oh * ow * cf
        return n, (pix[:, None] * cf + np.arange(cf)[None, :]).ravel(), np.arange(n)

    #: short name of the single-node example builder (``codesign.hw.opspecs.fmpadding_spec``)
    example_name = "fmpadding"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_fmpadding(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_fmpadding(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    ih, iw = [int(v) for v in _attr(a, "ImgDim")]
    pt, pl, pb, pr = [int(v) for v in _attr(a, "Padding")]
    C, SIMD = int(_attr(a, "NumChannels")), int(_attr(a, "SIMD", 1))
    if C % SIMD:
        raise FoldingError(f"{spec.name}: NumChannels={C} % SIMD={SIMD} must be 0")
    dt = dtype(_attr(a, "inputDataType"))
    mode = _attr(a, "PadValue", "zero")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in PAD_VALUES:
        raise UnsupportedError(f"{spec.name}: PadValue {mode!r} is not one of {', '.join(PAD_VALUES)}")
    if dt.bipolar and mode == "zero":
        raise UnsupportedError(f"{spec.name}: zero padding of a bipolar map (0 is not a bipolar value)")
    # the pad element's code: 0, or the datatype's minimum (two's complement 100..0 when signed,
    # bit 0 = -1 when bipolar, 0 when unsigned)
    padv = (1 << (dt.bits - 1)) if (mode == "min" and dt.signed and not dt.bipolar) else 0
    CF = C // SIMD
    oh, ow = ih + pt + pb, iw + pl + pr
    params = _p({"IH": ih, "IW": iw, "C": C, "SIMD": SIMD, "PT": pt, "PL": pl, "PB": pb, "PR": pr, "BITS": dt.bits,
                 "PADV": padv})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_fmpadding", params,
                   _stream(dt, SIMD, ih * iw * CF), _stream(dt, SIMD, oh * ow * CF), [], FMPadding.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "pad", ih: int = 8, C: int = 4, SIMD: int = 1, pad: int = 1,
                   dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "FMPadding", dict(ImgDim=[ih, ih], Padding=[pad] * 4, NumChannels=C, SIMD=SIMD,
                                              inputDataType=dt))

