"""From quantizers to integers: weights, the input, activations (QONNX Quant -> MultiThreshold).

After these passes every tensor the accelerator will see is an integer tensor times a scale,
and the scales are explicit Mul nodes that the streamlining passes push into the thresholds.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.intquant import int_quant, max_int, min_int
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

from codesign.dataflow.transforms.branch import JOIN_OPS, check_concat, is_stream_join
from codesign.errors import UnsupportedError
from codesign.dataflow.transforms.util import (SUPPORTED_INPUT_OPS, add_const, channel_vector, const,
                                               fresh_name, host_pre_nodes, input_quant_node, insert_after,
                                               is_const, remove_node_bypass, single_consumer, unsupported)

log = logging.getLogger(__name__)

QUANT_OPS = ("Quant", "IntQuant")
QONNX_DOMAIN = "qonnx.custom_op.general"


def _attr(node, name, default=None):
    a = get_by_name(node.attribute, name)
    if a is None:
        return default
    v = helper.get_attribute_value(a)
    return v.decode() if isinstance(v, bytes) else v


def _same(a, b) -> bool:
    """Node identity by name (protobuf wrappers are not stable Python objects)."""
    return a is not None and b is not None and a.name == b.name and list(a.output) == list(b.output)


def _quant_params(model: ModelWrapper, node) -> dict:
    """Scale, zero point, bit width and flags of a Quant node (constant parameters only)."""
    params = [const(model, n) for n in node.input[1:4]]
    if any(p is None for p in params):
        raise unsupported(node, "quantizer scale/zero-point/bit-width must be constants")
    scale, zp, bw = params
    return {"scale": scale, "zeropt": zp, "bitwidth": int(np.asarray(bw).reshape(-1)[0]),
            "signed": int(_attr(node, "signed", 1)), "narrow": int(_attr(node, "narrow", 0)),
            "rounding_mode": _attr(node, "rounding_mode", "ROUND")}


def _is_bipolar_quant(model: ModelWrapper, node) -> bool:
    """BipolarQuant, or a signed 1-bit Quant (qonnx executes that as bipolar as well)."""
    if node.op_type == "BipolarQuant":
        return True
    bw = const(model, node.input[3]) if len(node.input) > 3 else None
    return bw is not None and int(np.asarray(bw).reshape(-1)[0]) == 1 and int(_attr(node, "signed", 1)) == 1


class CheckSupportedOps(Transformation):
    """Refuse, before touching anything, a graph with an op the lowering cannot handle."""

    def apply(self, model: ModelWrapper):
        if len(model.graph.input) != 1 or len(model.graph.output) != 1:
            raise unsupported(model.graph.node[0] if model.graph.node else helper.make_node("Graph", [], []),
                              f"the model must have one input and one output, found "
                              f"{len(model.graph.input)} and {len(model.graph.output)}")
        for n in model.graph.node:
            if n.op_type not in SUPPORTED_INPUT_OPS:
                raise unsupported(n, "op type not supported by the dataflow lowering")
            if is_stream_join(model, n) and n.op_type not in JOIN_OPS:
                raise unsupported(n, f"an elementwise {n.op_type} of two streams is not supported: a branching "
                                     "graph joins its branches by an Add (a residual block)",
                                  supported=["Add of two branches"])
            if n.op_type == "Concat":
                check_concat(model, n)
        if input_quant_node(model) is None:
            raise unsupported(model.graph.node[0], "no input quantizer (Quant on the graph input) found: "
                              "the accelerator needs an integer input")
        return model, False


class RemoveIdentity(Transformation):
    """Drop Identity nodes (Dropout leftovers)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type == "Identity":
                remove_node_bypass(model, n)
                return model, True
        return model, False


