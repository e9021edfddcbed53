"""Streamlining: push scales and biases down the graph and absorb them into thresholds.

After these passes the chain between the input quantizer and the final scale holds only
integer ops: MatMul with integer weights, MultiThreshold with integer thresholds, and the
data-movement HW ops. The arithmetic is done in float64 and the thresholds are rounded up
(ceil) only at the end, once their input is known to be an integer accumulator, so the
rounding is exact: for integer x, ``x >= t  <=>  x >= ceil(t)``.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from codesign.dataflow.transforms.quant import STRICT_ATTR, _attr, nudge, strict_columns, unnudge
from codesign.dataflow.transforms.util import (acc_range, add_const, channel_vector, const, const_input,
                                               fresh_name, int_range, single_consumer, unsupported)

log = logging.getLogger(__name__)

#: ops through which a positive scalar Mul commutes (they are linear / order-preserving)
_SCALAR_COMMUTERS = ("MatMul", "Transpose", "Flatten", "Reshape", "SlidingWindow", "FMPadding",
                     "StreamingMaxPool", "MaxPool", "WindowMax")
_ORDER_BASED = ("StreamingMaxPool", "MaxPool", "WindowMax")


def _mt_channel_axis(model: ModelWrapper, mt) -> int:
    layout = _attr(mt, "data_layout", "")
    rank = len(model.get_tensor_shape(mt.input[0]))
    if not layout:
        layout = {2: "NC", 4: "NCHW"}.get(rank, "NC")
    return layout.index("C") - len(layout) if "C" in layout else 1


def _swap_after(model: ModelWrapper, first, second, first_dyn: int) -> None:
    """Rewire ``x -> first -> second -> y`` into ``x -> second -> first -> y``.

    ``first`` is a single-dynamic-input elementwise node (input index ``first_dyn``) and
    ``second`` consumes its output at some input."""
    x = first.input[first_dyn]
    y = second.output[0]
    mid = fresh_name(model, "swapped")
    for i, v in enumerate(second.input):
        if v == first.output[0]:
            second.input[i] = x
    second.output[0] = mid
    first.input[first_dyn] = mid
    first.output[0] = y
    nodes = list(model.graph.node)
    model.graph.node.remove(first)
    model.graph.node.insert(nodes.index(second), first)


class MoveScalarMulPastLinear(Transformation):
    """Mul(x, c) -> L  =>  L -> Mul(c) for a scalar c and linear L (MatMul on its data input,
    layout ops, padding, im2col); a positive c also passes max-pooling. A channel-wise Add or
    positive channel-wise Mul passes a StreamingMaxPool too (max commutes with them)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in ("Mul", "Add"):
                continue
            ci = const_input(model, n)
            if ci is None:
                continue
            dyn, c = ci
            nxt = single_consumer(model, n.output[0])
            if nxt is None or nxt.op_type not in _SCALAR_COMMUTERS or nxt.input[0] != n.output[0]:
                continue
            if nxt.op_type == "MatMul" and const(model, nxt.input[1]) is None:
                continue
            if nxt.op_type in _ORDER_BASED:
                if nxt.op_type == "MaxPool" and c.size != 1:
                    continue
                if nxt.op_type in ("StreamingMaxPool", "WindowMax") and c.size != 1 and \
                        channel_vector(c, model.get_tensor_shape(n.output[0]), -1) is None:
                    continue
                if n.op_type == "Mul" and np.any(c <= 0):
                    continue
            elif n.op_type == "Add" or c.size != 1:
                continue
            elif nxt.op_type == "FMPadding" and _attr(nxt, "PadValue", "zero") in ("min", b"min") and np.any(c <= 0):
                continue  # padding with the minimum (a max pool's border) commutes with a positive scale only
            _swap_after(model, n, nxt, dyn)
            return model, True
        return model, False


class MoveAddPastMul(Transformation):
    """Add(x, b) -> Mul(a)  =>  Mul(x, a) -> Add(a*b): biases gather after the scales."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "Add" or const_input(model, n) is None:
                continue
            m = single_consumer(model, n.output[0])
            if m is None or m.op_type != "Mul" or const_input(model, m) is None:
                continue
            dyn, b = const_input(model, n)
            mdyn, a = const_input(model, m)
            ab = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
            n.input[1 - dyn] = add_const(model, "moved_bias", ab)
            _swap_after(model, n, m, dyn)
            return model, True
        return model, False


class CollapseConsecutiveMulAdd(Transformation):
    """Mul(a) -> Mul(b) => Mul(a*b); Add(a) -> Add(b) => Add(a+b)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in ("Mul", "Add") or const_input(model, n) is None:
                continue
            m = single_consumer(model, n.output[0])
            if m is None or m.op_type != n.op_type or const_input(model, m) is None:
                continue
            dyn, a = const_input(model, n)
            _, b = const_input(model, m)
            a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            val = a64 * b64 if n.op_type == "Mul" else a64 + b64
            if val.ndim and val.size == 1:
                val = val.reshape(())
            m_in = [i for i, v in enumerate(m.input) if v == n.output[0]][0]
            m.input[m_in] = n.input[dyn]
            m.input[1 - m_in] = add_const(model, "collapsed", val)
            model.graph.node.remove(n)
            return model, True
        return model, False


