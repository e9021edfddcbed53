"""Rounding ties: thresholds reproduce the source quantizer's rounding mode exactly.

With power-of-two scales (Brevitas fixed-point quantizers) a pre-activation lands exactly on a
half step all the time; QONNX's ``Quant`` (ROUND) sends it to the even neighbour. These tests
build such networks, pick inputs whose reference pre-activations hit a tie in *every* activation
layer, and require the compiled graph to equal the float64 QONNX reference element by element.
"""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from brevitas.quant import Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint, Int8ActPerTensorFixedPoint
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from codesign.dataflow.compiler import compile_steps, load_model, lower_to_hw, run_step
from codesign.dataflow.transforms.quant import rounding_steps
from codesign.errors import UnsupportedError
from dataflow_helpers import assert_bit_exact, export, float64_reference, run


def _act(bits: int, signed: bool = False) -> nn.Module:
    if signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=False)
    return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=False)


def _wq(bits: int) -> dict:
    return {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": bits, "bias": False}


def po2_mlp(signed: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=False),
        nn.Flatten(),
        qnn.QuantLinear(16, 12, **_wq(4)), _act(3, signed),
        qnn.QuantLinear(12, 10, **_wq(4)), _act(3, signed),
        qnn.QuantLinear(10, 10, **_wq(4))).eval()


def po2_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=False),
        qnn.QuantConv2d(1, 4, 3, padding=1, **_wq(4)), _act(3), nn.MaxPool2d(2),
        qnn.QuantConv2d(4, 6, 3, **_wq(4)), _act(3), nn.Flatten(),
        qnn.QuantLinear(6, 10, **_wq(4))).eval()


def _act_quants(ref64: ModelWrapper) -> list[str]:
    """Names of the activation quantizers' x/s tensors in the float64 reference (the input
    quantizer, the first one, is excluded: its input is the user's image)."""
    return [n.output[0] for n in ref64.graph.node if n.name.endswith("_div64")][1:]


def _act_scales(model: nn.Module, x: np.ndarray, path) -> list[float]:
    """The (power-of-two) scales of the input and activation quantizers, from an export."""
    ref = export(model, x, path)
    return [float(ref.get_initializer(n.input[1])) for n in ref.graph.node if n.op_type == "Quant"
            and ref.get_initializer(n.input[0]) is None]


def set_tie_weights(model: nn.Module, x: np.ndarray, path, seed: int = 0) -> None:
    """Weights that make ties common: in every layer followed by an activation, integer codes
    with scale s_out / (2 s_in), so a pre-activation is acc / 2 steps of the next quantizer
    (half steps whenever the accumulator is odd). Codes are sparse +-1 (two per output, so the
    accumulator stays inside the quantizer's range) plus one 7 that pins the weight quantizer's
    power-of-two scale to exactly that value."""
    scales = _act_scales(model, x, path)
    rng = np.random.default_rng(seed)
    layers = [m for m in model.modules() if isinstance(m, (qnn.QuantLinear, qnn.QuantConv2d))]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            w = layer.weight
            out = w.shape[0]
            codes = np.zeros((out, int(np.prod(w.shape[1:]))))
            for o in range(out):
                j, k = rng.choice(codes.shape[1], size=2, replace=False)
                codes[o, j], codes[o, k] = 1, -1
            codes[0, 0] = 7
            ws = scales[i + 1] / (2 * scales[i]) if i + 1 < len(scales) else 0.25
            w.copy_(torch.from_numpy((codes * ws).reshape(w.shape)).float())


def _tie_counts(ref64: ModelWrapper, x: np.ndarray) -> list[int]:
    ctx = run(ref64, x, full=True)
    counts = []
    for t in _act_quants(ref64):
        u = np.asarray(ctx[t], dtype=np.float64)
        counts.append(int(np.sum(u - np.floor(u) == 0.5)))
    return counts