class GemmToMatMul(Transformation):
    """Gemm(A, B, C) (how Brevitas exports a biased QuantLinear) -> MatMul(A, B') + Add(C).

    With ``transB`` the weight (or the constant input of its quantizer, and any 2-D
    per-channel scale) is transposed to (in, out), the MatMul layout of the rest of the flow."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "Gemm":
                continue
            if float(_attr(n, "alpha", 1.0)) != 1.0 or float(_attr(n, "beta", 1.0)) != 1.0 or \
                    int(_attr(n, "transA", 0)) != 0:
                raise unsupported(n, "only Gemm with alpha = beta = 1 and transA = 0 is supported")
            if int(_attr(n, "transB", 0)):
                b = n.input[1]
                w = const(model, b)
                prod = model.find_producer(b)
                if w is not None:
                    model.set_initializer(b, w.T.copy())
                elif prod is not None and prod.op_type in QUANT_OPS + ("BipolarQuant",) and \
                        all(is_const(model, i) for i in prod.input) and len(model.find_consumers(b)) == 1:
                    for i in prod.input[:3]:
                        v = const(model, i)
                        if v.ndim == 2:
                            model.set_initializer(i, v.T.copy())
                else:
                    raise unsupported(n, "Gemm weights must be a constant or a quantizer of a constant")
            for a in list(n.attribute):
                n.attribute.remove(a)
            bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
            n.op_type = "MatMul"
            if bias is not None:
                c = const(model, bias)
                if c is None:
                    raise unsupported(n, "the Gemm bias must be a constant")
                del n.input[2]
                insert_after(model, n, "Add", c.reshape(1, -1) if c.size > 1 else c, "GemmBias")
            return model, True
        return model, False


class ConvertInputQuantToInteger(Transformation):
    """Make the input quantizer emit integers: ``Div(s) -> Quant(scale 1) -> Mul(s)``.

    ``Quant(x, s)`` computes ``round(x / s) * s``; dividing first and quantizing with scale 1
    performs the very same float operations, so the integer (the accelerator's input) is
    bit-identical, and the Mul(s) carries the scale on into the network where streamlining
    absorbs it. A BipolarQuant only needs its scale set to 1 (sign(x/s) = sign(x) for s > 0).
    """

    def apply(self, model: ModelWrapper):
        q = input_quant_node(model)
        if q is None:
            return model, False
        if _is_bipolar_quant(model, q):
            s = const(model, q.input[1])
            if s is None or s.size != 1 or float(s.reshape(())) <= 0:
                raise unsupported(q, "input BipolarQuant needs a positive scalar scale")
            if float(s.reshape(())) == 1.0:
                return model, False
            model.set_initializer(q.input[1], np.ones_like(s, dtype=np.float32))
            insert_after(model, q, "Mul", s.astype(np.float32), "InputScale")
            model.set_tensor_datatype(q.output[0], DataType["BIPOLAR"])
            return model, True
        p = _quant_params(model, q)
        s, z = p["scale"], p["zeropt"]
        if s.size != 1:
            raise unsupported(q, "the input quantizer must have a per-tensor (scalar) scale")
        if np.any(z != 0):
            raise unsupported(q, "the input quantizer must have zero point 0")
        if float(s.reshape(())) == 1.0:
            return model, False
        if float(s.reshape(())) <= 0:
            raise unsupported(q, "the input quantizer scale must be positive")
        div_out = fresh_name(model, "input_div_out")
        div = helper.make_node("Div", [q.input[0], add_const(model, "input_div_param", s)], [div_out],
                               name=fresh_name(model, "InputDiv"))
        idx = list(model.graph.node).index(q)
        model.graph.node.insert(idx, div)
        q.input[0] = div_out
        model.set_initializer(q.input[1], np.ones_like(s, dtype=np.float32))
        insert_after(model, q, "Mul", s.astype(np.float32), "InputScale")
        return model, True


def _weight_consumer(model: ModelWrapper, node):
    """(consumer, input index) if ``node``'s output feeds MatMul/Conv weights, else None."""
    consumers = model.find_consumers(node.output[0]) or []
    if len(consumers) == 1 and consumers[0].op_type in ("MatMul", "Conv") and \
            consumers[0].input[1] == node.output[0]:
        return consumers[0]
    return None


class FoldConstantQuant(Transformation):
    """Replace a quantizer of a constant that is not a MatMul/Conv weight (e.g. a bias) by its
    float value: the host or the thresholds absorb it like any other constant."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in QUANT_OPS + ("BipolarQuant",):
                continue
            if not all(is_const(model, i) for i in n.input) or _weight_consumer(model, n) is not None:
                continue
            if n.op_type == "BipolarQuant":
                val = binary_quant(const(model, n.input[0]), const(model, n.input[1]))
            else:
                p = _quant_params(model, n)
                val = int_quant(const(model, n.input[0]), p["scale"], p["zeropt"], np.float32(p["bitwidth"]),
                                p["signed"], p["narrow"], p["rounding_mode"])
            model.set_initializer(n.output[0], np.asarray(val, dtype=np.float32))
            model.graph.node.remove(n)
            return model, True
        return model, False


class ExtractConvBias(Transformation):
    """Conv(x, W, b) -> Add(Conv(x, W), b): the bias must stay outside the integer weights."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type == "Conv" and len(n.input) == 3 and n.input[2]:
                b = const(model, n.input[2])
                if b is None:
                    raise unsupported(n, "the conv bias must be a constant")
                del n.input[2]
                insert_after(model, n, "Add", b.reshape(1, -1, 1, 1), "ConvBias")
                return model, True
        return model, False


class ConvertWeightQuantToInteger(Transformation):
    """Weight quantizer -> integer initializer (datatype annotated) and a Mul(scale) after the
    MatMul/Conv. Per-output-channel scales become a channel-wise Mul; zero points are refused."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in QUANT_OPS + ("BipolarQuant",):
                continue
            consumer = _weight_consumer(model, n)
            if consumer is None or not all(is_const(model, i) for i in n.input):
                continue
            w = const(model, n.input[0]).astype(np.float32)
            if _is_bipolar_quant(model, n):
                s = const(model, n.input[1])
                wint = np.where(w / s >= 0, 1.0, -1.0)
                dt = DataType["BIPOLAR"]
            else:
                p = _quant_params(model, n)
                s = p["scale"]
                if np.any(p["zeropt"] != 0):
                    raise unsupported(n, "weight quantizers with a non-zero zero point are not supported")
                q = int_quant(w, s, p["zeropt"], np.float32(p["bitwidth"]), p["signed"], p["narrow"], p["rounding_mode"])
                wint = np.round(q / s)
                b = p["bitwidth"]
                dt = DataType[f"INT{b}"] if p["signed"] else DataType[f"UINT{b}"]
                lo, hi = min_int(p["signed"], p["narrow"], b), max_int(p["signed"], p["narrow"], b)
                if wint.min() < lo or wint.max() > hi:
                    raise unsupported(n, f"integer weights out of the {b}-bit range")
            s = np.asarray(s, dtype=np.float32)
            # the scale must be constant along the reduction axes of the consumer
            if consumer.op_type == "MatMul":
                if w.ndim != 2:
                    raise unsupported(consumer, "MatMul weights must be 2-D")
                if s.size > 1:
                    sb = np.broadcast_to(s, w.shape)
                    svec = sb[0]
                    if not np.array_equal(sb, np.broadcast_to(svec, w.shape)):
                        raise unsupported(n, "weight scale must be per-tensor or per output column")
                mul_c = s.reshape(()) if s.size == 1 else svec.reshape(1, -1)
            else:
                if s.size == 1:
                    mul_c = s.reshape(())
                else:
                    sb = np.broadcast_to(s, w.shape)
                    svec = sb.reshape(w.shape[0], -1)[:, 0]
                    if not np.array_equal(sb, np.broadcast_to(svec.reshape(-1, 1, 1, 1), w.shape)):
                        raise unsupported(n, "conv weight scale must be per-tensor or per output channel")
                    mul_c = svec.reshape(1, -1, 1, 1)
            wname = consumer.input[1]
            model.set_initializer(wname, wint.astype(np.float32))
            model.set_tensor_datatype(wname, dt)
            model.graph.node.remove(n)
            insert_after(model, consumer, "Mul", np.asarray(mul_c, dtype=np.float32), "WeightScale")
            return model, True
        return model, False


class ConvertSubDivToAddMul(Transformation):
    """Sub(x, c) -> Add(x, -c) and Div(x, c) -> Mul(x, 1/c) after the input quantizer, so that
    streamlining only meets Add and Mul (host pre-nodes are left exactly as exported)."""

    def apply(self, model: ModelWrapper):
        host = host_pre_nodes(model)
        for n in model.graph.node:
            if n.name in host or n.op_type not in ("Sub", "Div"):
                continue
            c = const(model, n.input[1])
            if c is None or is_const(model, n.input[0]):
                continue
            if n.op_type == "Sub":
                n.op_type = "Add"
                n.input[1] = add_const(model, "neg", -c)
            else:
                if np.any(c == 0):
                    raise unsupported(n, "division by zero")
                n.op_type = "Mul"
                n.input[1] = add_const(model, "recip", (1.0 / c.astype(np.float64)).astype(np.float32))
            return model, True
        return model, False


class BatchNormToAffine(Transformation):
    """BatchNormalization (inference) -> channel-wise Mul(a) and Add(b)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "BatchNormalization":
                continue
            vals = [const(model, i) for i in n.input[1:5]]
            if any(v is None for v in vals):
                raise unsupported(n, "BatchNormalization parameters must be constants")
            gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in vals)
            eps = float(_attr(n, "epsilon", 1e-5))
            a = gamma / np.sqrt(var + eps)
            b = beta - mean * a
            shape = model.get_tensor_shape(n.input[0])
            cshape = [1, -1] + [1] * (len(shape) - 2)
            mul_out = fresh_name(model, "bn_mul_out")
            mul = helper.make_node("Mul", [n.input[0], add_const(model, "bn_a", a.reshape(cshape))], [mul_out],
                                   name=f"{n.name}_scale")
            add = helper.make_node("Add", [mul_out, add_const(model, "bn_b", b.reshape(cshape))], [n.output[0]],
                                   name=f"{n.name}_shift")
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            model.graph.node.insert(idx, add)
            model.graph.node.insert(idx, mul)
            return model, True
        return model, False


