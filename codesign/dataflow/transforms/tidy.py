"""The compiler's bookkeeping (sort, shapes, datatypes) in linear time, with qonnx's results.

Why hand-written: qonnx's ``SortGraph``, ``InferShapes`` and ``InferDataTypes`` find every
tensor by a linear scan of the graph (``find_producer``, ``get_by_name`` over the quantization
annotations and value infos, an initializer turned into a numpy array to read its dtype), so
one application is O(N^2) in the graph size. The lowering tidies after every pass that changes
the graph, which makes it O(N^3): MobileNet-v1 at 28x28 spent 630 of its 680 s of lowering in
these three passes. The functions here build dict indexes once per application and leave the
graph exactly as the qonnx passes do (the same node order, value infos and annotations,
checked byte for byte against qonnx at every tidy of whole lowerings in
tests/test_tidy.py), so nothing downstream can tell them apart.
"""

from __future__ import annotations

import itertools
from typing import Any

import onnx.shape_inference as si
from onnx import TensorProto, TensorAnnotation, StringStringEntryProto
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import _hide_finn_ops, _restore_finn_ops
from qonnx.util.basic import get_by_name
from toposort import toposort_flatten

__all__ = ["sort_graph", "infer_shapes", "infer_datatypes"]

#: the ONNX element types qonnx maps to a datatype of their own (everything else reads FLOAT32)
_ONNX_TO_QONNX = {TensorProto.FLOAT: "FLOAT32", TensorProto.FLOAT16: "FLOAT16"}


def sort_graph(model: ModelWrapper) -> None:
    """qonnx's SortGraph, in place: the same dependency sets (a node's producers; a node with no
    producer is kept only if an input is a graph input or an initializer), the same
    ``toposort_flatten`` order; the node list is rebuilt only when that order differs."""
    g = model.graph
    nodes = list(g.node)
    if len(nodes) <= 1:
        return
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            producer.setdefault(o, i)
    sources = {t.name for t in g.initializer} | {t.name for t in g.input}
    deps: dict[int, set[int]] = {}
    for i, n in enumerate(nodes):
        preds = {producer[t] for t in n.input if t in producer}
        if preds:
            deps[i] = preds
        elif any(t in sources for t in n.input):
            deps[i] = set()
    order = _toposort_flatten(deps)
    if order == list(range(len(nodes))):
        return
    del g.node[:]
    g.node.extend(nodes[i] for i in order)


def _toposort_flatten(deps: dict[int, set[int]]) -> list[int]:
    """``toposort_flatten(deps)`` (sorted within a level) in O(N + E): toposort's levels are the
    longest-path depths (an item is ready once all its dependencies are), so its flat order is
    the items sorted by (depth, item). The package's own loop is O(N * depth), quadratic on a
    deep chain; a cycle goes to it so the error is its own."""
    data = {k: v - {k} for k, v in deps.items()}
    for v in list(data.values()):
        for d in v:
            data.setdefault(d, set())
    users: dict[int, list[int]] = {k: [] for k in data}
    missing = {k: len(v) for k, v in data.items()}
    for k, v in data.items():
        for d in v:
            users[d].append(k)
    depth = {k: 0 for k, n in missing.items() if n == 0}
    ready = list(depth)
    while ready:
        k = ready.pop()
        for u in users[k]:
            depth[u] = max(depth.get(u, 0), depth[k] + 1)
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    if len(depth) < len(data) or any(missing.values()):
        return toposort_flatten(deps)
    return sorted(data, key=lambda k: (depth[k], k))


def _fix_missing_initializer_valueinfo(model: ModelWrapper) -> None:
    """What ``ModelWrapper(...)`` does on construction (``check_all_tensor_shapes_specified``
    with ``fix_missing_init_shape``): a value info for every initializer a node reads or writes
    that has none, in the same order."""
    g = model.graph
    have = {x.name for x in itertools.chain(g.input, g.output, g.value_info)}
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        for t in itertools.chain((i for i in n.input if i != ""), n.output):
            if t in have or t not in inits:
                continue
            init = inits[t]
            model.set_tensor_shape(t, list(init.dims), dtype=init.data_type)
            have.add(t)


def infer_shapes(model: ModelWrapper) -> ModelWrapper:
    """qonnx's InferShapes: custom ops hidden behind shape stand-ins, ONNX shape inference, the
    missing initializer value infos added, the custom ops restored. Returns the new wrapper."""
    hidden = _hide_finn_ops(model)
    out = ModelWrapper(si.infer_shapes(model.model), fix_missing_initializer_valueinfo=False)
    _fix_missing_initializer_valueinfo(out)
    _restore_finn_ops(out, hidden)
    return out


class _IndexedModel(ModelWrapper):
    """A second wrapper over the same ModelProto whose datatype reads and writes go through dicts
    (same semantics as ModelWrapper's, which scan the annotation and value-info lists); valid
    while only datatypes change, i.e. for one InferDataTypes application."""

    def __init__(self, proto: Any, annotations: dict[str, Any], vi_dtypes: dict[str, int],
                 init_dtypes: dict[str, int]) -> None:
        super().__init__(proto, fix_missing_initializer_valueinfo=False)
        self._qa, self._vi, self._init = annotations, vi_dtypes, init_dtypes

    def get_tensor_datatype(self, tensor_name: str) -> Any:
        qa = self._qa.get(tensor_name)
        if qa is not None:
            ent = get_by_name(qa.quant_parameter_tensor_names, "finn_datatype", "key")
            if ent is not None:
                return DataType[ent.value]
        onnx_dtype = self._vi.get(tensor_name, self._init.get(tensor_name))
        return DataType[_ONNX_TO_QONNX.get(onnx_dtype, "FLOAT32")]

    def set_tensor_datatype(self, tensor_name: str, datatype: Any) -> None:
        qa = self._qa.get(tensor_name)
        if qa is not None:
            ent = get_by_name(qa.quant_parameter_tensor_names, "finn_datatype", "key")
            if ent is not None:
                if datatype is None:
                    ent.Clear()
                else:
                    ent.value = datatype.name
            elif datatype is not None:
                qa.quant_parameter_tensor_names.append(StringStringEntryProto(key="finn_datatype", value=datatype.name))
        elif datatype is not None:
            new = TensorAnnotation(tensor_name=tensor_name)
            new.quant_parameter_tensor_names.append(StringStringEntryProto(key="finn_datatype", value=datatype.name))
            anns = self._model_proto.graph.quantization_annotation
            anns.append(new)
            self._qa[tensor_name] = anns[-1]


def infer_datatypes(model: ModelWrapper) -> None:
    """qonnx's InferDataTypes (default settings), in place, over dict indexes of the annotations,
    value infos and initializer dtypes. A graph with duplicate annotations or value infos (which
    qonnx's lookups refuse) goes to qonnx's own pass, so its error is qonnx's."""
    g = model.graph
    anns: dict[str, Any] = {}
    vis: dict[str, int] = {}
    dup = False
    for a in g.quantization_annotation:
        dup |= a.tensor_name in anns
        anns[a.tensor_name] = a
    for x in itertools.chain(g.input, g.output, g.value_info):
        dup |= x.name in vis
        vis[x.name] = x.type.tensor_type.elem_type
    if dup:
        InferDataTypes().apply(model)
        return
    inits: dict[str, int] = {}
    for t in g.initializer:
        inits.setdefault(t.name, t.data_type)
    InferDataTypes().apply(_IndexedModel(model.model, anns, vis, inits))
