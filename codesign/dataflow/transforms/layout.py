"""NCHW -> NHWC: conv and max-pool become streaming ops, and the transposes melt away.

Each conv/pool is replaced by NHWC HW ops between a Transpose(NCHW->NHWC) and a
Transpose(NHWC->NCHW); the passes below then push transposes down past channel-wise ops,
cancel inverse pairs and fold the last one into the first FC layer's weight rows.
"""

from __future__ import annotations

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from codesign.dataflow.ops.base import make_hw_node
from codesign.dataflow.transforms.quant import _attr
from codesign.dataflow.transforms.util import (add_const, const, const_input, fresh_name, single_consumer,
                                               unsupported)

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def _transpose(model: ModelWrapper, inp: str, out: str, perm: list[int], hint: str):
    return helper.make_node("Transpose", [inp], [out], perm=perm, name=fresh_name(model, hint))


def _perm(node) -> list[int]:
    return [int(v) for v in _attr(node, "perm", [])]


class LowerConvToSlidingWindow(Transformation):
    """Conv (NCHW) -> Transpose, [FMPadding], SlidingWindow, MatMul, Transpose back (a pointwise
    1x1 stride-1 unpadded conv needs no window: the MatMul reads the NHWC map, as in FINN).

    The weight (Cout, Cin, kh, kw) is re-laid out to (kh*kw*Cin, Cout) with c innermost, the
    sliding window's element order.
    """

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "Conv":
                continue
            W = const(model, n.input[1])
            if W is None:
                raise unsupported(n, "conv weights must be constant")
            if W.ndim != 4:
                raise unsupported(n, "only 2-D convolution is supported")
            cout, cin, kh, kw = W.shape
            _, c, h, w = model.get_tensor_shape(n.input[0])
            group = int(_attr(n, "group", 1))
            depthwise = group != 1 and group == c and cin == 1 and cout == c
            if group < 1 or c % group or cout % group or cin * group != c:
                raise unsupported(n, f"convolution with group={group} does not divide its channels {c} and "
                                     f"outputs {cout} (weights of {cin} inputs per group)")
            pads = [int(v) for v in _attr(n, "pads", [0, 0, 0, 0])]
            strides = [int(v) for v in _attr(n, "strides", [1, 1])]
            dil = [int(v) for v in _attr(n, "dilations", [1, 1])]
            if _attr(n, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
                raise unsupported(n, "conv auto_pad is not supported (export explicit pads)")
            wdt = model.get_tensor_datatype(n.input[1])
            nodes = []
            cur = fresh_name(model, "nhwc")
            nodes.append(_transpose(model, n.input[0], cur, TO_NHWC, "ConvInTranspose"))
            hp, wp = h, w
            if any(pads):
                top, left, bottom, right = pads
                nxt = fresh_name(model, "padded")
                nodes.append(make_hw_node("FMPadding", [cur], [nxt], fresh_name(model, "FMPadding"),
                                          ImgDim=[h, w], Padding=[top, left, bottom, right], NumChannels=c,
                                          SIMD=1, inputDataType="FLOAT32"))
                cur, hp, wp = nxt, h + top + bottom, w + left + right
            oh = (hp - dil[0] * (kh - 1) - 1) // strides[0] + 1
            ow = (wp - dil[1] * (kw - 1) - 1) // strides[1] + 1
            if (kh, kw) == (1, 1) and strides == [1, 1] and not any(pads) and not depthwise:
                nxt = cur  # pointwise: the NHWC stream already is the window stream (no line buffer)
            else:
                nxt = fresh_name(model, "im2col")
                nodes.append(make_hw_node("SlidingWindow", [cur], [nxt], fresh_name(model, "SlidingWindow"),
                                          ConvKernelDim=[kh, kw], IFMChannels=c, IFMDim=[hp, wp], OFMDim=[oh, ow],
                                          SIMD=1, Stride=strides, Dilation=dil, inputDataType="FLOAT32",
                                          outputDataType="FLOAT32"))
            if depthwise:  # (kh*kw*C, C) block of diagonals: the depthwise unit's tag and shape
                W2 = depthwise_matrix(W[:, 0].transpose(1, 2, 0).reshape(kh * kw, c))
            else:
                W2 = grouped_matrix(W, group)
            wname = add_const(model, "conv_w", W2, wdt)
            mm_out = fresh_name(model, "conv_mm")
            nodes.append(helper.make_node("MatMul", [nxt, wname], [mm_out],
                                          name=fresh_name(model, DEPTHWISE_TAG if depthwise else "ConvMatMul")))
            nodes.append(_transpose(model, mm_out, n.output[0], TO_NCHW, "ConvOutTranspose"))
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            for k, new in enumerate(nodes):
                model.graph.node.insert(idx + k, new)
            return model, True
        return model, False


#: name prefix of the MatMul a depthwise conv or an average pool lowers to (the depthwise unit's
#: inference takes exactly these, after checking the weight structure)
DEPTHWISE_TAG = "DepthwiseMatMul"


def depthwise_matrix(Wkc: np.ndarray) -> np.ndarray:
    """The (K*C, C) MatMul weight of a depthwise layer with per-channel kernels Wkc (K, C): row
    k*C + c holds Wkc[k, c] in column c (the sliding window's (kh, kw, c) order), zeros elsewhere.
    The float/streamlining stages run it as an ordinary MatMul, so every scale pass applies."""
    K, C = Wkc.shape
    W2 = np.zeros((K * C, C), dtype=np.float64)
    for k in range(K):
        W2[k * C + np.arange(C), np.arange(C)] = Wkc[k]
    return W2


def grouped_matrix(W: np.ndarray, group: int) -> np.ndarray:
    """The (kh*kw*C, Cout) MatMul weight of a conv with ``group`` groups (1: an ordinary conv),
    W (Cout, C/group, kh, kw): row (ky*kw + kx)*C + c, column o holds W[o, c - g*C/group, ky, kx]
    when input channel c and output o are both in group g, else 0 (the sliding window's
    (kh, kw, c) order). A grouped conv (1 < group, not depthwise) thus runs on the matrix unit
    with a block-diagonal weight: exact, and costed as the dense matrix it multiplies."""
    cout, cin, kh, kw = W.shape
    c, og = cin * group, cout // group
    W2 = np.zeros((kh, kw, c, cout), dtype=np.float64)
    for g in range(group):
        W2[:, :, g * cin:(g + 1) * cin, g * og:(g + 1) * og] = W[g * og:(g + 1) * og].transpose(2, 3, 1, 0)
    return W2.reshape(kh * kw * c, cout)


def depthwise_kernels(W2: np.ndarray, C: int) -> np.ndarray | None:
    """Inverse of ``depthwise_matrix``: Wkc (K, C), or None if W2 is not of that structure."""
    if W2.ndim != 2 or W2.shape[1] != C or W2.shape[0] % C:
        return None
    Wkc = W2.reshape(-1, C, C)[:, np.arange(C), np.arange(C)]
    if not np.array_equal(depthwise_matrix(Wkc), W2):
        return None
    return Wkc


class LowerAvgPoolToDepthwise(Transformation):
    """AveragePool (kernel, strides, no padding) / GlobalAveragePool (NCHW) -> Transpose,
    SlidingWindow, depthwise MatMul of ones (the exact integer window sum), Mul(1/(kh*kw)),
    Transpose back. Streamlining moves the 1/(kh*kw) into the next thresholds (or the host
    post-scale), so the hardware sums exactly; the sum runs on the depthwise unit."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type not in ("AveragePool", "GlobalAveragePool"):
                continue
            _, c, h, w = model.get_tensor_shape(n.input[0])
            if n.op_type == "GlobalAveragePool":
                k, s = [h, w], [1, 1]
            else:
                k = [int(v) for v in _attr(n, "kernel_shape", [])]
                s = [int(v) for v in _attr(n, "strides", [1, 1])]
                pads = [int(v) for v in _attr(n, "pads", [0] * 4)]
                if len(k) != 2 or any(pads) or int(_attr(n, "ceil_mode", 0)) != 0 \
                        or _attr(n, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
                    raise unsupported(n, f"only 2-D average pooling without padding, floor mode (got kernel {k}, "
                                         f"pads {pads})")
            oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
            a, win, summed, scaled = (fresh_name(model, t) for t in ("nhwc", "im2col", "pool_sum", "pool_avg"))
            ones = add_const(model, "avgpool_w", depthwise_matrix(np.ones((k[0] * k[1], c))), DataType["UINT1"])
            nodes = [_transpose(model, n.input[0], a, TO_NHWC, "PoolInTranspose"),
                     make_hw_node("SlidingWindow", [a], [win], fresh_name(model, "SlidingWindow"),
                                  ConvKernelDim=k, IFMChannels=c, IFMDim=[h, w], OFMDim=[oh, ow], SIMD=1, Stride=s,
                                  Dilation=[1, 1], inputDataType="FLOAT32", outputDataType="FLOAT32"),
                     helper.make_node("MatMul", [win, ones], [summed], name=fresh_name(model, DEPTHWISE_TAG)),
                     helper.make_node("Mul", [summed, add_const(model, "avgpool_scale",
                                                                 np.asarray(1.0 / (k[0] * k[1]), np.float64))],
                                      [scaled], name=fresh_name(model, "AvgPoolScale")),
                     _transpose(model, scaled, n.output[0], TO_NCHW, "PoolOutTranspose")]
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            for i, new in enumerate(nodes):
                model.graph.node.insert(idx + i, new)
            return model, True
        return model, False


class LowerMaxPoolToStreaming(Transformation):
    """MaxPool (NCHW) -> Transpose, pool, Transpose. Kernel = stride, square, no padding: the
    streaming pool (a row buffer of running maxima). Any other 2-D max pool (padding, a stride
    other than the kernel, a non-square kernel): [FMPadding with the datatype's minimum, the
    identity of max] + SlidingWindow + WindowMax, as FINN+ lowers max pools (floor mode only;
    PyTorch's padding keeps every window on at least one pixel, so the padding is never chosen)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if n.op_type != "MaxPool":
                continue
            k = [int(v) for v in _attr(n, "kernel_shape", [])]
            s = [int(v) for v in _attr(n, "strides", k)]
            pads = [int(v) for v in _attr(n, "pads", [0] * 4)]
            if len(k) != 2 or int(_attr(n, "ceil_mode", 0)) != 0 \
                    or [int(v) for v in _attr(n, "dilations", [1, 1])] != [1, 1] \
                    or _attr(n, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
                raise unsupported(n, f"only 2-D max-pooling in floor mode without dilation or auto_pad "
                                     f"(got kernel {k}, strides {s}, pads {pads})")
            top, left, bottom, right = pads
            if max(top, bottom) >= k[0] or max(left, right) >= k[1]:
                raise unsupported(n, f"max-pool padding {pads} must be smaller than the kernel {k}")
            _, c, h, w = model.get_tensor_shape(n.input[0])
            a, b = fresh_name(model, "nhwc"), fresh_name(model, "pooled")
            nodes = [_transpose(model, n.input[0], a, TO_NHWC, "PoolInTranspose")]
            if k[0] == k[1] and s == k and not any(pads):
                nodes.append(make_hw_node("StreamingMaxPool", [a], [b], fresh_name(model, "StreamingMaxPool"),
                                          ImgDim=[h, w], PoolDim=k, NumChannels=c, PE=1, dataType="FLOAT32"))
            else:
                cur, hp, wp = a, h + top + bottom, w + left + right
                if any(pads):
                    cur = fresh_name(model, "padded")
                    nodes.append(make_hw_node("FMPadding", [a], [cur], fresh_name(model, "FMPadding"), ImgDim=[h, w],
                                              Padding=pads, NumChannels=c, SIMD=1, inputDataType="FLOAT32",
                                              PadValue="min"))
                oh, ow = (hp - k[0]) // s[0] + 1, (wp - k[1]) // s[1] + 1
                win = fresh_name(model, "im2col")
                nodes += [make_hw_node("SlidingWindow", [cur], [win], fresh_name(model, "SlidingWindow"),
                                       ConvKernelDim=k, IFMChannels=c, IFMDim=[hp, wp], OFMDim=[oh, ow], SIMD=1,
                                       Stride=s, Dilation=[1, 1], inputDataType="FLOAT32",
                                       outputDataType="FLOAT32"),
                          make_hw_node("WindowMax", [win], [b], fresh_name(model, "WindowMax"), Channels=c,
                                       Kernel=k, PE=1, inputDataType="FLOAT32", numInputVectors=[1, oh, ow])]
            nodes.append(_transpose(model, b, n.output[0], TO_NCHW, "PoolOutTranspose"))
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            for i, new in enumerate(nodes):
                model.graph.node.insert(idx + i, new)
            return model, True
        return model, False


class MoveTransposePastChannelwise(Transformation):
    """Transpose -> (Mul | Add | MultiThreshold) becomes (op) -> Transpose, with the op's
    constant or data layout permuted, so transposes travel towards each other and cancel."""

    def apply(self, model: ModelWrapper):
        for t in model.graph.node:
            if t.op_type != "Transpose":
                continue
            nxt = single_consumer(model, t.output[0])
            if nxt is None or nxt.op_type not in ("Mul", "Add", "MultiThreshold"):
                continue
            perm = _perm(t)
            inv = list(np.argsort(perm))
            if nxt.op_type == "MultiThreshold":
                if nxt.input[0] != t.output[0]:
                    continue
                layout = _attr(nxt, "data_layout", "")
                rank = len(perm)
                if not layout:
                    layout = {2: "NC", 4: "NCHW"}.get(rank, "")
                if len(layout) != rank:
                    continue
                new_layout = [""] * rank
                for i in range(rank):
                    new_layout[perm[i]] = layout[i]
                for a in nxt.attribute:
                    if a.name == "data_layout":
                        nxt.attribute.remove(a)
                        break
                nxt.attribute.append(helper.make_attribute("data_layout", "".join(new_layout)))
            else:
                ci = const_input(model, nxt)
                if ci is None:
                    continue
                dyn, c = ci
                if nxt.input[dyn] != t.output[0]:
                    continue
                if c.size != 1:
                    full = c.reshape([1] * (len(perm) - c.ndim) + list(c.shape))
                    nxt.input[1 - dyn] = add_const(model, "perm_const", full.transpose(inv))
            # rewire: x -> nxt -> Transpose -> out
            x, out = t.input[0], nxt.output[0]
            mid = fresh_name(model, "moved")
            for i, v in enumerate(nxt.input):
                if v == t.output[0]:
                    nxt.input[i] = x
            nxt.output[0] = mid
            t.input[0], t.output[0] = mid, out
            nodes = list(model.graph.node)
            model.graph.node.remove(t)
            model.graph.node.insert(nodes.index(nxt), t)
            return model, True
        return model, False


class CancelInverseTransposes(Transformation):
    """Transpose(p) -> Transpose(q) with q o p = identity: both removed."""

    def apply(self, model: ModelWrapper):
        graph_outs = {o.name for o in model.graph.output}
        for t1 in model.graph.node:
            if t1.op_type != "Transpose":
                continue
            t2 = single_consumer(model, t1.output[0])
            if t2 is None or t2.op_type != "Transpose" or t2.output[0] in graph_outs:
                continue
            p, q = _perm(t1), _perm(t2)
            if [p[i] for i in q] != list(range(len(p))):
                continue
            x = t1.input[0]
            for c in model.find_consumers(t2.output[0]) or []:
                for i, v in enumerate(c.input):
                    if v == t2.output[0]:
                        c.input[i] = x
            model.graph.node.remove(t2)
            model.graph.node.remove(t1)
            return model, True
        return model, False


class AbsorbTransposeIntoFlatten(Transformation):
    """Transpose(NHWC->NCHW) -> Flatten/Reshape(N, -1) -> MatMul(W): flatten the NHWC tensor
    directly and reorder W's rows from NCHW-flatten order (c, h, w) to NHWC order (h, w, c).
    With a 1x1 map the reorder is the identity."""

    def apply(self, model: ModelWrapper):
        for t in model.graph.node:
            if t.op_type != "Transpose" or _perm(t) != TO_NCHW:
                continue
            fl = single_consumer(model, t.output[0])
            if fl is None or fl.op_type not in ("Flatten", "Reshape"):
                continue
            shape = model.get_tensor_shape(t.output[0])
            oshape = model.get_tensor_shape(fl.output[0])
            if oshape is None or len(oshape) != 2:
                continue
            if fl.op_type == "Flatten" and int(_attr(fl, "axis", 1)) != 1:
                continue
            mm = single_consumer(model, fl.output[0])
            if mm is None or mm.op_type != "MatMul" or mm.input[0] != fl.output[0]:
                continue
            W = const(model, mm.input[1])
            if W is None:
                continue
            _, c, h, w = shape
            wdt = model.get_tensor_datatype(mm.input[1])
            W2 = W.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
            mm.input[1] = add_const(model, "fc_w_nhwc", W2, wdt)
            fl.input[0] = t.input[0]
            model.graph.node.remove(t)
            return model, True
        return model, False
