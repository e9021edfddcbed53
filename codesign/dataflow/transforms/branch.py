"""Branching graphs (residual blocks): the fork of a tensor into two streams and the join of two
streams by an elementwise add.

The algebra of the join. Brevitas' residual blocks (and FINN's examples) requantise both
branches with one shared quantizer right before the add, so after the quantizer lowering each
input of the ``Add`` is ``Mul(codes, s)`` with the *same* scale ``s``:
``s*a + s*b = s*(a + b)``. ``FactorJoinScale`` rewrites the Add that way, ``InferAddStreams``
turns the add of the two integer code tensors into the ``AddStreams`` HW op (its output
datatype the exact range of the sum), and the scale ``s`` streamlines on into the next
thresholds like any other. Two branches that reach the add at different scales would need a
multiplier on one branch; they are refused naming the Add and both scales.

The channel concat. ``Concat`` of two branches on the channel axis is the other join: with both
branches at one common scale ``s`` (one shared quantizer, as for the add),
``concat(s*a, s*b) = s*concat(a, b)`` (``FactorConcatScale``) and ``InferStreamingConcat`` turns
the concat of the integer codes into ``StreamingConcat`` (channels last; in a convolutional
network the two NHWC->NCHW transposes are factored past it first, ``FactorConcatTranspose``,
the NCHW channel axis 1 becoming the NHWC axis 3). Different scales are refused naming the
Concat and both scales; other axes, more than two inputs or a constant input are refused
before anything is lowered (``check_concat``).

The fork. Streamlining moves scales along single-consumer chains, so a scale ``Mul`` whose
output feeds both branches is first copied once per consumer (``DuplicateForkedScale``); each
branch then absorbs its own copy. After the HW conversion a HW tensor read by two HW nodes gets
a ``DuplicateStreams`` node (``InsertDuplicateStreams``): a stream has exactly one consumer.
"""

from __future__ import annotations

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from codesign.dataflow.ops.addstreams import sum_datatype
from codesign.dataflow.ops.base import DOMAIN, make_hw_node
from codesign.dataflow.ops.concat import union_datatype
from codesign.dataflow.transforms.util import const, const_input, fresh_name, set_const, single_consumer, unsupported

#: the only two-stream elementwise op the dataflow takes (a join of two branches)
JOIN_OPS = ("Add",)


def is_stream_join(model: ModelWrapper, node) -> bool:
    """An elementwise Add/Sub/Mul/Div whose two inputs are both computed tensors (no constant):
    the join of two branches."""
    return (node.op_type in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2
            and all(model.get_initializer(i) is None and model.find_producer(i) is not None
                    and model.find_producer(i).op_type != "Constant" for i in node.input))


def is_stream_concat(model: ModelWrapper, node) -> bool:
    """A Concat whose inputs are all computed tensors (no constant): the join of branches."""
    return (node.op_type == "Concat" and len(node.input) >= 2
            and all(model.get_initializer(i) is None and model.find_producer(i) is not None
                    and model.find_producer(i).op_type != "Constant" for i in node.input))


def _concat_axis(node) -> int:
    for a in node.attribute:
        if a.name == "axis":
            return int(helper.get_attribute_value(a))
    return 0


CONCAT_SUPPORTED = ["Concat of two quantized branches on the channel axis at one common scale"]


def check_concat(model: ModelWrapper, node) -> None:
    """Refuse (one line naming the node) a Concat the dataflow cannot stream: not exactly two
    computed inputs, or an axis other than the channels (axis 1 of the NCHW / NC source model)."""
    if not is_stream_concat(model, node) or len(node.input) != 2:
        raise unsupported(node, f"a Concat of {len(node.input)} inputs"
                                + ("" if is_stream_concat(model, node) else " with a constant input")
                                + "; only the concat of two computed branches streams (nest two-input Concats "
                                  "for more)", supported=CONCAT_SUPPORTED)
    shape = model.get_tensor_shape(node.input[0])
    rank = len(shape) if shape is not None else 0
    axis = _concat_axis(node)
    if rank not in (2, 4) or axis % rank != 1:
        raise unsupported(node, f"a Concat on axis {axis} of rank-{rank} tensors; only the channel axis (1 of "
                                "NCHW or NC) streams", supported=CONCAT_SUPPORTED)