def _feeds_threshold(model: ModelWrapper, node) -> bool:
    nxt = single_consumer(model, node.output[0])
    if nxt is not None and nxt.op_type == "Add" and const_input(model, nxt) is not None:
        nxt = single_consumer(model, nxt.output[0])
    return nxt is not None and nxt.op_type == "MultiThreshold"


def _negatable(W: np.ndarray, dt: DataType) -> bool:
    if dt == DataType["BIPOLAR"]:
        return True
    if not dt.is_integer():
        return False
    lo, hi = int_range(dt)
    return bool(np.all(-W >= lo) and np.all(-W <= hi))


class FlipNegativeChannelScales(Transformation):
    """MatMul(W) -> Mul(a) with some a_c < 0, on the way to a threshold: negate W's column c and
    a_c, so every threshold divisor is positive (x*a >= t  <=>  (-x)*(-a) >= t)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "MatMul":
                continue
            W = const(model, n.input[1])
            m = single_consumer(model, n.output[0])
            if W is None or m is None or m.op_type != "Mul" or const_input(model, m) is None:
                continue
            dyn, a = const_input(model, m)
            shape = model.get_tensor_shape(m.output[0])
            avec = channel_vector(a, shape, -1)
            if avec is None or not np.any(avec < 0) or not _feeds_threshold(model, m):
                continue
            neg = avec < 0
            wdt = model.get_tensor_datatype(n.input[1])
            if not _negatable(W[:, neg], wdt):
                raise unsupported(m, f"negative channel scale after a MatMul whose {wdt.name} weights "
                                     "cannot be negated exactly")
            log.debug("%s: negating %d weight columns for negative channel scales", n.name, int(neg.sum()))
            W2 = W.copy()
            W2[:, neg] *= -1
            n.input[1] = add_const(model, "flipped_w", W2, wdt)
            a2 = avec.copy()
            a2[neg] *= -1
            m.input[1 - dyn] = add_const(model, "flipped_scale", a2.reshape(1, -1))
            return model, True
        return model, False


def _threshold_matrix(model: ModelWrapper, mt, nch: int) -> np.ndarray:
    T = np.asarray(const(model, mt.input[1]), dtype=np.float64)
    if T.shape[0] == 1 and nch != 1:
        T = np.broadcast_to(T, (nch, T.shape[1])).copy()
    return T


def _absorb_into_threshold(model: ModelWrapper, op_type: str, what: str,
                           rewrite: Callable[[np.ndarray, np.ndarray], np.ndarray | None]):
    """One step of absorbing a constant `op_type` (Add/Mul) that feeds a MultiThreshold into the
    thresholds: `rewrite(T, per-channel constant)` returns the new exact thresholds, or None to
    leave this node for another pass. Shared by the Add and Mul absorptions, which differ only
    there. Strict columns (ties that round down, ``STRICT_ATTR``) are rewritten from their exact
    value and nudged again, so ``x > t`` stays ``x > t'`` and not ``x >= t'``."""
    for n in model.graph.node:
        if n.op_type != op_type or const_input(model, n) is None:
            continue
        mt = single_consumer(model, n.output[0])
        if mt is None or mt.op_type != "MultiThreshold" or mt.input[0] != n.output[0]:
            continue
        dyn, c = const_input(model, n)
        shape = model.get_tensor_shape(n.output[0])
        ax = _mt_channel_axis(model, mt)
        vec = channel_vector(c, shape, ax)
        if vec is None:
            raise unsupported(n, f"only scalar or channel-wise {what} can be absorbed into thresholds")
        stored = _threshold_matrix(model, mt, shape[ax])
        strict = strict_columns(mt, stored.shape[1])
        T2 = rewrite(unnudge(stored, strict), vec, stored)
        if T2 is None:
            continue
        tname = fresh_name(model, "thresholds")
        model.set_initializer(tname, nudge(T2, strict))
        mt.input[1] = tname
        mt.input[0] = n.input[dyn]
        model.graph.node.remove(n)
        return model, True
    return model, False


class AbsorbAddIntoMultiThreshold(Transformation):
    """Add(x, b) -> MultiThreshold(T)  =>  MultiThreshold(x, T - b)."""

    def apply(self, model: ModelWrapper):
        return _absorb_into_threshold(model, "Add", "biases", lambda T, b, _stored: T - b[:, None])


_HUGE = 2.0 ** 60


def _divide_thresholds(T: np.ndarray, a: np.ndarray, stored: np.ndarray) -> np.ndarray | None:
    if np.any(a < 0):
        return None  # FlipNegativeChannelScales first; check_streamlined reports leftovers
    with np.errstate(divide="ignore", invalid="ignore"):
        T2 = T / a[:, None]
    zero = a == 0
    if np.any(zero):
        # 0 >= stored holds for every input iff stored <= 0 (the stored value carries strictness)
        T2[zero] = np.where(stored[zero] <= 0, -_HUGE, _HUGE)
    return T2


class AbsorbMulIntoMultiThreshold(Transformation):
    """Mul(x, a) -> MultiThreshold(T)  =>  MultiThreshold(x, T / a) for a > 0. A zero scale makes
    the channel constant (thresholds at -/+infinity, clipped later); a negative one must have
    been flipped into the weights (FlipNegativeChannelScales), else it is refused."""

    def apply(self, model: ModelWrapper):
        return _absorb_into_threshold(model, "Mul", "scales", _divide_thresholds)


def threshold_input_range(model: ModelWrapper, mt) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel integer range of a MultiThreshold's input, or None if not (yet) integer."""
    x = mt.input[0]
    prod = model.find_producer(x)
    nch = model.get_tensor_shape(x)[_mt_channel_axis(model, mt)]
    if prod is not None and prod.op_type == "MatMul":
        W = const(model, prod.input[1])
        idt = model.get_tensor_datatype(prod.input[0])
        wdt = model.get_tensor_datatype(prod.input[1])
        if W is None or not idt.is_integer() or not wdt.is_integer():
            return None
        return acc_range(W, idt)
    dt = model.get_tensor_datatype(x)
    if not dt.is_integer():
        return None
    lo, hi = int_range(dt)
    return np.full(nch, float(lo)), np.full(nch, float(hi))


