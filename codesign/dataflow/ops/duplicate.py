"""DuplicateStreams (the fork of a branching graph: one stream in, the same words on two
streams out): everything about the op in one place.

Why an op and not a wire: a stream has one consumer that drives TREADY. Where a tensor feeds two
HW nodes (the skip connection of a residual block and its convolution/FC branch) each branch
takes words at its own pace, so the fork holds the word until both have taken it and lets each
branch handshake on its own clock (``accel_templates/codesign_duplicate.v``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.ops.base import HWCustomOp, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import FoldingError, UnsupportedError


def duplicate_streams(x: np.ndarray, n: int = 2) -> list[np.ndarray]:
    """Golden execution: ``n`` copies of the input."""
    return [np.array(x, copy=True) for _ in range(int(n))]


# ---- resource coefficients (structural, not a corpus fit; begin) ----
#: LUT and FF = coefficients . ``duplicate_resource_features``. Structural counts of
#: codesign_duplicate.v: the data register (one FF per stream bit, no LUT: the enable is the
#: register's CE), two pending flags and the ready/fire logic. Checked against Yosys 0.23
#: ``synth_xilinx -family xc7`` at 4, 8 and 64 stream bits (4 LUTs, bits + 2 FFs each time); not
#: yet in the bench_costmodel corpus
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [4.0, 0.0],
    "FF": [2.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def duplicate_resource_features(p: Any) -> dict[str, list[Any]]:
    """LUT: [1, stream bits]; FF: [1, stream bits] (stream bits = PE * element bits)."""
    w = _i(p["PE"]) * _i(p["bits"])
    one = np.ones_like(w)
    return {"LUT": [one, w], "FF": [one, w]}


class DuplicateStreams(HWCustomOp):
    """One stream in, ``NumOutputStreams`` (= 2) identical streams out (FINN: DuplicateStreams)."""

    n_stream_outputs = 2

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "NumOutputStreams": ("i", False, 2),
            "inputDataType": ("s", True, ""),
            "numInputVectors": ("ints", False, [1]),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return self.get_input_datatype()

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
        c, pe, n = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE"), self.get_nodeattr("NumOutputStreams")
        msgs = [] if c % pe == 0 else [f"NumChannels={c} is not divisible by PE={pe}"]
        if n != 2:
            msgs.append(f"NumOutputStreams={n}: the RTL forks into exactly 2 streams (chain forks for more)")
        return msgs

    def make_shape_compatible_op(self, model: Any):
        """ONNX shape inference sees one stand-in node per custom node, and no single standard op
        has two float outputs of the input's shape; so output 0 gets the usual constant of the
        output shape and the further outputs are annotated on ``model`` directly (the model
        qonnx's InferShapes is about to run ONNX shape inference on)."""
        shape = list(self.get_normal_output_shape())
        for o in self.onnx_node.output[1:]:
            model.set_tensor_shape(o, shape)
        return self.make_const_shape_op(shape)

    def infer_node_datatype(self, model: Any) -> None:
        for o in self.onnx_node.output:
            model.set_tensor_datatype(o, self.get_input_datatype())

    def execute_node(self, context: dict, graph: Any) -> None:
        node = self.onnx_node
        x = context[node.input[0]]
        for o, y in zip(node.output, duplicate_streams(x, len(node.output))):
            host_reader = any(n.domain != node.domain for n in graph.node if o in n.input)
            y = np.asarray(y, dtype=np.float32 if host_reader else np.float64)
            if o in context and tuple(context[o].shape) != tuple(y.shape):
                y = y.reshape(context[o].shape)
            context[o] = y

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return duplicate_streams(x, 1)[0]

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE",)
    fold_dims = {"PE": ("NumChannels", "C")}
    in_fold_attr, out_fold_attr = "PE", "PE"
    template = "codesign_duplicate.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "inputDataType", tensor_dt, "input", str(a.get("name", "DuplicateStreams node")))
        return dict(C=int(a["NumChannels"]), PE=int(a.get("PE", 1)), bits=dt.bitwidth(),
                    Nv=prod_or_int(a.get("numInputVectors", [1])))

    @classmethod
    def cycles(cls, p):
        """Nv * C / PE: one PE-wide word per clock on all three streams."""
        return _i(p["Nv"]) * (_i(p["C"]) // _i(p["PE"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``duplicate_resource_features`` times the structural RESOURCE_COEFFS (no memory, no DSP)."""
        f = duplicate_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(duplicate_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """One word in and one word out (on each output) on every clock."""
        n = int(cls.cycles(p))
        return n, np.arange(n), np.arange(n)

    example_name = "duplicate"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One fork node at a chosen folding and bit width. It has two output streams, so it is
        rendered inside a graph (``HWNodeSpec.inputs/outputs`` set, e.g. fork -> join), not alone."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_duplicate(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator

def _gen_duplicate(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    C, PE = int(_attr(a, "NumChannels")), int(_attr(a, "PE", 1))
    if C % PE:
        raise FoldingError(f"{spec.name}: NumChannels={C} % PE={PE} must be 0")
    if int(_attr(a, "NumOutputStreams", 2)) != 2:
        raise UnsupportedError(f"{spec.name}: the fork RTL has exactly 2 outputs (chain forks for more)")
    dt = dtype(_attr(a, "inputDataType"))
    words = _prod(_attr(a, "numInputVectors", [1])) * (C // PE)
    s = _stream(dt, PE, words)
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_duplicate", _p({"WIDTH": s.width}), s, s, [],
                   DuplicateStreams.rtl_cycles(spec), extra_out=[_stream(dt, PE, words)])


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "fork", C: int = 8, PE: int = 2, dt: str = "UINT4", nv: int = 3) -> HWNodeSpec:
    return HWNodeSpec(name, "DuplicateStreams", dict(NumChannels=C, PE=PE, NumOutputStreams=2, inputDataType=dt,
                                                     numInputVectors=[nv]))
