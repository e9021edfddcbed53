"""StreamingConcat (the channel concatenation of two branches): everything about the op in one place.

Why the concat is exact on integers: the lowering only creates it once both branches arrive at
one common scale (``transforms/branch.py``: both requantised by one shared quantizer, as for the
residual Add), so ``concat(s*a, s*b) = s*concat(a, b)`` and the hardware moves the integer codes;
the common scale moves on into the next thresholds. The output datatype is the smallest one
holding both inputs' ranges (equal to both in the usual case of one shared quantizer), so a
narrower input is only sign- or zero-extended, never changed.

Stream order (NHWC, channels innermost): per pixel the C0/SIMD words of input 0, then the
C1/SIMD words of input 1, one word per clock; the input not being read waits (its FIFO holds
what the other branch's latency requires: FIFO sizing simulates the two inputs' own
consumption patterns, ``io_pattern``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import HWCustomOp, _clog2, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def concat_channels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Golden execution: the two tensors side by side on the last (channel) axis."""
    return np.concatenate([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)], axis=-1)


# ---- resource coefficients (structural, checked against Yosys; begin) ----
#: LUT and FF = coefficients . ``concat_resource_features``. Structure of codesign_concat.v: the
#: output register (SIMD * OBITS FFs, each behind a 2:1 input mux: one LUT per output bit), the
#: phase counter (CB = clog2(max(F0, F1)) bits, F_k = C_k / SIMD words per pixel of input k:
#: one FF and one decrement/reload LUT per bit) and three flag registers (output valid, input
#: select, last word of the phase) with their handshake logic. Measured with Debian Yosys 0.23
#: ``synth_xilinx -family xc7`` (``codesign.hw.synth.synth_design``, the concat's own per-node
#: counts), (C0, C1, SIMD, in0/in1 datatypes) -> LUT / FF: (8, 8, 1, INT4) 13 / 10,
#: (8, 8, 4, INT6) 31 / 28, (16, 16, 8, INT3) 31 / 28, (32, 32, 16, INT8) 135 / 132,
#: (64, 64, 1, INT4) 16 / 13, (8, 4, 2, INT4/UINT4) 18 / 15, (6, 2, 2, UINT4/UINT2) 16 / 13,
#: (12, 4, 4, INT4/UINT2) 24 / 21, (64, 32, 1, UINT4) 16 / 13: LUT = 6 + SIMD*OBITS + CB and
#: FF = 3 + SIMD*OBITS + CB on all nine (``tests/test_concat.py::test_cost_model_against_yosys``
#: re-measures three in one run); not yet in the bench_costmodel corpus
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [6.0, 1.0, 1.0],
    "FF": [3.0, 1.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def counter_bits(f0: Any, f1: Any) -> np.ndarray:
    """Bits of the phase counter: it holds 0 .. max(F0, F1) - 1 (at least one bit)."""
    return np.maximum(_clog2(np.maximum(_i(f0), _i(f1))), 1)


def concat_resource_features(p: Any) -> dict[str, list[Any]]:
    """LUT: [1, output bits, counter bits]; FF: [1, output register bits, counter bits]."""
    simd = _i(p["SIMD"])
    w = simd * _i(p["obits"])
    cb = counter_bits(_i(p["C0"]) // simd, _i(p["C1"]) // simd)
    one = np.ones_like(w)
    return {"LUT": [one, w, cb], "FF": [one, w, cb]}


def union_datatype(a: DataType, b: DataType) -> DataType:
    """The smallest integer datatype holding every value of a and of b (the concat's output)."""
    from codesign.dataflow.transforms.util import smallest_int_dtype

    if a == b:
        return a
    return smallest_int_dtype(min(a.min(), b.min()), max(a.max(), b.max()))


class StreamingConcat(HWCustomOp):
    """Two streams in, their channel concatenation out (FINN: StreamingConcat)."""

    n_stream_inputs = 2

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "SIMD": ("i", False, 1),
            "ChannelsPerStream": ("ints", True, []),
            "inputDataTypes": ("strings", True, [""]),
            "outputDataType": ("s", True, ""),
            "numInputVectors": ("ints", False, [1]),
        }

    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("inputDataTypes")[ind]]

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def _channels(self) -> list[int]:
        return [int(c) for c in self.get_nodeattr("ChannelsPerStream")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self._channels()[ind],)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (sum(self._channels()),)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = int(self.get_nodeattr("SIMD"))
        return tuple(self._nv()) + (self._channels()[ind] // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = int(self.get_nodeattr("SIMD"))
        return tuple(self._nv()) + (sum(self._channels()) // simd, simd)

    def verify_folding(self) -> list[str]:
        cs, simd = self._channels(), int(self.get_nodeattr("SIMD"))
        if len(cs) != 2:
            return [f"ChannelsPerStream={cs} must list the channels of both inputs"]
        return [f"SIMD={simd} does not divide ChannelsPerStream={cs}"] if any(c % simd for c in cs) else []

    def _execute(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return concat_channels(a, b)

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("SIMD",)
    #: SIMD must divide both inputs' channels: their gcd ("G") is the dimension it folds
    fold_dims = {"SIMD": ("ChannelsPerStream", "G")}
    in_fold_attr, out_fold_attr = "SIMD", "SIMD"
    template = "codesign_concat.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        what = str(a.get("name", "StreamingConcat node"))
        names, cs = list(a["inputDataTypes"]), [int(c) for c in a["ChannelsPerStream"]]
        if len(names) != 2 or len(cs) != 2:
            raise UnsupportedError(f"{what}: inputDataTypes and ChannelsPerStream must describe both inputs")
        i0, i1 = (DataType[n] for n in names)
        odt = param_dt(a, "outputDataType", tensor_dt, "output", what)
        return dict(C0=cs[0], C1=cs[1], G=math.gcd(cs[0], cs[1]), SIMD=int(a.get("SIMD", 1)),
                    ibits0=i0.bitwidth(), ibits1=i1.bitwidth(), obits=odt.bitwidth(),
                    Nv=prod_or_int(a.get("numInputVectors", [1])))

    @classmethod
    def cycles(cls, p):
        """Nv * (C0 + C1) / SIMD: one output word per clock, from one input or the other."""
        return _i(p["Nv"]) * ((_i(p["C0"]) + _i(p["C1"])) // _i(p["SIMD"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``concat_resource_features`` times RESOURCE_COEFFS (no memory, no DSP)."""
        f = concat_resource_features(p)
        return res_out(np.rint(_lin(RESOURCE_COEFFS["LUT"], f["LUT"])).astype(np.int64),
                       np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64), 0, 0, 0, 0)

    resource_features = staticmethod(concat_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """Output word j on step j; per pixel (F0 + F1 steps) input 0's F0 words on its first
        F0 steps, input 1's F1 words on the rest. The consumption pattern is per input stream
        (a tuple: input 0, input 1), as the two inputs carry different numbers of words."""
        simd = int(p["SIMD"])
        f0, f1, nv = int(p["C0"]) // simd, int(p["C1"]) // simd, int(p["Nv"])
        n = nv * (f0 + f1)
        base = np.arange(nv, dtype=np.int64)[:, None] * (f0 + f1)
        c0 = (base + np.arange(f0, dtype=np.int64)[None, :]).ravel()
        c1 = (base + f0 + np.arange(f1, dtype=np.int64)[None, :]).ravel()
        return n, (c0, c1), np.arange(n, dtype=np.int64)

    @classmethod
    def latency(cls, p):
        """First input word (of input 0) to first output word: the registered output, 1 cycle."""
        return int(np.asarray(cls.pipeline_depth(p)).reshape(-1)[0])

    example_name = "concat"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One concat node at a chosen folding and bit widths."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_concat(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator

def _gen_concat(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    cs = [int(c) for c in _attr(a, "ChannelsPerStream")]
    simd = int(_attr(a, "SIMD", 1))
    if len(cs) != 2 or any(c < 1 for c in cs):
        raise UnsupportedError(f"{spec.name}: ChannelsPerStream={cs} must give the channels of both inputs")
    if any(c % simd for c in cs):
        raise FoldingError(f"{spec.name}: SIMD={simd} must divide ChannelsPerStream={cs}")
    names = list(_attr(a, "inputDataTypes"))
    d0, d1 = (dtype(n.decode() if isinstance(n, bytes) else n) for n in names)
    do = dtype(_attr(a, "outputDataType"))
    if d0.bipolar or d1.bipolar or do.bipolar:
        if not (d0 == d1 == do):
            raise UnsupportedError(f"{spec.name}: a concat of bipolar (-1/+1) streams needs both inputs bipolar")
    elif do.lo > min(d0.lo, d1.lo) or do.hi < max(d0.hi, d1.hi) or do.bits < max(d0.bits, d1.bits):
        raise UnsupportedError(f"{spec.name}: {do.name} does not hold every {d0.name} and {d1.name} value")
    f0, f1 = cs[0] // simd, cs[1] // simd
    nv = _prod(_attr(a, "numInputVectors", [1]))
    params = _p({"SIMD": simd, "IBITS0": d0.bits, "IBITS1": d1.bits, "OBITS": do.bits, "SIGNED0": d0.signed,
                 "SIGNED1": d1.signed, "F0": f0, "F1": f1, "CB": int(counter_bits(f0, f1))})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_concat", params, _stream(d0, simd, nv * f0),
                   _stream(do, simd, nv * (f0 + f1)), [], StreamingConcat.rtl_cycles(spec),
                   extra_in=[_stream(d1, simd, nv * f1)])


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "concat", C0: int = 8, C1: int = 4, SIMD: int = 2, adt: str = "INT4",
                  bdt: str = "INT4", nv: int = 3) -> HWNodeSpec:
    odt = union_datatype(DataType[adt], DataType[bdt]).name
    return HWNodeSpec(name, "StreamingConcat", dict(ChannelsPerStream=[C0, C1], SIMD=SIMD, inputDataTypes=[adt, bdt],
                                                    outputDataType=odt, numInputVectors=[nv]))