class DuplicateForkedScale(Transformation):
    """A host ``Mul``/``Add`` by a constant (or a layout ``Transpose``) whose output feeds
    several nodes: one copy per consumer, so each branch streamlines (or cancels) its own copy."""

    def apply(self, model: ModelWrapper):
        graph_outs = {o.name for o in model.graph.output}
        readers: dict[str, list] = {}  # tensor -> its consumers in graph order (find_consumers, indexed once)
        for m in model.graph.node:
            for t in m.input:  # a node reading it twice is listed twice, as find_consumers does
                readers.setdefault(t, []).append(m)
        for n in model.graph.node:
            if n.domain not in ("", "ai.onnx"):
                continue
            if n.op_type in ("Mul", "Add"):
                if const_input(model, n) is None:
                    continue
            elif n.op_type != "Transpose":
                continue
            consumers = readers.get(n.output[0], [])
            if len(consumers) < 2 or n.output[0] in graph_outs:
                continue
            idx_node = list(model.graph.node).index(n)
            for k, cons in enumerate(consumers[1:], 1):
                out = fresh_name(model, f"{n.output[0]}_fork{k}")
                inputs = list(n.input)
                if n.op_type != "Transpose":
                    idx, c = const_input(model, n)
                    cname = fresh_name(model, f"{n.name}_fork{k}_param")
                    set_const(model, cname, c)
                    inputs[1 - idx] = cname
                copy = helper.make_node(n.op_type, inputs, [out], name=fresh_name(model, f"{n.name}_fork{k}"))
                copy.attribute.extend(n.attribute)
                model.graph.node.insert(idx_node + k, copy)
                for i, v in enumerate(cons.input):
                    if v == n.output[0]:
                        cons.input[i] = out
            return model, True
        return model, False


class FactorJoinTranspose(Transformation):
    """``Add(Transpose_p(a), Transpose_p(b))`` -> ``Transpose_p(Add(a, b))``: the two branches of
    a convolutional residual block come back to NCHW before the add; the add moves into NHWC
    (where the streams are) and the one Transpose travels on to cancel or meet a Flatten."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in JOIN_OPS or not is_stream_join(model, n):
                continue
            ta, tb = (model.find_producer(i) for i in n.input)
            if ta is None or tb is None or ta.op_type != "Transpose" or tb.op_type != "Transpose":
                continue
            pa, pb = (list(helper.get_attribute_value(a)) for t in (ta, tb) for a in t.attribute if a.name == "perm")
            if pa != pb or single_consumer(model, ta.output[0]) is None or single_consumer(model, tb.output[0]) is None:
                continue
            out = n.output[0]
            mid = fresh_name(model, f"{n.name}_nhwc")
            n.input[0], n.input[1] = ta.input[0], tb.input[0]
            n.output[0] = mid
            model.set_tensor_shape(mid, list(model.get_tensor_shape(ta.input[0])))
            t = helper.make_node("Transpose", [mid], [out], name=fresh_name(model, f"{n.name}_transpose"), perm=pa)
            model.graph.node.insert(list(model.graph.node).index(n) + 1, t)
            model.graph.node.remove(ta)
            model.graph.node.remove(tb)
            return model, True
        return model, False


class FactorConcatTranspose(Transformation):
    """``Concat_ax(Transpose_p(a), Transpose_p(b))`` -> ``Transpose_p(Concat_{p[ax]}(a, b))``: the
    two branches of a convolutional block come back to NCHW before the channel concat; the
    concat moves into NHWC (axis 1 of NCHW is axis 3 there) and the one Transpose travels on."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if not is_stream_concat(model, n) or len(n.input) != 2:
                continue
            ta, tb = (model.find_producer(i) for i in n.input)
            if ta is None or tb is None or ta.op_type != "Transpose" or tb.op_type != "Transpose":
                continue
            pa, pb = (list(helper.get_attribute_value(a)) for t in (ta, tb) for a in t.attribute if a.name == "perm")
            if pa != pb or single_consumer(model, ta.output[0]) is None or single_consumer(model, tb.output[0]) is None:
                continue
            ax = _concat_axis(n) % len(pa)
            out = n.output[0]
            mid = fresh_name(model, f"{n.name}_nhwc")
            n.input[0], n.input[1] = ta.input[0], tb.input[0]
            n.output[0] = mid
            for a in list(n.attribute):
                if a.name == "axis":
                    n.attribute.remove(a)
            n.attribute.append(helper.make_attribute("axis", int(pa[ax])))
            sa, sb = (list(model.get_tensor_shape(t.input[0])) for t in (ta, tb))
            sa[pa[ax]] += sb[pa[ax]]
            model.set_tensor_shape(mid, sa)
            t = helper.make_node("Transpose", [mid], [out], name=fresh_name(model, f"{n.name}_transpose"), perm=pa)
            model.graph.node.insert(list(model.graph.node).index(n) + 1, t)
            model.graph.node.remove(ta)
            model.graph.node.remove(tb)
            return model, True
        return model, False