class RoundAndClipThresholds(Transformation):
    """For an integer threshold input: T = ceil(T) (exact for integers), clipped per channel to
    [min, max + 1] of the input's range (a threshold outside never/always fires either way).

    A strict column (``x > t``, a tie that rounds down) is stored as ``nextafter(t, +inf)``, whose
    ceil is ``floor(t) + 1``: on the integer grid the strict comparison is the threshold + 1 when
    t is an integer and the plain one otherwise. The flags are then dropped: integer thresholds
    compared with ``>=`` are the whole contract from here on."""

    def apply(self, model: ModelWrapper):
        for mt in model.graph.node:
            if mt.op_type != "MultiThreshold":
                continue
            rng = threshold_input_range(model, mt)
            if rng is None:
                continue
            lo, hi = rng
            T = _threshold_matrix(model, mt, len(lo))
            T2 = np.clip(np.ceil(T), lo[:, None], hi[:, None] + 1)
            T2 = np.sort(T2, axis=1)
            if np.max(np.abs(T2)) >= 2 ** 24:
                raise unsupported(mt, "thresholds beyond 2^24 cannot be held exactly in float32")
            cur = np.asarray(const(model, mt.input[1]))
            if cur.dtype == np.float32 and cur.shape == T2.shape and np.array_equal(cur, T2):
                continue
            tname = fresh_name(model, "thresholds_int")
            model.set_initializer(tname, T2.astype(np.float32))
            mt.input[1] = tname
            for a in list(mt.attribute):
                if a.name == STRICT_ATTR:
                    mt.attribute.remove(a)
            return model, True
        return model, False


def check_streamlined(model: ModelWrapper) -> ModelWrapper:
    """After streamlining no Mul/Add may feed a threshold: name the one that could not be absorbed."""
    for mt in model.graph.node:
        if mt.op_type != "MultiThreshold":
            continue
        prod = model.find_producer(mt.input[0])
        if prod is None or prod.op_type not in ("Mul", "Add"):
            continue
        ci = const_input(model, prod)
        if prod.op_type == "Mul" and ci is not None and np.any(np.asarray(ci[1]) < 0):
            why = ("a negative scale before a threshold can only be absorbed when it directly follows a "
                   "MatMul/Conv whose weights can be negated exactly")
        else:
            why = "could not be absorbed into the following threshold"
        raise unsupported(prod, why)
    return model