def _tie_inputs(ref64: ModelWrapper, shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    """n inputs on the input quantizer's grid whose pre-activations hit a tie in every layer."""
    rng = np.random.default_rng(seed)
    picked = []
    for _ in range(400):
        x = (rng.integers(0, 16, size=(1,) + shape) / 16.0).astype(np.float32)
        if min(_tie_counts(ref64, x)) > 0:
            picked.append(x)
            if len(picked) == n:
                return np.concatenate(picked)
    raise AssertionError("could not build inputs with a tie in every layer")


def _check_exact(ref64: ModelWrapper, compiled: ModelWrapper, xs: np.ndarray) -> None:
    for i in range(len(xs)):
        y_ref = run(ref64, xs[i: i + 1])
        y = run(compiled, xs[i: i + 1])
        np.testing.assert_array_equal(np.asarray(y, dtype=np.float64), np.asarray(y_ref, dtype=np.float64),
                                      err_msg=f"input {i}: compiled graph != QONNX model")


@pytest.mark.parametrize("signed", [False, True])
def test_po2_mlp_ties_every_layer_exact(tmp_path, signed):
    model = po2_mlp(signed)
    xs0 = np.random.default_rng(0).random((8, 1, 4, 4)).astype(np.float32)
    set_tie_weights(model, xs0, tmp_path / "scales.onnx")
    export(model, xs0, tmp_path / "po2_mlp.onnx")
    ref = load_model(str(tmp_path / "po2_mlp.onnx"))
    ref64 = float64_reference(ref)
    scales = [float(ref.get_initializer(n.input[1])) for n in ref.graph.node if n.op_type == "Quant"
              and ref.get_initializer(n.input[0]) is None]
    assert all(np.log2(s) == np.round(np.log2(s)) for s in scales), scales  # power-of-two activations
    xs = _tie_inputs(ref64, (1, 4, 4), 8)
    compiled = lower_to_hw(ref)
    _check_exact(ref64, compiled, xs)
    assert_bit_exact(ref64, compiled, xs)


def test_po2_mlp_every_step_exact_on_ties(tmp_path):
    model = po2_mlp()
    xs0 = np.random.default_rng(0).random((8, 1, 4, 4)).astype(np.float32)
    set_tie_weights(model, xs0, tmp_path / "scales.onnx", seed=1)
    export(model, xs0, tmp_path / "m.onnx")
    m = load_model(str(tmp_path / "m.onnx"))
    ref64 = float64_reference(load_model(str(tmp_path / "m.onnx")))
    xs = _tie_inputs(ref64, (1, 4, 4), 4, seed=1)
    for step in compile_steps():
        m = run_step(m, step)
        _check_exact(ref64, m, xs)


def test_po2_cnn_ties_every_layer_exact(tmp_path):
    model = po2_cnn()
    xs0 = np.random.default_rng(0).random((8, 1, 6, 6)).astype(np.float32)
    set_tie_weights(model, xs0, tmp_path / "scales.onnx", seed=2)
    export(model, xs0, tmp_path / "po2_cnn.onnx")
    ref = load_model(str(tmp_path / "po2_cnn.onnx"))
    ref64 = float64_reference(ref)
    xs = _tie_inputs(ref64, (1, 6, 6), 6)
    compiled = lower_to_hw(ref)
    _check_exact(ref64, compiled, xs)


# ----------------------------------------------------------------- every qonnx rounding mode
def test_rounding_steps_hand_computed():
    # ROUND (half to even) on [-3, 3]: code >= k iff u >= k - 1/2, strictly when k is odd
    b, s = rounding_steps(-3, 3, "ROUND")
    np.testing.assert_array_equal(b, [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    np.testing.assert_array_equal(s, [False, True, False, True, False, True])
    b, s = rounding_steps(-3, 3, "CEIL")
    np.testing.assert_array_equal(b, [-3, -2, -1, 0, 1, 2])
    assert s.all()
    b, s = rounding_steps(-3, 3, "FLOOR")
    np.testing.assert_array_equal(b, [-2, -1, 0, 1, 2, 3])
    assert not s.any()
    b, s = rounding_steps(-3, 3, "HALF_UP")  # half away from zero
    np.testing.assert_array_equal(s, [True, True, True, False, False, False])
    b, s = rounding_steps(-3, 3, "DOWN")  # toward zero
    np.testing.assert_array_equal(b, [-3, -2, -1, 1, 2, 3])
    np.testing.assert_array_equal(s, [True, True, True, False, False, False])


def _tiny_graph(mode: str, signed: int = 1) -> ModelWrapper:
    """in (1, 4) -> Quant(scale 1/4, 6 bits unsigned) -> MatMul(integer W) -> Quant(mode,
    scale 1/2, 3 bits) -> MatMul -> out: pre-activations are multiples of 1/4, so every other
    value is a half step of the activation quantizer."""
    rng = np.random.default_rng(3)
    W1 = rng.integers(-3, 4, size=(4, 6)).astype(np.float32)
    W2 = rng.integers(-3, 4, size=(6, 3)).astype(np.float32)
    f = onnx.TensorProto.FLOAT
    inits = [oh.make_tensor(n, f, np.shape(v), np.asarray(v, dtype=np.float32).reshape(-1))
             for n, v in [("s_in", 0.25), ("z", 0.0), ("b_in", 6.0), ("W1", W1), ("s_w", 1.0), ("b_w", 3.0),
                          ("s_a", 0.5), ("b_a", 3.0), ("W2", W2)]]
    nodes = [
        oh.make_node("Quant", ["x", "s_in", "z", "b_in"], ["xq"], domain="qonnx.custom_op.general", name="inq",
                     signed=0, narrow=0, rounding_mode="ROUND"),
        oh.make_node("Quant", ["W1", "s_w", "z", "b_w"], ["W1q"], domain="qonnx.custom_op.general", name="wq1",
                     signed=1, narrow=0, rounding_mode="ROUND"),
        oh.make_node("MatMul", ["xq", "W1q"], ["h"], name="mm1"),
        oh.make_node("Quant", ["h", "s_a", "z", "b_a"], ["hq"], domain="qonnx.custom_op.general", name="act",
                     signed=signed, narrow=0, rounding_mode=mode),
        oh.make_node("Quant", ["W2", "s_w", "z", "b_w"], ["W2q"], domain="qonnx.custom_op.general", name="wq2",
                     signed=1, narrow=0, rounding_mode="ROUND"),
        oh.make_node("MatMul", ["hq", "W2q"], ["y"], name="mm2"),
    ]
    g = oh.make_graph(nodes, "ties", [oh.make_tensor_value_info("x", f, [1, 4])],
                      [oh.make_tensor_value_info("y", f, [1, 3])], inits)
    return ModelWrapper(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13),
                                                        oh.make_opsetid("qonnx.custom_op.general", 1)]))