def _scale_of(model: ModelWrapper, node) -> tuple[str, np.ndarray] | None:
    """(dynamic input, constant) of a ``Mul`` by a constant, else None."""
    if node is None or node.op_type != "Mul":
        return None
    ci = const_input(model, node)
    return None if ci is None else (node.input[ci[0]], np.asarray(ci[1], dtype=np.float64))


class FactorJoinScale(Transformation):
    """``Add(Mul(a, s), Mul(b, s))`` -> ``Mul(Add(a, b), s)`` when both scales are equal
    (elementwise after broadcasting). Refuses two different scales once both branches are
    down to integer codes (nothing later can make them equal)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in JOIN_OPS or not is_stream_join(model, n):
                continue
            pa, pb = (model.find_producer(i) for i in n.input)
            qa, qb = _scale_of(model, pa), _scale_of(model, pb)
            if qa is None or qb is None or single_consumer(model, pa.output[0]) is None \
                    or single_consumer(model, pb.output[0]) is None:
                continue
            (xa, sa), (xb, sb) = qa, qb
            shape = model.get_tensor_shape(n.output[0])
            try:
                fa, fb = np.broadcast_to(sa, shape), np.broadcast_to(sb, shape)
            except ValueError:
                continue
            if not np.array_equal(fa, fb):
                da, db = model.get_tensor_datatype(xa), model.get_tensor_datatype(xb)
                if da.is_integer() and db.is_integer():
                    raise unsupported(n, f"the two branches reach the join at different scales "
                                         f"({_show(sa)} and {_show(sb)}); requantise both with one shared "
                                         "QuantIdentity right before the add (as FINN's residual blocks do)",
                                      supported=["Add of two branches at one common scale"])
                continue
            out = n.output[0]
            mid = fresh_name(model, f"{n.name}_codes")
            n.input[0], n.input[1] = xa, xb
            n.output[0] = mid
            cname = fresh_name(model, f"{n.name}_scale")
            set_const(model, cname, sa if sa.size <= sb.size else sb)
            mul = helper.make_node("Mul", [mid, cname], [out], name=fresh_name(model, f"{n.name}_scale"))
            model.graph.node.insert(list(model.graph.node).index(n) + 1, mul)
            model.graph.node.remove(pa)
            model.graph.node.remove(pb)
            return model, True
        return model, False


class FactorConcatScale(Transformation):
    """``Concat(Mul(a, s), Mul(b, s))`` -> ``Mul(Concat(a, b), s)`` when both scales are one and
    the same number (per tensor). Refuses different scales (or per-channel ones) once both
    branches are down to integer codes: the stream carries codes of one scale."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if not is_stream_concat(model, n) or len(n.input) != 2:
                continue
            pa, pb = (model.find_producer(i) for i in n.input)
            qa, qb = _scale_of(model, pa), _scale_of(model, pb)
            if qa is None or qb is None or single_consumer(model, pa.output[0]) is None \
                    or single_consumer(model, pb.output[0]) is None:
                continue
            (xa, sa), (xb, sb) = qa, qb
            fa, fb = sa.reshape(-1), sb.reshape(-1)
            if not (np.all(fa == fa[0]) and np.all(fb == fb[0]) and fa[0] == fb[0]):
                da, db = model.get_tensor_datatype(xa), model.get_tensor_datatype(xb)
                if da.is_integer() and db.is_integer():
                    raise unsupported(n, f"the two branches reach the concat at different scales "
                                         f"({_show(sa)} and {_show(sb)}); requantise both with one shared "
                                         "QuantIdentity right before the concat (as for a residual add)",
                                      supported=CONCAT_SUPPORTED)
                continue
            out = n.output[0]
            mid = fresh_name(model, f"{n.name}_codes")
            n.input[0], n.input[1] = xa, xb
            n.output[0] = mid
            cname = fresh_name(model, f"{n.name}_scale")
            set_const(model, cname, np.asarray(fa[0], dtype=np.float64))
            mul = helper.make_node("Mul", [mid, cname], [out], name=fresh_name(model, f"{n.name}_scale"))
            model.graph.node.insert(list(model.graph.node).index(n) + 1, mul)
            model.graph.node.remove(pa)
            model.graph.node.remove(pb)
            return model, True
        return model, False


