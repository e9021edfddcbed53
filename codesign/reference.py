"""The QONNX model evaluated in float64: the exact-arithmetic reference for bit-exactness.

Used by the export check (torch vs QONNX), by `codesign compile --verify` and by the compiler's
bit-exactness tests: the float32 execution of a QONNX graph can put a pre-activation that lies
within float32 rounding of a quantizer step on the wrong side, while exact (integer) arithmetic
does not.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
from qonnx.core.modelwrapper import ModelWrapper


def float64_reference(model: ModelWrapper) -> ModelWrapper:
    """The QONNX model evaluated in float64: the exact-arithmetic reference.

    The float32 QONNX execution sums hundreds of float products; a pre-activation within
    ~1e-6 of a rounding boundary can then land on the wrong side (seen: 87.49995 computed as
    87.50001 in a 784-input 8-bit layer), while the accelerator's integer arithmetic is exact.
    In float64 that error is ~1e-15, so the integer codes are the mathematically exact ones.
    Conv goes through qonnx's own Im2Col + MatMul lowering (onnxruntime has no double Conv).

    One case float64 alone does not make exact: a pre-activation that is exactly 0, the bipolar
    quantizer's step (``x >= 0`` gives +1), reached with scales that are not powers of two
    (an uncalibrated BatchNorm, weight scale 0.1, input scale 1/255). Then each product
    ``(k * s_in) * (c * s_w)`` is rounded and the products of an accumulator that cancels to 0
    leave a residue of +-1e-17, whose sign decided the code. So a Conv/MatMul whose weights are
    a quantizer's ``codes * s_w`` with ``s_w`` per tensor or per output channel is evaluated as
    ``(x @ codes) * s_w`` (``_weight_scales_after``): with its input on an activation
    quantizer's grid every product and partial sum is then exact, and a 0 stays 0.
    """
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.extract_conv_bias import ExtractBiasFromConv
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    m = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    g = m.graph
    weight_codes: dict[str, np.ndarray] = {}
    weight_scales: dict[str, np.ndarray] = {}
    # weight quantizers: codes exactly as qonnx computes them (float32 semantics define the
    # model's weights); the weight becomes codes * scale in double, the codes are kept beside
    # it (``.weight_codes``) for the accumulator check
    for q in [n for n in g.node if n.op_type in ("Quant", "BipolarQuant")
              and all(m.get_initializer(i) is not None for i in n.input)]:
        ctx = {i: m.get_initializer(i) for i in q.input}
        ctx[q.output[0]] = None
        getCustomOp(q).execute_node(ctx, g)
        scale = m.get_initializer(q.input[1]).astype(np.float64)
        codes = np.round(ctx[q.output[0]].astype(np.float64) / scale)
        m.set_initializer(q.output[0], codes * scale)
        weight_codes[q.output[0]] = codes
        weight_scales[q.output[0]] = scale
        g.node.remove(q)
    _avgpool_as_depthwise_conv(m)
    m = m.transform(InferShapes())
    _pad_convs_on_thin_maps(m)
    m = m.transform(ExtractBiasFromConv())
    _weight_scales_after(m, weight_codes, weight_scales)
    _grouped_convs_dense(m, weight_codes)
    m = m.transform(InferShapes()).transform(LowerConvsToMatMul()).transform(InferShapes())
    g = m.graph
    for init in list(g.initializer):
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = onnx.numpy_helper.to_array(init).astype(np.float64)
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    for n in g.node:  # constants created by attributes, e.g. Cast targets
        for a in n.attribute:
            if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                a.i = onnx.TensorProto.DOUBLE
    # qonnx's Quant returns float32: quantize x/s with scale 1 (integer codes, exact in float32),
    # cast to double and multiply by s in double
    for q in [n for n in g.node if n.op_type in ("Quant", "BipolarQuant")]:
        s_name, out = q.input[1], q.output[0]
        one = f"{q.name}_one64"
        m.set_initializer(one, np.ones_like(m.get_initializer(s_name)))
        div_out, q_out, cast_out = f"{q.name}_div64", f"{q.name}_codes64", f"{q.name}_cast64"
        idx = list(g.node).index(q)
        g.node.insert(idx, onnx.helper.make_node("Div", [q.input[0], s_name], [div_out], name=f"{q.name}_div64"))
        q.input[0], q.input[1], q.output[0] = div_out, one, q_out
        g.node.insert(idx + 2, onnx.helper.make_node("Cast", [q_out], [cast_out], to=onnx.TensorProto.DOUBLE,
                                                     name=f"{q.name}_cast64"))
        g.node.insert(idx + 3, onnx.helper.make_node("Mul", [cast_out, s_name], [out], name=f"{q.name}_mul64"))
    m = m.transform(InferShapes())
    m.weight_codes = weight_codes
    return m


def _weight_scales_after(m: ModelWrapper, codes: dict[str, np.ndarray], scales: dict[str, np.ndarray]) -> None:
    """Conv / MatMul on quantized weights ``codes * s`` -> the same op on the integer codes, then
    ``Mul(s)``: an identity when ``s`` is constant along the reduced axes (per tensor, or per
    output channel), which makes the accumulation exact (see `float64_reference`). Any other
    weight (another scale layout, a Conv bias left in place) keeps ``codes * s``. The new codes
    tensors are added to ``codes`` (the accumulator check reads a MatMul's weight codes there)."""
    g = m.graph
    for i, n in enumerate(list(g.node)):
        if n.op_type not in ("Conv", "MatMul") or len(n.input) != 2 or n.input[1] not in codes:
            continue
        c, s = codes[n.input[1]], np.asarray(scales[n.input[1]])
        if s.size == 1:
            post = s.reshape(())
        elif n.op_type == "Conv" and s.ndim == c.ndim and s.shape[0] == c.shape[0] and s.size == c.shape[0]:
            post = s.reshape((1, -1) + (1,) * (c.ndim - 2))  # (OC, 1, ...) -> the output's channel axis
        elif n.op_type == "MatMul" and c.ndim == 2 and s.shape[-1] == c.shape[1] and s.size == c.shape[1]:
            post = s.reshape(1, -1)  # (1, N): constant along the reduced K axis
        else:
            continue
        base = f"{n.name or n.op_type}_{i}"  # exported nodes may be unnamed
        w_name, s_name, acc = f"{base}_wcodes64", f"{base}_wscale64", f"{base}_acc64"
        m.set_initializer(w_name, c.astype(np.float32))  # integer codes: exact in float32
        codes[w_name] = c
        m.set_initializer(s_name, post.astype(np.float32))
        out = n.output[0]
        n.input[1], n.output[0] = w_name, acc
        g.node.insert(list(g.node).index(n) + 1,
                      onnx.helper.make_node("Mul", [acc, s_name], [out], name=f"{base}_wscale64"))


def _grouped_convs_dense(m: ModelWrapper, codes: dict[str, np.ndarray]) -> None:
    """A grouped Conv (1 < group, not depthwise) -> an ordinary Conv whose weight holds zeros
    between the groups (qonnx's conv lowering, which runs the reference, knows only group 1 and
    depthwise). The same sums, each product with a zero weight exactly 0."""
    g = m.graph
    for n in [n for n in g.node if n.op_type == "Conv"]:
        group = next((int(a.i) for a in n.attribute if a.name == "group"), 1)
        W = m.get_initializer(n.input[1])
        if group == 1 or W is None or W.ndim != 4:
            continue
        cout, cin, kh, kw = W.shape
        if cin == 1 and cout == group:
            continue  # depthwise: qonnx lowers it itself
        og = cout // group
        dense = np.zeros((cout, cin * group, kh, kw), dtype=W.dtype)
        for k in range(group):
            dense[k * og:(k + 1) * og, k * cin:(k + 1) * cin] = W[k * og:(k + 1) * og]
        name = f"{n.name}_dense64"
        m.set_initializer(name, dense)
        if n.input[1] in codes:
            codes[name] = np.asarray(dense, dtype=np.float64)
        n.input[1] = name
        for a in n.attribute:
            if a.name == "group":
                a.i = 1


def _pad_convs_on_thin_maps(m: ModelWrapper) -> None:
    """A padded Conv on a map of one row or one column (MobileNet's tail: a depthwise 3x3 pad 1
    on 1x1) -> an explicit zero ``Pad`` and an unpadded Conv: qonnx's Im2Col, which runs the
    reference's convs, refuses padding on such maps. Zero padding is what the Conv does."""
    g = m.graph
    for n in [n for n in g.node if n.op_type == "Conv"]:
        shape = m.get_tensor_shape(n.input[0])
        pads = next((list(a.ints) for a in n.attribute if a.name == "pads"), [])
        if shape is None or len(shape) != 4 or not any(pads) or min(int(v) for v in shape[2:]) > 1:
            continue
        t, l, b, r = (int(v) for v in pads)
        pname, out = f"{n.name}_pads64", f"{n.name}_padded64"
        m.set_initializer(pname, np.asarray([0, 0, t, l, 0, 0, b, r], dtype=np.int64))
        g.node.insert(list(g.node).index(n), onnx.helper.make_node("Pad", [n.input[0], pname], [out],
                                                                  name=f"{n.name}_pad64", mode="constant"))
        n.input[0] = out
        for a in n.attribute:
            if a.name == "pads":
                a.ints[:] = [0, 0, 0, 0]


def _avgpool_as_depthwise_conv(m: ModelWrapper) -> None:
    """AveragePool (no padding) / GlobalAveragePool -> depthwise Conv of 1/(kh*kw) weights, so the
    Conv lowering above runs it in double (onnxruntime has no double AveragePool)."""
    g = m.graph
    for n in [n for n in g.node if n.op_type in ("AveragePool", "GlobalAveragePool")]:
        shape = m.get_tensor_shape(n.input[0])
        if shape is None or len(shape) != 4:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if any(attrs.get("pads", [0])) or attrs.get("ceil_mode", 0):
            continue  # left as is: the compiler refuses it by name
        c, h, w = (int(v) for v in shape[1:])
        if n.op_type == "GlobalAveragePool":
            # the exact integer window sum, then one division by H*W in double (the accumulator
            # check reads the codes of a global average as the sums: ``*_mean64``)
            axes, hw, summed = f"{n.name}_axes64", f"{n.name}_hw64", f"{n.name}_sum64"
            m.set_initializer(axes, np.asarray([2, 3], dtype=np.int64))
            m.set_initializer(hw, np.asarray(h * w, dtype=np.float32))
            idx = list(g.node).index(n)
            g.node.remove(n)
            g.node.insert(idx, onnx.helper.make_node("ReduceSum", [n.input[0], axes], [summed], keepdims=1,
                                                     name=f"{n.name}_sum64"))
            g.node.insert(idx + 1, onnx.helper.make_node("Div", [summed, hw], list(n.output), name=f"{n.name}_mean64"))
            continue
        k = [int(v) for v in attrs["kernel_shape"]]
        strides = [int(v) for v in attrs.get("strides", [1, 1])]
        wname = f"{n.name}_avg_w64"
        m.set_initializer(wname, np.full((c, 1, *k), 1.0 / (k[0] * k[1]), dtype=np.float32))
        conv = onnx.helper.make_node("Conv", [n.input[0], wname], list(n.output), name=f"{n.name}_conv64",
                                     kernel_shape=k, strides=strides, group=c, pads=[0, 0, 0, 0])
        idx = list(g.node).index(n)
        g.node.remove(n)
        g.node.insert(idx, conv)
