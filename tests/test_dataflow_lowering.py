"""Lowering QONNX -> dataflow graph: bit-exact after every step, over bit widths, layer kinds,
the FINN classic networks and the project's zoo; clear errors for what is unsupported."""

from __future__ import annotations

import itertools

import brevitas.nn as qnn
import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (Int8ActPerTensorFloat, Int8WeightPerTensorFloat, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from torch import nn

from codesign.dataflow.compiler import (compile_steps, hw_input_tensor, hw_nodes, insert_stream_plumbing,
                                        load_model, lower_to_hw, run_step)
from codesign.dataflow.ops import DOMAIN
from codesign.errors import UnsupportedError
from dataflow_helpers import (assert_bit_exact, calibrate_and_randomise_bn, export, float64_reference, images,
                              reference_accumulator, run)


_COUNTER = itertools.count()


class _InputQuant(Uint8ActPerTensorFloat):
    scaling_impl_type = ScalingImplType.CONST
    scaling_init = 1.0
    max_val = 1.0


def _inp(bits: int = 8) -> nn.Module:
    return qnn.QuantIdentity(act_quant=_InputQuant, bit_width=bits, return_quant_tensor=False)


def _wq(bits: int) -> dict:
    if bits == 1:
        return {"weight_quant": SignedBinaryWeightPerTensorConst}
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": bits}


def _act(bits: int, signed: bool = False) -> nn.Module:
    if bits == 1:
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False)
    if signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, return_quant_tensor=False)
    return qnn.QuantReLU(bit_width=bits, return_quant_tensor=False)


def mlp(wbits: list[int], abits: list[int], signed: bool = False, hidden: int = 32,
        bias: bool = False) -> nn.Module:
    """Input quant, flatten, len(abits) x [QuantLinear, BN, act], final QuantLinear."""
    layers: list[nn.Module] = [_inp(), nn.Flatten()]
    fin = 28 * 28
    for wb, ab in zip(wbits, abits):
        layers += [qnn.QuantLinear(fin, hidden, bias=bias, **_wq(wb)), nn.BatchNorm1d(hidden), _act(ab, signed)]
        fin = hidden
    layers.append(qnn.QuantLinear(fin, 10, bias=bias, **_wq(wbits[-1])))
    return nn.Sequential(*layers)


def cnn(wbits: list[int], abits: list[int], pad1: int = 1, stride2: int = 2, signed: bool = False) -> nn.Module:
    """conv3x3(pad 1) BN act pool2, conv3x3(stride2, pad) BN act, flatten, fc BN act, fc."""
    c1, c2 = 8, 12
    s2 = (14 + 2 * pad1 - 3) // stride2 + 1
    return nn.Sequential(
        _inp(),
        qnn.QuantConv2d(1, c1, 3, padding=1, bias=False, **_wq(wbits[0])), nn.BatchNorm2d(c1),
        _act(abits[0], signed), nn.MaxPool2d(2),
        qnn.QuantConv2d(c1, c2, 3, stride=stride2, padding=pad1, bias=False, **_wq(wbits[1])), nn.BatchNorm2d(c2),
        _act(abits[1], signed), nn.Flatten(),
        qnn.QuantLinear(c2 * s2 * s2, 16, bias=False, **_wq(wbits[2])), nn.BatchNorm1d(16), _act(abits[2], signed),
        qnn.QuantLinear(16, 10, bias=False, **_wq(wbits[3])),
    )


def _compile_and_check(model: nn.Module, tmp_path, n: int = 4, shape=(1, 28, 28), per_step: bool = False,
                       seed: int = 0, calibrate: bool = True):
    xs = images(64, shape)
    torch.manual_seed(seed)
    if calibrate:
        calibrate_and_randomise_bn(model, xs, seed)
    path = tmp_path / f"model_{next(_COUNTER)}.onnx"
    export(model, xs, path)
    ref = load_model(str(path))
    ref64 = float64_reference(ref)
    test_x = images(n, shape, offset=100)
    if per_step:
        m = load_model(str(path))
        steps = compile_steps()
        for step in steps:
            m = run_step(m, step)
            assert_bit_exact(ref64, m, test_x[:2], integer=(step is steps[-1]))
        compiled = m
    else:
        compiled = lower_to_hw(ref)
    assert_bit_exact(ref64, compiled, test_x)
    _check_contract(compiled)
    return ref, compiled