class InferStreamingConcat(Transformation):
    """The channel concat of two integer code tensors (channels last) => StreamingConcat
    (SIMD = 1), output datatype the smallest holding both inputs' values."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if not is_stream_concat(model, n) or len(n.input) != 2:
                continue
            da, db = (model.get_tensor_datatype(i) for i in n.input)
            if not (da.is_integer() and db.is_integer()):
                continue
            if any(p is not None and p.op_type == "Transpose" for p in map(model.find_producer, n.input)):
                continue  # still NCHW: the layout passes move the concat to channels last first
            sa, sb = (list(model.get_tensor_shape(i)) for i in n.input)
            if _concat_axis(n) % len(sa) != len(sa) - 1:
                continue  # not (yet) the channels-last axis
            if sa[:-1] != sb[:-1]:
                raise unsupported(n, f"the two branches have shapes {sa} and {sb}; a channel concat needs equal "
                                     "batch and spatial dimensions", supported=CONCAT_SUPPORTED)
            if (da == DataType["BIPOLAR"]) != (db == DataType["BIPOLAR"]):
                raise unsupported(n, "a concat of a bipolar (-1/+1) and an integer branch; quantize both alike",
                                  supported=CONCAT_SUPPORTED)
            odt = union_datatype(da, db)
            node = make_hw_node("StreamingConcat", [n.input[0], n.input[1]], [n.output[0]],
                                fresh_name(model, "StreamingConcat"), ChannelsPerStream=[int(sa[-1]), int(sb[-1])],
                                SIMD=1, inputDataTypes=[da.name, db.name], outputDataType=odt.name,
                                numInputVectors=[int(v) for v in sa[:-1]])
            idx = list(model.graph.node).index(n)
            model.graph.node.insert(idx, node)
            model.graph.node.remove(n)
            model.set_tensor_datatype(node.output[0], odt)
            return model, True
        return model, False


def _show(s: np.ndarray) -> str:
    s = np.asarray(s).reshape(-1)
    return f"{s[0]:.6g}" if s.size == 1 or np.all(s == s[0]) else f"per-channel [{s[0]:.6g}, ...]"


class InferAddStreams(Transformation):
    """The add of two integer code tensors of one shape (channels last) => AddStreams (PE = 1),
    output datatype the exact range of the sum."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in JOIN_OPS or not is_stream_join(model, n):
                continue
            da, db = (model.get_tensor_datatype(i) for i in n.input)
            if not (da.is_integer() and db.is_integer()):
                continue
            if any(p is not None and p.op_type == "Transpose" for p in map(model.find_producer, n.input)):
                continue  # still NCHW: the layout passes move the add to channels last first
            sa, sb = (list(model.get_tensor_shape(i)) for i in n.input)
            if sa != sb:
                raise unsupported(n, f"the two branches have shapes {sa} and {sb}; the join adds streams of one "
                                     "shape (no broadcasting)", supported=["Add of two equally shaped branches"])
            if DataType["BIPOLAR"] in (da, db):
                raise unsupported(n, "a join of bipolar (-1/+1) branches; use >= 2-bit activations before the add",
                                  supported=["Add of two integer branches"])
            odt = sum_datatype(da, db)
            node = make_hw_node("AddStreams", [n.input[0], n.input[1]], [n.output[0]], fresh_name(model, "AddStreams"),
                                NumChannels=int(sa[-1]), PE=1, inputDataTypes=[da.name, db.name],
                                outputDataType=odt.name, numInputVectors=[int(v) for v in sa[:-1]])
            idx = list(model.graph.node).index(n)
            model.graph.node.insert(idx, node)
            model.graph.node.remove(n)
            model.set_tensor_datatype(node.output[0], odt)
            return model, True
        return model, False


