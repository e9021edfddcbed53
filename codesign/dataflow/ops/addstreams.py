"""AddStreams (the join of a residual block: elementwise sum of two integer streams):
everything about the op in one place.

Why the sum is exact on integers: the lowering only creates the join once both branches arrive
at one common scale (``transforms/branch.py``: both requantised by one shared quantizer, as
FINN's streamlining of residual blocks needs), so ``s*a + s*b = s*(a + b)`` and the hardware
adds the integer codes; the common scale moves on into the next thresholds. The output datatype
is the exact range of the sum, so nothing saturates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import HWCustomOp, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def add_streams(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Golden execution: the elementwise sum (float64 holds every integer sum exactly)."""
    return np.asarray(a, dtype=np.float64) + np.asarray(b, dtype=np.float64)


# ---- resource coefficients (structural, not a corpus fit; begin) ----
#: LUT and FF = coefficients . ``addstreams_resource_features``. Structural counts of
#: codesign_addstreams.v: about one carry-chain LUT per output bit of each of the PE adders
#: (Yosys shares a few with the narrower input), the output register (PE * OBITS FFs), the valid
#: bit and the handshake logic. Set from Yosys 0.23 ``synth_xilinx -family xc7`` at PE * OBITS =
#: 5, 10, 72 (8 / 12 / 68 LUTs, 6 / 11 / 73 FFs); not yet in the bench_costmodel corpus
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [3.5, 0.9],
    "FF": [1.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def addstreams_resource_features(p: Any) -> dict[str, list[Any]]:
    """LUT: [1, adder bits]; FF: [1, output register bits] (both PE * obits)."""
    w = _i(p["PE"]) * _i(p["obits"])
    one = np.ones_like(w)
    return {"LUT": [one, w], "FF": [one, w]}


def sum_datatype(a: DataType, b: DataType) -> DataType:
    """The smallest integer datatype holding every a + b (the join's output)."""
    from codesign.dataflow.transforms.util import smallest_int_dtype

    return smallest_int_dtype(a.min() + b.min(), a.max() + b.max())


class AddStreams(HWCustomOp):
    """Two streams in, their elementwise sum out (FINN: AddStreams)."""

    n_stream_inputs = 2

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "inputDataTypes": ("strings", True, [""]),
            "outputDataType": ("s", True, ""),
            "numInputVectors": ("ints", False, [1]),
        }

    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("inputDataTypes")[ind]]

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (int(self.get_nodeattr("NumChannels")),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = int(self.get_nodeattr("PE"))
        return tuple(self._nv()) + (int(self.get_nodeattr("NumChannels")) // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_folded_input_shape()

    def verify_folding(self) -> list[str]:
        c, pe = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE")
        return [] if c % pe == 0 else [f"NumChannels={c} is not divisible by PE={pe}"]

    def _execute(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return add_streams(a, b)

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE",)
    fold_dims = {"PE": ("NumChannels", "C")}
    in_fold_attr, out_fold_attr = "PE", "PE"
    template = "codesign_addstreams.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        what = str(a.get("name", "AddStreams node"))
        names = list(a["inputDataTypes"])
        if len(names) != 2:
            raise UnsupportedError(f"{what}: inputDataTypes must name the datatypes of both inputs")
        ia, ib = (DataType[n] for n in names)
        odt = param_dt(a, "outputDataType", tensor_dt, "output", what)
        return dict(C=int(a["NumChannels"]), PE=int(a.get("PE", 1)), abits=ia.bitwidth(), bbits=ib.bitwidth(),
                    obits=odt.bitwidth(), Nv=prod_or_int(a.get("numInputVectors", [1])))

    @classmethod
    def cycles(cls, p):
        """Nv * C / PE: one pair of PE-wide words per clock."""
        return _i(p["Nv"]) * (_i(p["C"]) // _i(p["PE"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``addstreams_resource_features`` times the structural RESOURCE_COEFFS (no memory, no DSP)."""
        f = addstreams_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(addstreams_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """Word k of both inputs taken together, the sum emitted on the same step."""
        n = int(cls.cycles(p))
        return n, np.arange(n), np.arange(n)

    example_name = "addstreams"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One join node at a chosen folding and bit widths."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_addstreams(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator

def _gen_addstreams(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    C, PE = int(_attr(a, "NumChannels")), int(_attr(a, "PE", 1))
    if C % PE:
        raise FoldingError(f"{spec.name}: NumChannels={C} % PE={PE} must be 0")
    names = list(_attr(a, "inputDataTypes"))
    da, db = (dtype(n.decode() if isinstance(n, bytes) else n) for n in names)
    do = dtype(_attr(a, "outputDataType"))
    if da.bipolar or db.bipolar or do.bipolar:
        raise UnsupportedError(f"{spec.name}: the join adds integer codes; bipolar (-1/+1) inputs are not supported")
    if do.lo > da.lo + db.lo or do.hi < da.hi + db.hi:
        raise UnsupportedError(f"{spec.name}: {do.name} does not hold every {da.name} + {db.name}")
    words = _prod(_attr(a, "numInputVectors", [1])) * (C // PE)
    params = _p({"PE": PE, "ABITS": da.bits, "BBITS": db.bits, "OBITS": do.bits, "A_SIGNED": da.signed,
                 "B_SIGNED": db.signed})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_addstreams", params, _stream(da, PE, words),
                   _stream(do, PE, words), [], AddStreams.rtl_cycles(spec), extra_in=[_stream(db, PE, words)])


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "join", C: int = 8, PE: int = 2, adt: str = "UINT4", bdt: str = "INT5",
                  nv: int = 3) -> HWNodeSpec:
    odt = sum_datatype(DataType[adt], DataType[bdt]).name
    return HWNodeSpec(name, "AddStreams", dict(NumChannels=C, PE=PE, inputDataTypes=[adt, bdt], outputDataType=odt,
                                               numInputVectors=[nv]))