def _check_contract(m) -> None:
    """Host pre-nodes, a contiguous HW chain with integer-annotated tensors, host post-nodes."""
    chain = hw_nodes(m)
    names = [n.name for n in chain]
    assert len(set(names)) == len(names)
    for n in chain:
        assert n.name.startswith(n.op_type + "_")
        inst = getCustomOp(n)
        assert inst.verify_node() == ["ok"], (n.name, inst.verify_node())
        assert inst.get_nodeattr("PE" if "PE" in inst.get_nodeattr_types() else "SIMD") == 1
        for t in (n.input[0], n.output[0]):
            assert m.get_tensor_datatype(t).is_integer(), (n.name, t, m.get_tensor_datatype(t))
    first = m.find_producer(hw_input_tensor(m))
    pre = [n.op_type for n in m.graph.node][: list(m.graph.node).index(chain[0])]
    assert "Quant" in pre and set(pre) <= {"Div", "Quant", "Transpose", "Reshape", "Flatten", "Mul", "Add", "Sub"}
    assert first is not None


# ------------------------------------------------------------------------------------- MLPs
@pytest.mark.parametrize("w,a", [(1, 1), (2, 2), (4, 4), (8, 3)])
def test_mlp_uniform_bits(tmp_path, w, a):
    _compile_and_check(mlp([w, w], [a, a]), tmp_path)


def test_mlp_mixed_plan_and_signed(tmp_path):
    _compile_and_check(mlp([8, 1, 4], [1, 8, 4]), tmp_path)
    _compile_and_check(mlp([4, 4], [4, 3], signed=True), tmp_path, seed=1)


def test_mlp_with_bias(tmp_path):
    _compile_and_check(mlp([4, 4], [4, 4], bias=True), tmp_path)


def test_per_channel_weight_scales_and_gemm_bias(tmp_path):
    """Per-output-channel weight scales (conv and linear) and a biased final layer (Gemm)."""
    from brevitas.quant import Int8WeightPerChannelFloat
    pc = {"weight_quant": Int8WeightPerChannelFloat}
    model = nn.Sequential(
        _inp(), qnn.QuantConv2d(1, 6, 3, stride=2, bias=False, weight_bit_width=4, **pc), nn.BatchNorm2d(6), _act(3),
        nn.Flatten(), qnn.QuantLinear(6 * 13 * 13, 12, bias=False, weight_bit_width=3, **pc), nn.BatchNorm1d(12),
        _act(2), qnn.QuantLinear(12, 10, bias=True, weight_bit_width=5, **pc))
    _, m = _compile_and_check(model, tmp_path)
    assert [n.op_type for n in m.graph.node][-2:] == ["Mul", "Add"]


def test_mlp_every_step_bit_exact(tmp_path):
    _compile_and_check(mlp([2, 2], [2, 2]), tmp_path, per_step=True)


# ------------------------------------------------------------------------------------- CNNs
def test_cnn_every_step_bit_exact(tmp_path):
    _, m = _compile_and_check(cnn([4, 4, 4, 4], [4, 4, 4]), tmp_path, per_step=True)
    ops = [n.op_type for n in hw_nodes(m)]
    assert ops == ["FMPadding", "SlidingWindow", "MVAU", "StreamingMaxPool", "FMPadding", "SlidingWindow",
                   "MVAU", "MVAU", "MVAU"]
    sw = getCustomOp(hw_nodes(m)[5])
    assert sw.get_nodeattr("Stride") == [2, 2] and sw.get_nodeattr("OFMDim") == [7, 7]