@pytest.mark.parametrize("mode", ["ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("signed", [0, 1])
def test_every_qonnx_rounding_mode_exact_on_ties(mode, signed):
    model = _tiny_graph(mode, signed)
    ref64 = float64_reference(load_model(model))
    compiled = lower_to_hw(model)
    xs = (np.arange(64 * 4).reshape(64, 4) % 64 / 4.0).astype(np.float32)  # every input code on the grid
    ties = 0
    for i in range(len(xs)):
        x = xs[i: i + 1]
        u = run(ref64, x, full=True)[[n.output[0] for n in ref64.graph.node if n.name == "act_div64"][0]]
        ties += int(np.sum(np.asarray(u) % 1 == 0.5))
        np.testing.assert_array_equal(np.asarray(run(compiled, x), np.float64), np.asarray(run(ref64, x), np.float64),
                                      err_msg=f"{mode}: input {i}")
    assert ties > 20


def test_unknown_rounding_mode_is_refused_by_node_name():
    model = _tiny_graph("STOCHASTIC")
    with pytest.raises(UnsupportedError, match="act.*STOCHASTIC"):
        lower_to_hw(model)


# ----------------------------------------------------------------- bipolar ties at exactly 0
# qonnx's BipolarQuant (and a signed 1-bit Quant) maps x >= 0 to +1, as Brevitas' binary_sign
# does. With an uncalibrated BatchNorm (running mean 0, var 1, affine weight > 0 or < 0, bias 0)
# the pre-activation is the integer accumulator times a nonzero constant, so acc == 0 lands
# exactly on that step; with weight scale 0.1 and input scale 1/255 (not powers of two) the
# float64 reference used to leave a +-1e-17 residue there and pick -1 on some of them.

def _mini_cnv_spec() -> dict:
    """CNV in miniature (the zoo's layer dicts): two 3x3 convs, a pool, three fc layers."""
    from codesign.models.zoo import validate_spec

    conv = {"type": "conv", "kernel": 3, "stride": 1, "padding": 0, "bn": True, "act": True}
    spec = {"name": "mini_cnv", "input_shape": [3, 8, 8], "num_classes": 10, "layers": [
        {**conv, "name": "conv0", "out_channels": 16}, {**conv, "name": "conv1", "out_channels": 16},
        {"type": "pool", "kernel": 2}, {"type": "flatten"},
        {"type": "fc", "name": "fc0", "out_features": 32, "bn": True, "act": True},
        {"type": "fc", "name": "fc1", "out_features": 32, "bn": True, "act": True},
        {"type": "fc", "name": "fc2", "out_features": 10, "bn": False, "act": False}]}
    validate_spec(spec)
    return spec


def _bipolar_tie_model(tmp_path, negative_bn: bool) -> str:
    """w1a1 mini CNV with 8-bit input, exported by the product's own export; conv1 emits 4-bit
    codes so fc0 is a hidden bipolar layer fed multi-bit (non-power-of-two scale) inputs, fc1 a
    bipolar -> bipolar one. BatchNorms keep mean 0 and bias 0 (the step stays at acc == 0);
    with ``negative_bn`` half the channels get a negative weight (the lowering negates their
    weight columns) and the scales are random."""
    from codesign.export import export_qonnx
    from codesign.models.build import build_quant
    from codesign.models.plan import uniform_plan

    spec = _mini_cnv_spec()
    plan = uniform_plan(spec, 1, 1, input_bits=8)
    plan["layers"]["conv1"]["act_bits"] = 4
    torch.manual_seed(0)
    model = build_quant(spec, plan).eval()
    if negative_bn:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for bn in [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]:
                sign = torch.where(torch.arange(bn.num_features) % 2 == 0, 1.0, -1.0)
                bn.weight.copy_(sign * (0.5 + torch.rand(bn.num_features, generator=g)))
                bn.running_var.copy_(0.25 + torch.rand(bn.num_features, generator=g))
    path = tmp_path / f"mini_cnv_w1a1_{int(negative_bn)}.onnx"
    export_qonnx(model, torch.rand(1, 3, 8, 8), path)
    return str(path)


def _first_layer_zero_inputs(ref: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """n inputs on the input quantizer's grid (8-bit codes times its scale), each with one
    accumulator of the first conv made exactly 0 in each of four disjoint 3x3 windows: pixels
    of the window are moved until sum(code * weight) over the window is 0."""
    conv = [m for m in ref.graph.node if m.op_type == "Conv"][0]
    wq = ref.find_producer(conv.input[1])
    w = np.sign(ref.get_initializer(wq.input[0])).astype(np.int64)  # bipolar codes (OC, C, 3, 3)
    w[w == 0] = 1
    s_in = np.float64(np.asarray(ref.get_initializer(ref.find_producer(conv.input[0]).input[1])).reshape(()))
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(n):
        x = rng.integers(0, 256, size=(3, 8, 8))
        for r, c in [(0, 0), (0, 4), (4, 0), (4, 4)]:
            wj = w[rng.integers(w.shape[0])]
            win = x[:, r:r + 3, c:c + 3]
            acc = int(np.sum(win * wj))
            for p in rng.permutation(win.size):  # wj = +-1: moving a pixel by -acc * w cancels acc
                idx = np.unravel_index(p, win.shape)
                win[idx] = np.clip(win[idx] - acc * wj[idx], 0, 255)
                acc = int(np.sum(win * wj))
                if acc == 0:
                    break
            assert acc == 0
        xs.append((x * s_in).astype(np.float32)[None])
    return np.concatenate(xs)


def _exact_bipolar_codes(src: ModelWrapper, ref64: ModelWrapper, ctx: dict) -> list[tuple[str, np.ndarray, int]]:
    """Per bipolar activation of the source: (name, mismatches of the reference's codes with the
    exact rule, number of exact ties). The rule is computed from integers: the BatchNorm input
    divided by (input scale x weight scale) is the accumulator, checked to be an integer; with
    mean 0 and bias 0 the code is +1 iff acc * sign(BN weight) >= 0 (acc == 0 gives +1)."""
    out = []
    for q in [n for n in src.graph.node if n.op_type == "BipolarQuant" and src.get_initializer(n.input[0]) is None]:
        bn = src.find_producer(q.input[0])
        assert bn.op_type == "BatchNormalization"
        gamma, beta, mean = (src.get_initializer(bn.input[i]).astype(np.float64) for i in (1, 2, 3))
        assert not np.any(beta) and not np.any(mean) and np.all(gamma != 0)  # the step is at acc == 0
        lin = src.find_producer(bn.input[0])
        s_w = np.asarray(src.get_initializer(src.find_producer(lin.input[1]).input[1]), dtype=np.float64)
        if s_w.size > 1:  # per output channel: (OC, 1, 1, 1) for a Conv, (1, N) for a MatMul
            s_w = s_w.reshape((1, -1, 1, 1) if lin.op_type == "Conv" else (1, -1))
        else:
            s_w = s_w.reshape(())
        prod = src.find_producer(lin.input[0])
        while prod.op_type in ("MaxPool", "Flatten", "Reshape", "Transpose"):
            prod = src.find_producer(prod.input[0])
        assert prod.op_type in ("Quant", "BipolarQuant")
        s_x = float(np.asarray(src.get_initializer(prod.input[1])).reshape(()))
        u = np.asarray(ctx[bn.input[0]], dtype=np.float64) / (s_x * s_w)
        acc = np.round(u)
        assert np.max(np.abs(u - acc)) < 1e-6, f"{q.name}: accumulator is not an integer"
        sign = np.sign(gamma).reshape((1, -1) + (1,) * (acc.ndim - 2))
        expected = np.where(acc * sign >= 0, 1.0, -1.0)
        codes = np.asarray(ctx[[n for n in ref64.graph.node if n.name == f"{q.name}_cast64"][0].input[0]])
        out.append((q.name, int(np.sum(codes != expected)), int(np.sum(acc == 0))))
    return out


@pytest.mark.parametrize("negative_bn", [False, True])
def test_bipolar_ties_at_zero_first_and_hidden_layers_exact(tmp_path, negative_bn):
    """The product's CNV w1a1 case in miniature: every bipolar layer (the first conv, a hidden fc
    fed 4-bit codes, a hidden bipolar -> bipolar fc) has accumulators exactly 0. The float64
    reference must give them +1 (checked against the exact integer rule), and the compiled graph
    must equal the reference on every activation layer and the output (`codesign.dataflow.verify`)."""
    from codesign.dataflow.verify import compare

    path = _bipolar_tie_model(tmp_path, negative_bn)
    src = load_model(path)
    ref64 = float64_reference(src)
    xs = _first_layer_zero_inputs(src, 8)
    ties = None
    for i in range(len(xs)):
        rows = _exact_bipolar_codes(src, ref64, run(ref64, xs[i: i + 1], full=True))
        for name, bad, _ in rows:
            assert bad == 0, f"input {i}: {bad} codes of {name} differ from the exact rule (x >= 0 -> +1)"
        ties = [t for *_, t in rows] if ties is None else [a + t for a, (*_, t) in zip(ties, rows)]
    assert len(ties) == 3 and ties[0] >= 32 and min(ties) > 0, ties  # ties in every bipolar layer
    rep = compare(src, lower_to_hw(src), xs)
    assert rep["compared"] == "every activation layer and the output"
    assert rep["ok"], rep


def test_rtl_honours_bipolar_ties_and_strict_thresholds(tmp_path):
    """Verilator (one build): a chain MVAU(UINT8 x BIPOLAR -> BIPOLAR) -> MVAU(XNOR -> BIPOLAR)
    -> MVAU(XNOR, accumulator out) -> Thresholding(INT -> BIPOLAR) streams frames whose
    accumulators hit 0 in every stage. Thresholds are stored as the lowering stores them
    (``nudge``): 0 for the bipolar quantizer's ``x >= 0`` and, on alternate channels of the last
    two thresholded stages, a strict ``x > 0`` (``nextafter(0, inf)``), which the generator must
    turn into ``acc >= 1`` (popcount units for XNOR). Expected outputs come from numpy integers,
    not from the ops' golden code."""
    from codesign.dataflow.transforms.quant import nudge
    from codesign.hw.rtl import HWNodeSpec, render_nodes
    from codesign.hw.rtlsim import first_mismatch, run_frames

    rng = np.random.default_rng(5)
    n = 12
    WA = rng.choice([-1, 1], size=(12, 8))
    WB = rng.choice([-1, 1], size=(8, 8))
    WC = rng.choice([-1, 1], size=(8, 6))
    x = rng.integers(0, 256, size=(n, 12))
    for f in range(n):  # one column of the first stage cancels to exactly 0 per frame
        j = f % 8
        for p in rng.permutation(12):
            x[f, p] = np.clip(x[f, p] - int(x[f] @ WA[:, j]) * WA[p, j], 0, 255)
            if x[f] @ WA[:, j] == 0:
                break
    strict_b = np.arange(8) % 2 == 1
    strict_t = np.arange(6) % 2 == 0
    a = x @ WA
    ya = np.where(a >= 0, 1, -1)
    b = ya @ WB
    yb = np.where(np.where(strict_b, b > 0, b >= 0), 1, -1)
    c = yb @ WC
    expected = np.where(np.where(strict_t, c > 0, c >= 0), 1, -1)
    ties = [int(np.sum(v == 0)) for v in (a, b, c)]
    assert min(ties) > 0 and np.any((b == 0) & strict_b) and np.any((c == 0) & strict_t), ties

    def mvau(name, W, PE, SIMD, idt, odt, T=None):
        MW, MH = W.shape
        attrs = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType="BIPOLAR",
                     outputDataType=odt, ActVal=0, noActivation=int(T is None),
                     binaryXnorMode=int(idt == "BIPOLAR"), numInputVectors=[1], resType="lut",
                     ram_style="auto", mem_mode="const")
        return HWNodeSpec(name, "MVAU", attrs, {"W": W} if T is None else {"W": W, "T": T})

    zeros = np.zeros((8, 1))
    specs = [
        mvau("MVAU_first", WA, 4, 3, "UINT8", "BIPOLAR", zeros),
        mvau("MVAU_xnor", WB, 2, 4, "BIPOLAR", "BIPOLAR", nudge(zeros, strict_b[:, None])),
        mvau("MVAU_acc", WC, 3, 2, "BIPOLAR", "INT5"),
        HWNodeSpec("Thresholding_bipolar", "Thresholding",
                   dict(NumChannels=6, PE=3, numSteps=1, inputDataType="INT5", outputDataType="BIPOLAR",
                        ActVal=0, numInputVectors=[1]),
                   {"T": nudge(np.zeros((6, 1)), strict_t[:, None])}),
    ]
    assert specs[1].inits["T"][1, 0] > 0 and specs[1].inits["T"][0, 0] == 0  # stored as the lowering does
    design = render_nodes(specs, tmp_path / "rtl")
    res = run_frames(design, x, seed=2, p_bubble=0.3, p_stall=0.35)
    mism = first_mismatch(expected.reshape(n, -1), res.outputs)
    assert mism is None, mism
