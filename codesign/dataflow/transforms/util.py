"""Graph helpers shared by the lowering passes (pure functions over a qonnx ModelWrapper)."""

from __future__ import annotations

import itertools
import json
from typing import Iterable

import numpy as np
import onnx.helper as helper
from onnx import NodeProto
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from codesign.errors import UnsupportedError

#: ONNX / QONNX ops the lowering understands in a Brevitas export (after cleanup).
SUPPORTED_INPUT_OPS: tuple[str, ...] = (
    "Quant", "IntQuant", "BipolarQuant", "MatMul", "Gemm", "Conv", "BatchNormalization", "Relu", "MaxPool",
    "Flatten", "Reshape", "Mul", "Add", "Sub", "Div", "Transpose", "Identity", "MultiThreshold",
    "AveragePool", "GlobalAveragePool", "Concat",
)

_counter = itertools.count()


def fresh_name(model: ModelWrapper, prefix: str) -> str:
    """A tensor name unused in the graph."""
    existing = set(model.get_all_tensor_names())
    while True:
        name = f"{prefix}_{next(_counter)}"
        if name not in existing:
            return name


def is_const(model: ModelWrapper, name: str) -> bool:
    return model.get_initializer(name) is not None


#: metadata key prefix of the float64 twin of a float32 initializer (see ``set_const``)
F64_PREFIX = "codesign.f64:"


def const(model: ModelWrapper, name: str) -> np.ndarray | None:
    """An initializer's value, in float64 if the lowering stored an exact twin of it."""
    v = model.get_initializer(name)
    if v is None:
        return None
    meta = model.get_metadata_prop(F64_PREFIX + name)
    if meta:
        d = json.loads(meta)
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.float64).reshape(d["shape"])
    return np.asarray(v)


def single_consumer(model: ModelWrapper, tensor: str) -> NodeProto | None:
    """The only consumer of ``tensor``, or None if it has zero or several (or is a graph output)."""
    consumers = model.find_consumers(tensor)
    if consumers is None or len(consumers) != 1:
        return None
    if tensor in [o.name for o in model.graph.output]:
        return None
    return consumers[0]


def const_input(model: ModelWrapper, node: NodeProto) -> tuple[int, np.ndarray] | None:
    """For a binary elementwise node with exactly one initializer input: (index of the dynamic
    input, constant)."""
    if len(node.input) != 2:
        return None
    c0, c1 = const(model, node.input[0]), const(model, node.input[1])
    if c1 is not None and c0 is None:
        return 0, c1
    if c0 is not None and c1 is None:
        return 1, c0
    return None


def channel_vector(c: np.ndarray, shape: Iterable[int], channel_axis: int) -> np.ndarray | None:
    """The per-channel vector of a constant broadcast over a tensor of ``shape``, or None if the
    constant varies along another axis. A scalar becomes a vector of equal entries."""
    shape = list(shape)
    c = np.asarray(c, dtype=np.float64)
    nch = shape[channel_axis]
    if c.size == 1:
        return np.full(nch, float(c.reshape(())), dtype=np.float64)
    if c.ndim > len(shape):
        return None
    full = [1] * (len(shape) - c.ndim) + list(c.shape)
    ax = channel_axis % len(shape)
    for i, d in enumerate(full):
        if i != ax and d != 1:
            return None
    if full[ax] != nch:
        return None
    return c.reshape(-1)


def is_scalar(c: np.ndarray) -> bool:
    return np.asarray(c).size == 1


def int_range(dt: DataType) -> tuple[int, int]:
    return int(dt.min()), int(dt.max())


def smallest_int_dtype(lo: float, hi: float) -> DataType:
    """Smallest INTn/UINTn (n <= 64) holding [lo, hi]; prefers unsigned when lo >= 0."""
    lo, hi = int(np.floor(lo)), int(np.ceil(hi))
    if lo >= 0:
        bits = max(1, int(hi).bit_length())
        return DataType[f"UINT{bits}"]
    bits = max(int(-lo - 1).bit_length(), int(hi).bit_length()) + 1
    return DataType[f"INT{bits}"]