@pytest.mark.parametrize("w,a,signed", [(2, 2, False), pytest.param(8, 8, False, marks=pytest.mark.slow),
                                        (4, 3, True)])
def test_cnn_bits(tmp_path, w, a, signed):
    _compile_and_check(cnn([w] * 4, [a] * 3, signed=signed), tmp_path)


def test_cnn_bipolar_and_mixed(tmp_path):
    # bipolar maps cannot be zero-padded: the second conv is unpadded
    _, m = _compile_and_check(cnn([1, 1, 1, 1], [1, 1, 1], pad1=0, stride2=1), tmp_path)
    mv = [getCustomOp(n) for n in hw_nodes(m) if n.op_type == "MVAU"]
    assert [o.get_nodeattr("binaryXnorMode") for o in mv] == [0, 1, 1, 1]
    assert mv[0].get_output_datatype() == DataType["BIPOLAR"]
    _compile_and_check(cnn([8, 1, 2, 8], [8, 1, 2], pad1=0, stride2=1), tmp_path, seed=2)


def _pool_before_bn(negative_bn: bool, xs):
    m = nn.Sequential(_inp(), qnn.QuantConv2d(1, 6, 3, bias=True, **_wq(4)), nn.MaxPool2d(2), nn.BatchNorm2d(6),
                      _act(3), nn.Flatten(), qnn.QuantLinear(6 * 13 * 13, 10, bias=False, **_wq(4)))
    calibrate_and_randomise_bn(m, xs)
    with torch.no_grad():
        m[3].weight.abs_()
        if negative_bn:
            m[3].weight[0] = -m[3].weight[0]
    return m


def test_conv_bias_and_pool_before_activation(tmp_path):
    """conv(+bias) -> pool -> BN -> act: the BN scale passes the max-pool (positive), the
    activation becomes a standalone Thresholding."""
    _, m = _compile_and_check(_pool_before_bn(False, images(32)), tmp_path, calibrate=False)
    assert [n.op_type for n in hw_nodes(m)] == ["SlidingWindow", "MVAU", "StreamingMaxPool", "Thresholding", "MVAU"]


def test_negative_scale_before_pool_is_refused(tmp_path):
    xs = images(32)
    export(_pool_before_bn(True, xs), xs, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="negative scale"):
        lower_to_hw(load_model(str(tmp_path / "m.onnx")))


def test_bipolar_padding_is_refused(tmp_path):
    xs = images(16)
    model = calibrate_and_randomise_bn(cnn([1, 1, 1, 1], [1, 1, 1], pad1=1), xs)
    export(model, xs, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError, match="FMPadding"):
        lower_to_hw(load_model(str(tmp_path / "m.onnx")))


# ------------------------------------------------------------------------ label select, FIFOs
def test_label_select(tmp_path):
    ref, m = _compile_and_check(mlp([2, 2], [2, 2]), tmp_path)
    m2 = lower_to_hw(ref, label_select_k=3)
    assert hw_nodes(m2)[-1].op_type == "LabelSelect"
    ref64 = float64_reference(ref)
    for i in range(4):
        x = images(1, offset=200 + i)
        acc = reference_accumulator(ref64, run(ref64, x, full=True)).reshape(-1)
        top = run(m2, x).reshape(-1)
        assert list(top) == list(np.argsort(-acc, kind="stable")[:3])  # ties -> lower index


def test_label_select_needs_positive_scalar_scale(tmp_path):
    model = mlp([2, 2], [2, 2])
    model[-1] = qnn.QuantLinear(32, 10, bias=True, **_wq(2))  # per-class bias changes the ranking
    ref, _ = _compile_and_check(model, tmp_path)
    with pytest.raises(UnsupportedError, match="LabelSelect"):
        lower_to_hw(ref, label_select_k=1)