def check_joins_lowered(model: ModelWrapper) -> ModelWrapper:
    """After streamlining every join is an AddStreams (every concat a StreamingConcat): name one
    that is not (one clear line)."""
    for n in model.graph.node:
        if n.domain != DOMAIN and is_stream_concat(model, n):
            producers = [model.find_producer(i) for i in n.input]
            if sum(p is not None and p.op_type == "Transpose" for p in producers) == 1:
                why = ("the two branches reach the concat in different layouts (only one comes back from NHWC "
                       "through a Transpose), e.g. a branch straight from the network input; start the "
                       "branches after a first conv/FC layer")
            else:
                why = ("the two branches of the concat do not both reach integer codes at one common scale "
                       "(a bias or an unquantized tensor before the concat); requantise both with one shared "
                       "QuantIdentity right before the concat")
            raise unsupported(n, why, supported=CONCAT_SUPPORTED)
        if n.domain != DOMAIN and is_stream_join(model, n):
            producers = [model.find_producer(i) for i in n.input]
            if n.op_type not in JOIN_OPS:
                why = (f"an elementwise {n.op_type} of two streams is not supported (only the residual Add of "
                       "two branches)")
            elif sum(p is not None and p.op_type == "Transpose" for p in producers) == 1:
                why = ("the two branches reach the join in different layouts (only one comes back from NHWC "
                       "through a Transpose), e.g. a skip connection straight from the network input; start "
                       "the residual block after a first conv/FC layer")
            else:
                why = ("the two branches of the join do not both reach integer codes at one common scale "
                       "(a bias or an unquantized tensor before the add); requantise both with one shared "
                       "QuantIdentity right before the add")
            raise unsupported(n, why, supported=["Add of two quantized branches at one common scale"])
    return model


class InsertDuplicateStreams(Transformation):
    """A HW tensor read by two or more HW nodes => a DuplicateStreams fork with two outputs
    (three readers: a fork feeding a fork, and so on)."""

    def apply(self, model: ModelWrapper):
        for prod in model.graph.node:
            for t in prod.output:
                readers = [r for r in model.find_consumers(t) or [] if r.domain == DOMAIN]
                if len(readers) < 2:
                    continue  # (the accelerator's input may be read by two HW nodes too)
                host = [r for r in model.find_consumers(t) or [] if r.domain != DOMAIN]
                if host and prod.domain == DOMAIN:
                    raise unsupported(host[0], f"reads {t}, a stream that also feeds hardware; a host node may "
                                               "only read the accelerator's output")
                dt = model.get_tensor_datatype(t)
                shape = list(model.get_tensor_shape(t))
                outs = [fresh_name(model, f"{t}_fork0"), fresh_name(model, f"{t}_fork1")]
                fork = make_hw_node("DuplicateStreams", [t], outs, fresh_name(model, "DuplicateStreams"),
                                    NumChannels=int(shape[-1]), PE=1, NumOutputStreams=2, inputDataType=dt.name,
                                    numInputVectors=[int(v) for v in shape[:-1]])
                for k, r in enumerate(readers):
                    dest = outs[0] if k == 0 else outs[1]
                    for i, v in enumerate(r.input):
                        if v == t:
                            r.input[i] = dest
                for o in outs:
                    model.set_tensor_datatype(o, dt)
                    model.set_tensor_shape(o, shape)
                model.graph.node.insert(list(model.graph.node).index(prod) + 1, fork)
                return model, True
        return model, False