def acc_range(W: np.ndarray, in_dt: DataType) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-column accumulator range of x @ W for x with entries of datatype ``in_dt``."""
    lo, hi = int_range(in_dt)
    W = np.asarray(W, dtype=np.float64)
    a, b = W * lo, W * hi
    return np.minimum(a, b).sum(axis=0), np.maximum(a, b).sum(axis=0)


def set_const(model: ModelWrapper, name: str, value: np.ndarray, dt: DataType | None = None) -> None:
    """Store a constant as a float32 initializer (so intermediate graphs run in onnxruntime) and,
    when float32 cannot hold it exactly, its float64 value as a metadata twin that ``const``
    returns: the scales and biases folded during streamlining (BatchNorm a, b, products of
    scales) must keep full precision until they reach the thresholds, or a pre-activation a
    few 1e-6 from a rounding boundary lands on the wrong side after ``ceil``."""
    v64 = np.asarray(value, dtype=np.float64)
    v32 = v64.astype(np.float32)
    model.set_initializer(name, v32)
    if not np.array_equal(v32.astype(np.float64), v64):
        model.set_metadata_prop(F64_PREFIX + name, json.dumps({"shape": list(v64.shape),
                                                               "hex": v64.tobytes().hex()}))
    if dt is not None:
        model.set_tensor_datatype(name, dt)


def add_const(model: ModelWrapper, prefix: str, value: np.ndarray, dt: DataType | None = None) -> str:
    name = fresh_name(model, prefix)
    set_const(model, name, value, dt)
    return name


def insert_after(model: ModelWrapper, node: NodeProto, op_type: str, const_value: np.ndarray,
                 name_hint: str) -> NodeProto:
    """Insert ``out = op(node_out, const)`` after ``node`` (its output name is kept for ``out``)."""
    out = node.output[0]
    mid = fresh_name(model, f"{name_hint}_pre")
    node.output[0] = mid
    cname = add_const(model, f"{name_hint}_param", const_value)
    new = helper.make_node(op_type, [mid, cname], [out], name=fresh_name(model, name_hint))
    idx = list(model.graph.node).index(node)
    model.graph.node.insert(idx + 1, new)
    return new


def remove_node_bypass(model: ModelWrapper, node: NodeProto) -> None:
    """Remove a single-input pass-through node, connecting its input to its consumers.

    If its output is a graph output the producer's output is renamed instead."""
    inp, out = node.input[0], node.output[0]
    graph_outs = [o.name for o in model.graph.output]
    if out in graph_outs:
        prod = model.find_producer(inp)
        if prod is None:
            raise UnsupportedError(f"{node.name} ({node.op_type}): cannot bypass a node between the "
                                   "graph input and output")
        for i, o in enumerate(prod.output):
            if o == inp:
                prod.output[i] = out
        for c in model.find_consumers(inp) or []:
            for i, x in enumerate(c.input):
                if x == inp:
                    c.input[i] = out
    else:
        for c in model.find_consumers(out) or []:
            for i, x in enumerate(c.input):
                if x == out:
                    c.input[i] = inp
    model.graph.node.remove(node)


def input_quant_node(model: ModelWrapper) -> NodeProto | None:
    """The network's input quantizer: the first Quant/BipolarQuant on a non-constant tensor."""
    for n in model.graph.node:
        if n.op_type in ("Quant", "IntQuant", "BipolarQuant") and not is_const(model, n.input[0]):
            return n
    return None


def host_pre_nodes(model: ModelWrapper) -> set[str]:
    """Names of the nodes up to and including the input quantizer (they stay on the host)."""
    q = input_quant_node(model)
    if q is None:
        return set()
    names = set()
    for n in model.graph.node:
        names.add(n.name)
        if n is q or n.name == q.name:
            break
    return names


def unsupported(node: NodeProto, why: str, supported: Iterable[str] = SUPPORTED_INPUT_OPS) -> UnsupportedError:
    """Build the one error style of the compiler: node name, op type, reason, supported list."""
    return UnsupportedError(f"node '{node.name}' (op {node.op_type}): {why}. "
                            f"Supported: {', '.join(supported)}")