def test_dwc_and_fifo_insertion(tmp_path):
    ref, m = _compile_and_check(mlp([2, 2], [2, 2]), tmp_path)
    mv = [n for n in hw_nodes(m) if n.op_type == "MVAU"]
    getCustomOp(mv[0]).set_nodeattr("PE", 4)
    getCustomOp(mv[1]).set_nodeattr("SIMD", 8)
    m = insert_stream_plumbing(m)
    ops = [n.op_type for n in hw_nodes(m)]
    assert "StreamingDataWidthConverter" in ops and ops.count("StreamingFIFO") == len(ops) - ops.count("StreamingFIFO") - 1
    dwc = getCustomOp([n for n in hw_nodes(m) if n.op_type == "StreamingDataWidthConverter"][0])
    assert (dwc.get_nodeattr("inWidth"), dwc.get_nodeattr("outWidth")) == (8, 16)
    assert_bit_exact(ref, m, images(3, offset=100))


# --------------------------------------------------------------------- FINN classic networks
@pytest.mark.parametrize("w,a", [(1, 1), pytest.param(2, 2, marks=pytest.mark.slow)])
def test_finn_tfc(tmp_path, w, a):
    from brevitas_examples.bnn_pynq.models.FC import FC
    torch.manual_seed(w)
    model = FC(num_classes=10, weight_bit_width=w, act_bit_width=a, in_bit_width=8, in_channels=1,
               out_features=[64, 64, 64])
    _, m = _compile_and_check(model, tmp_path, seed=w)
    assert [n.op_type for n in hw_nodes(m)] == ["MVAU"] * 4


@pytest.mark.slow
def test_finn_cnv_w1a1(tmp_path):
    from brevitas_examples.bnn_pynq.models.CNV import CNV
    torch.manual_seed(0)
    model = CNV(num_classes=10, weight_bit_width=1, act_bit_width=1, in_bit_width=8, in_ch=3)
    _, m = _compile_and_check(model, tmp_path, n=3, shape=(3, 32, 32))
    ops = [n.op_type for n in hw_nodes(m)]
    assert ops.count("MVAU") == 9 and ops.count("SlidingWindow") == 6 and ops.count("StreamingMaxPool") == 2


# ------------------------------------------------------------------------------- zoo models
def _zoo(name, w, a, shape=(1, 28, 28), layer_bits=None):
    from codesign.models.build import build_quant
    from codesign.models.plan import uniform_plan
    from codesign.models.zoo import make_spec
    spec = make_spec(name, input_shape=shape, num_classes=10)
    plan = uniform_plan(spec, w, a, input_bits=8)
    for lname, bits in (layer_bits or {}).items():
        plan["layers"][lname].update(bits)
    return build_quant(spec, plan)


@pytest.mark.parametrize("w,a", [pytest.param(1, 1, marks=pytest.mark.slow), (2, 2),
                                 pytest.param(4, 4, marks=pytest.mark.slow)])
def test_zoo_tfc(tmp_path, w, a):
    _compile_and_check(_zoo("tfc", w, a), tmp_path)


def test_zoo_lenet_mixed(tmp_path):
    mixed = {"conv0": {"weight_bits": 8, "act_bits": 8}, "fc0": {"weight_bits": 1, "act_bits": 2}}
    _compile_and_check(_zoo("lenet", 4, 4, layer_bits=mixed), tmp_path)


def test_zoo_pruned_lenet(tmp_path):
    """Structurally pruned (fewer filters/neurons) and unstructured zeros in the weights."""
    from codesign.models.build import build_quant
    from codesign.models.plan import uniform_plan
    from codesign.models.zoo import make_spec, with_widths
    spec = with_widths(make_spec("lenet"), {"conv0": 4, "conv1": 10, "fc0": 30, "fc1": 21})
    model = build_quant(spec, uniform_plan(spec, 3, 3))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (qnn.QuantConv2d, qnn.QuantLinear)):
                mod.weight.mul_((torch.rand_like(mod.weight) > 0.4).float())
    _compile_and_check(model, tmp_path, seed=3)


