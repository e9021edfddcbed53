"""HW custom ops: golden execution through qonnx's execute_onnx, shapes, stream widths, cycle
formulas (finn-reference section 3) and attribute checks."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from codesign.dataflow.ops import DOMAIN, custom_op, make_hw_node

RNG = np.random.default_rng(0)


def _single(node, in_shape, out_shape, inits: dict | None = None, idt: str = "INT8") -> ModelWrapper:
    x = oh.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, list(in_shape))
    y = oh.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, list(out_shape))
    g = oh.make_graph([node], "g", [x], [y])
    m = ModelWrapper(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13), oh.make_opsetid(DOMAIN, 1)]))
    for k, v in (inits or {}).items():
        m.set_initializer(k, np.asarray(v, dtype=np.float32))
    m.set_tensor_datatype(node.input[0], DataType[idt])
    m = m.transform(InferShapes()).transform(InferDataTypes())
    return m


def _exec(m: ModelWrapper, x: np.ndarray) -> np.ndarray:
    return execute_onnx(m, {m.graph.input[0].name: x.astype(np.float32)})[m.graph.output[0].name]


# Independent references (not codesign.dataflow.golden, which the ops call): qonnx's own
# MultiThreshold, explicit im2col loops, torch's max pooling, numpy padding.
def _ref_thresholds(acc: np.ndarray, T: np.ndarray, bias: int = 0) -> np.ndarray:
    from qonnx.custom_op.general.multithreshold import multithreshold

    c = acc.shape[-1]
    flat = acc.reshape(-1, c).astype(np.float64)
    return (multithreshold(flat, T.astype(np.float64)) + bias).reshape(acc.shape)


def _ref_mvau(x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None) -> np.ndarray:
    acc = x.astype(np.int64) @ W.astype(np.int64)
    return acc if T is None else _ref_thresholds(acc, T)


def _ref_im2col(x: np.ndarray, k: int, s: int) -> np.ndarray:
    _, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((1, oh, ow, k * k * c), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[0, i, j] = [x[0, i * s + a, j * s + b, ch] for a in range(k) for b in range(k) for ch in range(c)]
    return out


def _ref_maxpool(x: np.ndarray, k: int) -> np.ndarray:
    import torch

    t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
    return torch.nn.functional.max_pool2d(t, k).permute(0, 2, 3, 1).numpy()


def test_registry_exposes_every_op():
    assert set(custom_op) == {"MVAU", "Thresholding", "SlidingWindow", "StreamingMaxPool", "FMPadding",
                              "LabelSelect", "StreamingDataWidthConverter", "StreamingFIFO", "VVAU",
                              "DuplicateStreams", "AddStreams", "StreamingConcat", "WindowMax"}


def test_padded_maxpool_golden_matches_torch():
    """FMPadding (PadValue min) -> sliding window -> WindowMax equals torch's padded max_pool2d
    (-inf padding), on a signed non-square map with a 3x3 stride-2 and a 3x2 stride (1, 2) window."""
    import torch

    from codesign.dataflow.ops.fmpadding import fmpadding, pad_value
    from codesign.dataflow.ops.sliding_window import sliding_window
    from codesign.dataflow.ops.windowmax import window_max
    from qonnx.core.datatype import DataType

    x = np.random.default_rng(4).integers(-8, 8, size=(2, 7, 6, 3))
    for k, s, p in (((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 1))):
        pv = pad_value("min", DataType["INT4"])
        y = window_max(sliding_window(fmpadding(x, (p[0], p[1], p[0], p[1]), pv), k, s), k[0] * k[1])
        t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
        ref = torch.nn.functional.max_pool2d(t, k, s, padding=p).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(y, ref)


@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 4), (4, 8)])
def test_mvau_thresholds_shapes_and_cycles(pe, simd):
    mw, mh, nthr = 16, 8, 3
    W = RNG.integers(-2, 2, size=(mw, mh))
    T = np.sort(RNG.integers(-20, 20, size=(mh, nthr)), axis=1)
    n = make_hw_node("MVAU", ["x", "W", "T"], ["y"], "MVAU_0", MW=mw, MH=mh, PE=pe, SIMD=simd,
                     inputDataType="UINT4", weightDataType="INT2", outputDataType="UINT2", accDataType="INT10",
                     noActivation=0, ActVal=0, numInputVectors=[1, 3, 3])
    m = _single(n, (1, 3, 3, mw), (1, 3, 3, mh), {"W": W, "T": T}, idt="UINT4")
    x = RNG.integers(0, 16, size=(1, 3, 3, mw))
    np.testing.assert_array_equal(_exec(m, x), _ref_mvau(x, W, T))
    op = getCustomOp(m.graph.node[0])
    assert m.get_tensor_datatype("y") == DataType["UINT2"]
    assert op.get_normal_input_shape() == (1, 3, 3, mw)
    assert op.get_folded_input_shape() == (1, 3, 3, mw // simd, simd)
    assert op.get_folded_output_shape() == (1, 3, 3, mh // pe, pe)
    assert op.get_instream_width() == 4 * simd and op.get_outstream_width() == 2 * pe
    assert op.get_number_output_values() == 9 * mh // pe
    assert op.get_exp_cycles() == (mh // pe) * (mw // simd) * 9
    assert op.calc_wmem() == mw * mh // (pe * simd) and op.calc_tmem() == mh // pe
    assert op.get_weight_datatype() == DataType["INT2"]
    assert op.verify_node() == ["ok"]


def test_mvau_no_activation_bipolar_and_flattened_input():
    W = np.where(RNG.random((12, 5)) < 0.5, -1, 1)
    n = make_hw_node("MVAU", ["x", "W"], ["y"], "MVAU_1", MW=12, MH=5, inputDataType="BIPOLAR",
                     weightDataType="BIPOLAR", outputDataType="INT5", accDataType="INT5", noActivation=1,
                     binaryXnorMode=1, numInputVectors=[1])
    # (1, 2, 2, 3) NHWC map read as its flattening (the conv -> FC boundary)
    m = _single(n, (1, 2, 2, 3), (1, 5), {"W": W}, idt="BIPOLAR")
    x = np.where(RNG.random((1, 2, 2, 3)) < 0.5, -1, 1)
    np.testing.assert_array_equal(_exec(m, x), x.reshape(1, 12) @ W)
    assert getCustomOp(m.graph.node[0]).calc_tmem() == 0


def test_mvau_bipolar_output_holds_plus_minus_one():
    W = RNG.integers(-1, 2, size=(6, 4))
    T = np.zeros((4, 1))
    n = make_hw_node("MVAU", ["x", "W", "T"], ["y"], "MVAU_2", MW=6, MH=4, inputDataType="INT2",
                     weightDataType="INT2", outputDataType="BIPOLAR", accDataType="INT6", noActivation=0)
    m = _single(n, (1, 6), (1, 4), {"W": W, "T": T}, idt="INT2")
    x = RNG.integers(-2, 2, size=(1, 6))
    np.testing.assert_array_equal(_exec(m, x), np.where(x @ W >= 0, 1, -1))


def test_mvau_folding_violation_is_reported():
    n = make_hw_node("MVAU", ["x", "W"], ["y"], "MVAU_3", MW=6, MH=4, PE=3, SIMD=4, inputDataType="INT2",
                     weightDataType="INT2", outputDataType="INT8", noActivation=1)
    msgs = getCustomOp(n).verify_node()
    assert any("SIMD=4" in s for s in msgs) and any("PE=3" in s for s in msgs)


def test_thresholding_signed_actval():
    T = np.sort(RNG.integers(-8, 8, size=(4, 3)), axis=1)
    n = make_hw_node("Thresholding", ["x", "T"], ["y"], "Thresholding_0", NumChannels=4, PE=2, numSteps=3,
                     inputDataType="INT5", outputDataType="INT2", ActVal=-2, numInputVectors=[1, 2, 2])
    m = _single(n, (1, 2, 2, 4), (1, 2, 2, 4), {"T": T}, idt="INT5")
    x = RNG.integers(-16, 16, size=(1, 2, 2, 4))
    np.testing.assert_array_equal(_exec(m, x), _ref_thresholds(x, T, -2))
    op = getCustomOp(m.graph.node[0])
    assert op.get_exp_cycles() == 4 * 4 // 2 and op.get_instream_width() == 10 and op.get_outstream_width() == 4


@pytest.mark.parametrize("k,s,simd", [(3, 1, 1), (3, 2, 2), (2, 2, 4)])
def test_sliding_window(k, s, simd):
    h, c = 7, 4
    oh_ = (h - k) // s + 1
    n = make_hw_node("SlidingWindow", ["x"], ["y"], "SlidingWindow_0", ConvKernelDim=[k, k], IFMChannels=c,
                     IFMDim=[h, h], OFMDim=[oh_, oh_], SIMD=simd, Stride=[s, s], Dilation=[1, 1],
                     inputDataType="UINT3", outputDataType="UINT3")
    m = _single(n, (1, h, h, c), (1, oh_, oh_, k * k * c), idt="UINT3")
    x = RNG.integers(0, 8, size=(1, h, h, c))
    y = _exec(m, x)
    np.testing.assert_array_equal(y, _ref_im2col(x, k, s))
    # element order (kh, kw, c), c innermost
    np.testing.assert_array_equal(y[0, 0, 0, :c], x[0, 0, 0, :])
    np.testing.assert_array_equal(y[0, 0, 0, c: 2 * c], x[0, 0, 1, :])
    op = getCustomOp(m.graph.node[0])
    cf = c // simd
    assert op.get_exp_cycles() == ((k - 1) * h + (k - 1) + 1) * cf + oh_ * max(oh_ * k * k * cf, s * h * cf)
    assert op.get_instream_width() == 3 * simd and op.verify_node() == ["ok"]


def test_maxpool_fmpadding_labelselect():
    x = RNG.integers(0, 16, size=(1, 5, 5, 2))
    n = make_hw_node("StreamingMaxPool", ["x"], ["y"], "StreamingMaxPool_0", ImgDim=[5, 5], PoolDim=[2, 2],
                     NumChannels=2, PE=2, dataType="UINT4")
    m = _single(n, (1, 5, 5, 2), (1, 2, 2, 2), idt="UINT4")
    np.testing.assert_array_equal(_exec(m, x), _ref_maxpool(x, 2))
    assert getCustomOp(m.graph.node[0]).get_outstream_width() == 8

    n = make_hw_node("FMPadding", ["x"], ["y"], "FMPadding_0", ImgDim=[5, 5], Padding=[1, 0, 2, 1], NumChannels=2,
                     SIMD=1, inputDataType="UINT4")
    m = _single(n, (1, 5, 5, 2), (1, 8, 6, 2), idt="UINT4")
    np.testing.assert_array_equal(_exec(m, x), np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0))))
    assert getCustomOp(m.graph.node[0]).get_exp_cycles() == 2 * 8 * 6

    v = np.array([[3, 9, 9, 1, -4, 9, 0, 2]])
    n = make_hw_node("LabelSelect", ["x"], ["y"], "LabelSelect_0", Labels=8, PE=2, K=3, inputDataType="INT5")
    m = _single(n, (1, 8), (1, 3), idt="INT5")
    np.testing.assert_array_equal(_exec(m, v), [[1, 2, 5]])  # ties -> lower index first
    op = getCustomOp(m.graph.node[0])
    # L/PE words in, then K index words out (the RTL takes no input while it emits)
    assert op.get_exp_cycles() == 8 + 3 and op.get_output_datatype() == DataType["UINT3"]  # one insertion per clock


def test_dwc_and_fifo_are_identities_with_widths():
    x = RNG.integers(-8, 8, size=(1, 3, 3, 8))
    n = make_hw_node("StreamingDataWidthConverter", ["x"], ["y"], "StreamingDataWidthConverter_0",
                     shape=[1, 3, 3, 8], inWidth=8, outWidth=32, dataType="INT4")
    m = _single(n, (1, 3, 3, 8), (1, 3, 3, 8), idt="INT4")
    np.testing.assert_array_equal(_exec(m, x), x)
    op = getCustomOp(m.graph.node[0])
    assert op.get_folded_input_shape() == (1, 3, 3, 4, 2) and op.get_folded_output_shape() == (1, 3, 3, 1, 8)
    assert op.get_instream_width() == 8 and op.get_outstream_width() == 32 and op.get_exp_cycles() == 36

    n = make_hw_node("StreamingFIFO", ["x"], ["y"], "StreamingFIFO_0", depth=2, folded_shape=[1, 3, 3, 4, 2],
                     dataType="INT4")
    m = _single(n, (1, 3, 3, 8), (1, 3, 3, 8), idt="INT4")
    np.testing.assert_array_equal(_exec(m, x), x)
    op = getCustomOp(m.graph.node[0])
    assert op.get_normal_input_shape() == (1, 3, 3, 8) and op.get_instream_width() == 8


def test_missing_required_attribute_is_reported():
    n = oh.make_node("SlidingWindow", ["x"], ["y"], name="sw", domain=DOMAIN)
    msgs = getCustomOp(n).verify_node()
    assert any("ConvKernelDim" in s for s in msgs)


def test_golden_functions_against_independent_references():
    """The golden numpy functions (which the RTL tests compare against) equal references that
    share no code with them."""
    from codesign.dataflow import golden

    x = RNG.integers(-8, 8, size=(1, 7, 7, 3))
    W = RNG.integers(-3, 4, size=(3, 5))
    T = np.sort(RNG.integers(-30, 30, size=(5, 4)), axis=1)
    np.testing.assert_array_equal(golden.mvau(x, W, T, 1), _ref_mvau(x, W, T) + 1)
    np.testing.assert_array_equal(golden.mvau(x, W), _ref_mvau(x, W))
    T3 = np.sort(RNG.integers(-8, 8, size=(3, 2)), axis=1)
    np.testing.assert_array_equal(golden.thresholding(x, T3, -1), _ref_thresholds(x, T3, -1))
    for k, s in ((3, 1), (2, 2), (3, 2)):
        np.testing.assert_array_equal(golden.sliding_window(x, (k, k), (s, s)), _ref_im2col(x, k, s))
    for k in (2, 3):
        np.testing.assert_array_equal(golden.maxpool(x, k), _ref_maxpool(x, k))
    np.testing.assert_array_equal(golden.fmpadding(x, (1, 2, 0, 1)), np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))
    v = np.array([[3, 9, 9, -1, 4, 9]])
    np.testing.assert_array_equal(golden.label_select(v, 4), [[1, 2, 5, 4]])  # ties: lower index first