#: MultiThreshold attribute listing, per threshold column, whether the comparison is strict
#: (``x > t``): the column's tie rounds down. The float64 threshold stored for a strict column is
#: ``nextafter(t, +inf)``, so ``x >= stored`` (what MultiThreshold executes) is ``x > t`` for every
#: float ``x``; streamlining recomputes from ``t`` and re-nudges, and ``ceil`` of the stored value
#: is the exact integer threshold (``floor(t) + 1``) once the input is an integer.
STRICT_ATTR = "codesign_strict"


def rounding_steps(qmin: int, qmax: int, rounding_mode: str, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Where a quantizer's integer output steps up, in units of its scale, and how ties go.

    For k = qmin+1 .. qmax: ``round(u) >= k  <=>  u >= b_k`` (``strict_k`` False) or ``u > b_k``
    (``strict_k`` True), with ``round`` the very function qonnx's Quant applies for
    ``rounding_mode`` (ROUND/HALF_EVEN, CEIL, FLOOR, UP, DOWN, HALF_UP, HALF_DOWN). The step of a
    monotone integer rounding lies on an integer or a half-integer, so it is found by evaluating
    that function there and a quarter step either side: no mode is re-implemented by hand, and a
    mode whose steps lie elsewhere is refused.
    """
    from qonnx.custom_op.general.intquant import resolve_rounding_mode

    try:
        fn = resolve_rounding_mode(str(rounding_mode))
    except Exception as e:  # noqa: BLE001 - qonnx raises a bare ValueError for unknown modes
        raise UnsupportedError(f"{where}rounding mode {rounding_mode!r} is not supported ({e})") from e
    ks = np.arange(qmin + 1, qmax + 1, dtype=np.float64)
    bounds = np.full(ks.shape, np.nan)
    strict = np.zeros(ks.shape, dtype=bool)
    for off in (-1.0, -0.5, 0.0):  # candidate step positions k-1, k-1/2, k
        c = ks + off
        below, at, above = fn(c - 0.25), fn(c), fn(c + 0.25)
        hit = np.isnan(bounds) & (below < ks) & (above >= ks)
        bounds[hit] = c[hit]
        strict[hit] = at[hit] < ks[hit]
    if np.any(np.isnan(bounds)):
        raise UnsupportedError(f"{where}rounding mode {rounding_mode!r} does not step on integers or "
                               "half-integers; it cannot be turned into thresholds")
    return bounds, strict


def quant_thresholds(qmin: int, qmax: int, scale: float, rounding_mode: str = "ROUND",
                     where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Thresholds of a quantizer, ties included: output >= k iff x >= t_k (or x > t_k, strict).

    Returns ``(T, strict)``: T of shape (1, qmax - qmin) in float64 with strict columns stored as
    ``nextafter(t, +inf)`` (see ``STRICT_ATTR``), and the per-column strict flags; ``qmin +
    #{x >= T}`` is then the integer code. ROUND (half to even) makes the step to an odd k strict:
    x = (k - 1/2) * s rounds down to the even k - 1.
    """
    bounds, strict = rounding_steps(qmin, qmax, rounding_mode, where)
    T = bounds * float(scale)
    return nudge(T, strict).reshape(1, -1), strict


def nudge(T: np.ndarray, strict: np.ndarray) -> np.ndarray:
    """Exact thresholds -> stored ones: strict columns (last axis) move to the next float64 up."""
    T = np.asarray(T, dtype=np.float64)
    return np.where(np.broadcast_to(strict, T.shape), np.nextafter(T, np.inf), T)


def unnudge(T: np.ndarray, strict: np.ndarray) -> np.ndarray:
    """Stored thresholds -> exact ones (inverse of ``nudge``)."""
    T = np.asarray(T, dtype=np.float64)
    return np.where(np.broadcast_to(strict, T.shape), np.nextafter(T, -np.inf), T)


def strict_columns(node, n_cols: int) -> np.ndarray:
    """The per-column strict flags of a MultiThreshold (all False when it has none)."""
    flags = _attr(node, STRICT_ATTR, None)
    if flags is None:
        return np.zeros(n_cols, dtype=bool)
    flags = np.asarray(list(flags), dtype=bool)
    if flags.size != n_cols:
        raise UnsupportedError(f"node '{node.name}': {flags.size} strictness flags for {n_cols} thresholds")
    return flags


class ConvertQuantActToMultiThreshold(Transformation):
    """Activation quantizer -> MultiThreshold (integer codes) followed by Mul(scale).

    - Quant (zero point 0, scalar scale, any qonnx rounding mode): 2^b - 1 (unsigned) thresholds,
      or the signed ladder with ``out_bias = qmin``; a Relu directly before it only raises qmin to
      0. Ties follow the rounding mode exactly (``quant_thresholds``): with power-of-two scales a
      pre-activation lands on a half step often, and ROUND sends it to the even neighbour.
    - BipolarQuant: one threshold at 0, ``out_scale 2, out_bias -1`` (tensor holds -1/+1).
    """

    def apply(self, model: ModelWrapper):
        inq = input_quant_node(model)
        for n in model.graph.node:
            if n.op_type not in QUANT_OPS + ("BipolarQuant",) or _same(n, inq):
                continue
            if is_const(model, n.input[0]):
                continue
            x = n.input[0]
            shape = model.get_tensor_shape(x)
            layout = {2: "NC", 4: "NCHW"}.get(len(shape))
            if layout is None:
                raise unsupported(n, f"activation tensors must be 2-D or 4-D, got shape {shape}")
            prod = model.find_producer(x)
            if _is_bipolar_quant(model, n):
                s = const(model, n.input[1])
                if s is None or s.size != 1 or float(s.reshape(())) <= 0:
                    raise unsupported(n, "BipolarQuant activations need a positive scalar scale")
                T = np.zeros((1, 1))
                attrs = dict(out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0)
                scale = float(s.reshape(()))
            else:
                p = _quant_params(model, n)
                if p["scale"].size != 1:
                    raise unsupported(n, "activation quantizers need a per-tensor (scalar) scale")
                if np.any(p["zeropt"] != 0):
                    raise unsupported(n, "activation quantizers with a zero point are not supported")
                scale = float(p["scale"].reshape(()))
                if scale <= 0:
                    raise unsupported(n, "activation scale must be positive")
                b, signed, narrow = p["bitwidth"], p["signed"], p["narrow"]
                qmin, qmax = min_int(signed, narrow, b), max_int(signed, narrow, b)
                if prod is not None and prod.op_type == "Relu" and _same(single_consumer(model, x), n):
                    qmin = max(qmin, 0)
                    x = prod.input[0]
                    model.graph.node.remove(prod)
                T, strict = quant_thresholds(qmin, qmax, scale, p["rounding_mode"], f"node '{n.name}': ")
                dt = f"INT{b}" if signed else f"UINT{b}"
                attrs = dict(out_dtype=dt, out_bias=float(qmin))
                if np.any(strict):
                    attrs[STRICT_ATTR] = [int(v) for v in strict]
            log.debug("%s: %s -> MultiThreshold with %d steps", n.name, n.op_type, T.shape[1])
            tname = add_const(model, "thresholds", T)
            model.set_initializer(tname, T.astype(np.float64))
            mt_out = fresh_name(model, "mt_out")
            mt = helper.make_node("MultiThreshold", [x, tname], [mt_out], domain=QONNX_DOMAIN,
                                  name=fresh_name(model, "MultiThreshold"), data_layout=layout, **attrs)
            mul = helper.make_node("Mul", [mt_out, add_const(model, "act_scale", np.float32(scale))],
                                   [n.output[0]], name=fresh_name(model, "ActScale"))
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            model.graph.node.insert(idx, mul)
            model.graph.node.insert(idx, mt)
            return model, True
        return model, False