@pytest.mark.slow
def test_zoo_cnv_32x32(tmp_path):
    _compile_and_check(_zoo("cnv", 2, 2, shape=(3, 32, 32)), tmp_path, n=2, shape=(3, 32, 32))


# ---------------------------------------------------------------------------------- errors
def _tiny_graph(op: str = "Sigmoid", wshape=(4, 3)):
    """input -> Quant -> MatMul(quantized weights) -> <op>."""
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    nw = int(np.prod(wshape))
    inits = [oh.make_tensor("s", 1, [], [1 / 255]), oh.make_tensor("z", 1, [], [0.0]),
             oh.make_tensor("b", 1, [], [8.0]), oh.make_tensor("W", 1, list(wshape), list(np.arange(nw) - 6.0)),
             oh.make_tensor("ws", 1, [], [0.5]), oh.make_tensor("wb", 1, [], [4.0])]
    nodes = [oh.make_node("Quant", ["x", "s", "z", "b"], ["q"], domain="qonnx.custom_op.general",
                          name="inq", signed=0, narrow=0, rounding_mode="ROUND"),
             oh.make_node("Quant", ["W", "ws", "z", "wb"], ["Wq"], domain="qonnx.custom_op.general",
                          name="wq", signed=1, narrow=1, rounding_mode="ROUND"),
             oh.make_node("MatMul", ["q", "Wq"], ["mm"], name="mm"),
             oh.make_node(op, ["mm"], ["y"], name="the_bad_node")]
    g = oh.make_graph(nodes, "g", [x], [y], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13), oh.make_opsetid("qonnx.custom_op.general", 1)])


def test_unsupported_op_names_node_and_lists_supported():
    from qonnx.core.modelwrapper import ModelWrapper
    with pytest.raises(UnsupportedError) as e:
        lower_to_hw(ModelWrapper(_tiny_graph("Sigmoid")))
    msg = str(e.value)
    assert "the_bad_node" in msg and "Sigmoid" in msg and "MatMul" in msg and "Supported" in msg


def test_float_activation_is_named():
    from qonnx.core.modelwrapper import ModelWrapper
    # a Relu that no activation quantizer follows cannot become hardware
    with pytest.raises(UnsupportedError, match="the_bad_node.*Relu"):
        lower_to_hw(ModelWrapper(_tiny_graph("Relu")))


def test_tiny_graph_lowers_with_identity_tail():
    from qonnx.core.modelwrapper import ModelWrapper
    m = lower_to_hw(ModelWrapper(_tiny_graph("Identity")))
    assert [n.op_type for n in hw_nodes(m)] == ["MVAU"]


def test_malformed_onnx(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"this is not a protobuf")
    with pytest.raises(UnsupportedError, match="not a valid ONNX model"):
        lower_to_hw(str(p))


def test_shape_mismatch_is_refused():
    from qonnx.core.modelwrapper import ModelWrapper
    with pytest.raises(UnsupportedError, match="shape"):
        lower_to_hw(ModelWrapper(_tiny_graph("Identity", wshape=(5, 3))))


def test_saved_dataflow_graph_reloads_and_runs(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    ref, m = _compile_and_check(mlp([2, 2], [2, 2]), tmp_path)
    m.save(str(tmp_path / "dataflow.onnx"))
    m2 = ModelWrapper(str(tmp_path / "dataflow.onnx"))
    assert_bit_exact(ref, m2, images(2, offset=150))
    assert m2.get_tensor_datatype(hw_input_tensor(m2)) == DataType["UINT8"]


def test_compile_steps_are_named():
    names = [s.name for s in compile_steps(label_select_k=1)]
    assert names[0] == "tidy" and names[-1] == "finalize" and "streamline" in names and "label_select" in names
    assert DOMAIN == "codesign.dataflow.ops"  # the domain docs/contracts.md names
    m = lower_to_hw(_tiny_graph("Identity"))
    assert [n.op_type for n in m.graph.node if n.domain == DOMAIN] == ["MVAU"]
