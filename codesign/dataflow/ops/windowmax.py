"""WindowMax (the maximum over each sliding window, per channel): the reduction of a max pool
whose windows overlap or whose border is padded, everything about the op in one place.

Why a separate op and not the streaming pool: the kernel = stride pool keeps one running maximum
per output column in a row buffer, which is only right when windows tile the map (kernel =
stride, no padding). A MaxPool2d(3, stride 2, padding 1) lowers instead to a padding with the
datatype's minimum (the identity of max), the im2col window generator and this op, as FINN+
lowers its max pools to a sliding window plus its pool unit (``transforms/layout.py``). The
unit reads the window stream in its ``(k, c)`` order (c innermost, PE channels per word; the
window's SIMD equals this op's PE) and keeps one running maximum per channel word: one input
word per clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import HWCustomOp, _clog2, as_pair, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import FoldingError


def window_max(x: np.ndarray, K: int) -> np.ndarray:
    """Golden execution: x (..., K*C) in (k, c) order -> (..., C), the maximum over k."""
    x = np.asarray(x)
    return x.reshape(*x.shape[:-1], int(K), -1).max(axis=-2)


# ---- resource coefficients (fitted to Yosys by hand; begin) ----
#: LUT and FF = coefficients . ``windowmax_resource_features``: set from Yosys 0.23
#: ``synth_xilinx -family xc7`` of codesign_windowmax.v at nine foldings (C, PE, K, dtype) =
#: (4,1,9,U4) (4,4,9,U4) (8,2,9,I4) (16,4,9,U2) (12,12,4,I8) (64,8,9,U4) (3,3,9,U4) (2,1,9,I3)
#: (2,2,9,I4): LUT 39 44 48 46 204 96 39 34 34 (model 39 47 47 47 207 95 39 37 31: within 3),
#: FF 28 51 32 32 211 58 43 30 35 (model: equal); not yet in the bench_costmodel corpus
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [15.0, 2.0, 16.0, 1.0],
    "FF": [19.0, 1.0, 1.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def windowmax_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_windowmax.v (columns of RESOURCE_COEFFS).

    W = PE * bits (the word). LUT: [1, W (per bit: the lane's compare and the max / first /
    output select), CF > 1 (the channel counter, its flag and the register file's address
    logic), W per 64 words of running maxima beyond the first 64 (a LUTRAM bit each; none of the
    measured designs needed more than one)]. FF: [1 (the 16-bit kernel counter, flags, valid),
    W (output register), the running maxima when Yosys keeps them in flip-flops (CF <= 2:
    CF * W; deeper ones are LUTRAM), 2 * clog2(CF) + (CF > 2) (the channel counter and its
    flag, the LUTRAM's registered address)]."""
    P, b = _i(p["PE"]), _i(p["bits"])
    cf = _i(p["C"]) // P
    width = P * b
    one = np.ones_like(width)
    cfb = np.where(cf > 1, np.maximum(_clog2(cf), 1), 0)
    more = width * np.maximum(-(-cf // 64) - 1, 0)
    ff_acc = np.where(cf <= 2, cf * width, 0)
    return {"LUT": [one, width, (cf > 1).astype(np.int64), more],
            "FF": [one, width, ff_acc, 2 * cfb + (cf > 2).astype(np.int64)]}


class WindowMax(HWCustomOp):
    """(1, OH, OW, K*C) sliding windows -> (1, OH, OW, C) their per-channel maximum."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "Channels": ("i", True, 0),
            "Kernel": ("ints", True, []),
            "PE": ("i", False, 1),
            "inputDataType": ("s", True, ""),
            "numInputVectors": ("ints", False, [1]),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return self.get_input_datatype()

    def _k(self) -> int:
        kh, kw = as_pair(self.get_nodeattr("Kernel"))
        return kh * kw

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self._k() * int(self.get_nodeattr("Channels")),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (int(self.get_nodeattr("Channels")),)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = int(self.get_nodeattr("PE"))
        return tuple(self._nv()) + (self._k() * int(self.get_nodeattr("Channels")) // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = int(self.get_nodeattr("PE"))
        return tuple(self._nv()) + (int(self.get_nodeattr("Channels")) // pe, pe)

    def verify_folding(self) -> list[str]:
        c, pe = self.get_nodeattr("Channels"), self.get_nodeattr("PE")
        return [] if c % pe == 0 else [f"Channels={c} is not divisible by PE={pe}"]

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return window_max(x, self._k())

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE",)
    fold_dims = {"PE": ("Channels", "C")}
    in_fold_attr, out_fold_attr = "PE", "PE"
    follows_consumer = True
    layer_role = "next"
    template = "codesign_windowmax.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "inputDataType", tensor_dt, "input", str(a.get("name", "WindowMax node")))
        kh, kw = as_pair(a["Kernel"])
        return dict(K=kh * kw, C=int(a["Channels"]), PE=int(a.get("PE", 1)), bits=dt.bitwidth(),
                    Nv=prod_or_int(a.get("numInputVectors", [1])))

    @classmethod
    def cycles(cls, p):
        """Nv * K * C/PE: one window word per clock (the output overlaps the input)."""
        return _i(p["Nv"]) * _i(p["K"]) * (_i(p["C"]) // _i(p["PE"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``windowmax_resource_features`` times RESOURCE_COEFFS; the running maxima are LUTRAM
        (counted in the LUT column) or flip-flops, no block RAM, no DSP."""
        f = windowmax_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(windowmax_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """A word in per clock; the CF words of each window's last kernel position also go out."""
        k, cf, nv = int(p["K"]), int(p["C"]) // int(p["PE"]), int(p["Nv"])
        n = nv * k * cf
        prod_ = (np.arange(nv)[:, None] * k * cf + (k - 1) * cf + np.arange(cf)[None, :]).ravel()
        return n, np.arange(n), prod_

    example_name = "windowmax"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op at a chosen folding and bit width."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_windowmax(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator

def _gen_windowmax(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    kh, kw = as_pair(list(_attr(a, "Kernel")))
    C, PE = int(_attr(a, "Channels")), int(_attr(a, "PE", 1))
    if C % PE:
        raise FoldingError(f"{spec.name}: Channels={C} % PE={PE} must be 0")
    dt = dtype(_attr(a, "inputDataType"))
    K, CF = kh * kw, C // PE
    nv = _prod(_attr(a, "numInputVectors", [1]))
    # bipolar codes order as the values (bit 0 = -1 < bit 1 = +1): an unsigned compare
    params = _p({"K": K, "C": C, "PE": PE, "BITS": dt.bits, "SIGNED": int(dt.signed and not dt.bipolar)})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_windowmax", params, _stream(dt, PE, nv * K * CF),
                   _stream(dt, PE, nv * CF), [], WindowMax.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "wmax", C: int = 4, PE: int = 2, k: int = 3, dt: str = "UINT4",
                  nv: int = 4) -> HWNodeSpec:
    return HWNodeSpec(name, "WindowMax", dict(Channels=C, Kernel=[k, k], PE=PE, inputDataType=dt,
                                              numInputVectors=[1, nv, 1]))
