"""LabelSelect (top-K indices): everything about the op in one place."""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import _clog2, HWCustomOp, param_dt
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def label_select(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, descending; ties -> lower index first."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(-x, axis=-1, kind="stable")
    return order[..., :k].astype(np.int64)


def label_select_cost(L: Any, PE: Any, K: Any, vbits: Any) -> dict[str, np.ndarray]:
    """Formula-level entry point: cycles and resources of the top-K op."""
    return LabelSelect.cost(dict(L=L, PE=PE, K=K, vbits=vbits))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``labelselect_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single LabelSelect nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [38.5581, 0.0, 2.5814, 1.3605],
    "FF": [50.6279, 1.2791, 1.218],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def labelselect_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_labelselect.v (columns of RESOURCE_COEFFS): K
    sorted (value, index) registers of VB = vbits + 1 and IB = clog2(L) bits, each new lane
    compared with all K (K compares of VB bits) and shifted in (K muxes of VB + IB bits); the
    word being inserted is a PE*vbits shift register.
    LUT: [1, compare bits K*VB, insert-mux bits K*(VB+IB), shift bits PE*vbits];
    FF: [1, K*(VB+IB), PE*vbits]."""
    Li, P, Ki, vb = _i(p["L"]), _i(p["PE"]), _i(p["K"]), _i(p["vbits"])
    ib = np.maximum(_clog2(Li), 1)
    one = np.ones_like(P)
    return {"LUT": [one, Ki * (vb + 1), Ki * (vb + 1 + ib), P * vb], "FF": [one, Ki * (vb + 1 + ib), P * vb]}


class LabelSelect(HWCustomOp):
    """Top-K: indices of the K largest values, descending, ties to the lower index."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "Labels": ("i", True, 0),
            "PE": ("i", False, 1),
            "K": ("i", True, 1),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", False, ""),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        odt = self.get_nodeattr("outputDataType")
        if odt:
            return DataType[odt]
        return DataType.get_smallest_possible(self.get_nodeattr("Labels") - 1)

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("Labels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("K"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return (1, self.get_nodeattr("Labels") // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("K"), 1)

    def verify_folding(self) -> list[str]:
        lab, pe, k = self.get_nodeattr("Labels"), self.get_nodeattr("PE"), self.get_nodeattr("K")
        msgs = [] if lab % pe == 0 else [f"Labels={lab} is not divisible by PE={pe}"]
        if not 1 <= k <= lab:
            msgs.append(f"K={k} must lie in [1, {lab}]")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return label_select(x.reshape(x.shape[0], -1), self.get_nodeattr("K"))

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE",)
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("LabelSelect_Batch",)
    fold_dims = {"PE": ("Labels", "L")}
    in_fold_attr, out_fold_attr = "PE", None
    template = "codesign_labelselect.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "inputDataType", tensor_dt, "input", str(a.get("name", "LabelSelect node")))
        return dict(L=int(a["Labels"]), PE=int(a.get("PE", 1)), K=int(a.get("K", 1)), vbits=dt.bitwidth())

    @classmethod
    def cycles(cls, p):
        """L clocks inserting one value each (a PE-lane word is taken every PE clocks: one
        insertion per clock keeps the sorted list off the critical path), then K clocks emitting
        one index each (the RTL takes no input while it emits)."""
        return _i(p["L"]) + _i(p["K"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``labelselect_resource_features`` times the fitted RESOURCE_COEFFS (no memories)."""
        f = labelselect_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(labelselect_resource_features)

    @classmethod
    def io_pattern(cls, p):
        pe, k = int(p["PE"]), int(p["K"])
        nw = int(p["L"]) // pe
        return nw * pe + k, np.arange(nw) * pe, nw * pe + np.arange(k)

    def mismatches_against_source(self, y: np.ndarray, y_ref: np.ndarray) -> int | None:
        """The K indices against the source's top-K (the source ends in the scores); a source
        tied at the K-th place makes any order right."""
        k = y.size
        flat = np.asarray(y_ref, dtype=np.float64).reshape(-1)
        order = np.argsort(-flat, kind="stable")
        if k < flat.size and flat[order[k - 1]] == flat[order[k]]:
            return 0
        return int(np.sum(order[:k] != np.asarray(y).reshape(-1)))

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_labelselect.v: the first index is in the output register PE + 2 cycles after
        the frame's last word is taken, i.e. 2 after the io_pattern's first emit step."""
        return np.asarray(2, dtype=np.int64)

    #: short name of the single-node example builder (``codesign.hw.opspecs.labelselect_spec``)
    example_name = "labelselect"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_labelselect(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_labelselect(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    L, PE, K = int(_attr(a, "Labels")), int(_attr(a, "PE", 1)), int(_attr(a, "K"))
    if L % PE:
        raise FoldingError(f"{spec.name}: Labels={L} % PE={PE} must be 0")
    idt, odt = dtype(_attr(a, "inputDataType")), dtype(_attr(a, "outputDataType"))
    if L - 1 > odt.hi:
        raise UnsupportedError(f"{spec.name}: outputDataType {odt.name} cannot hold label {L - 1}")
    params = _p({"L": L, "PE": PE, "K": K, "IBITS": idt.bits, "OBITS": odt.bits,
                 "I_SIGNED": idt.signed and not idt.bipolar})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_labelselect", params,
                   _stream(idt, PE, L // PE), _stream(odt, 1, K), [], LabelSelect.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "top", L: int = 10, PE: int = 1, K: int = 1, idt: str = "INT8") -> HWNodeSpec:
    return HWNodeSpec(name, "LabelSelect", dict(Labels=L, PE=PE, K=K, inputDataType=idt, outputDataType="UINT8"))

