"""Graph specs (issue 13): residual blocks, depthwise convs, average pools and the three graph
zoo nets (ResNet-8, MobileNet-v1 0.25, DS-CNN) as data, as float and Brevitas models, through
plans, relevance and the chain-only walks' refusals. Expected counts and forward passes are
computed here by hand from the published topologies, not from `layer_shapes`."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from codesign.errors import CodesignError
from codesign.models import (ZOO, build_float, build_quant, count_weights, layer_shapes, load_plan,
                             make_spec, quant_from_float, quant_layers, save_plan, uniform_plan, validate_plan,
                             validate_spec, with_widths)
from codesign.models.zoo import is_graph_spec, module_paths

SHAPES = [(1, 28, 28), (3, 32, 32)]
GRAPH_NETS = ("resnet8", "mobilenet", "dscnn")
MB_WIDTHS = [16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256]
MB_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _expected(name: str, shape) -> tuple[int, dict[str, tuple]]:
    """Weight count and some output shapes of the published topology, by hand."""
    cin, h, _ = shape
    if name == "resnet8":
        w = 9 * cin * 16 + 2 * 9 * 16 * 16 + (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32) \
            + (9 * 32 * 64 + 9 * 64 * 64 + 32 * 64) + 64 * 10
        h1 = _out(h, 3, 2, 1)
        h2 = _out(h1, 3, 2, 1)
        return w, {"conv0": (16, h, h), "conv2": (16, h, h), "conv3": (32, h1, h1), "conv5": (32, h1, h1),
                   "conv7": (64, h2, h2), "conv8": (64, h2, h2), "fc0": (10,)}
    if name == "mobilenet":
        ins = [8] + MB_WIDTHS[:-1]
        w = 9 * cin * 8 + sum(9 * c + c * o for c, o in zip(ins, MB_WIDTHS)) + 256 * 10
        side = _out(h, 3, 2, 1)
        for s in MB_STRIDES:
            side = _out(side, 3, s, 1)
        return w, {"conv0": (8, _out(h, 3, 2, 1), _out(h, 3, 2, 1)), "dw12": (256, side, side),
                   "pw12": (256, side, side), "fc0": (10,)}
    w = 10 * 4 * cin * 64 + 4 * (9 * 64 + 64 * 64) + 64 * 10
    oh, ow = _out(h, 10, 2, 5), _out(h, 4, 2, 1)
    return w, {"conv0": (64, oh, ow), "dw3": (64, oh, ow), "pw3": (64, oh, ow), "fc0": (10,)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", GRAPH_NETS)
def test_graph_zoo_shapes_and_weight_counts(name, shape):
    spec = make_spec(name, shape)
    assert name in ZOO and is_graph_spec(spec)
    weights, outs = _expected(name, shape)
    shapes = layer_shapes(spec)
    assert sum(s["weights"] for s in shapes.values()) == weights
    assert count_weights(build_float(spec)) == weights  # the torch modules' own weight tensors
    for lname, o in outs.items():
        assert tuple(shapes[lname]["out_shape"]) == o, lname
    assert list(shapes) == [l["name"] for l in quant_layers(spec)]
    if name == "mobilenet":
        assert shapes["dw3"]["groups"] == shapes["dw3"]["fan_out"] == 32 and shapes["dw3"]["fan_in"] == 9
        assert shapes["dw3"]["weights"] == 32 * 9
    if name == "dscnn":
        assert shapes["conv0"]["kernel"] == [10, 4] and shapes["conv0"]["padding"] == [5, 1]
        assert shapes["conv0"]["fan_in"] == 40 * shape[0] and shapes["conv0"]["groups"] == 1


def test_resnet8_execution_order_and_module_paths():
    spec = make_spec("resnet8")
    assert [l["name"] for l in quant_layers(spec)] == [f"conv{i}" for i in range(9)] + ["fc0"]
    paths = module_paths(spec)
    assert paths["conv0"] == "body.conv0" and paths["conv3"] == "body.res1.body.conv3"
    assert paths["conv5"] == "body.res1.shortcut.conv5" and paths["fc0"] == "body.fc0"
    sd = build_float(spec).state_dict()
    assert "body.res1.body.conv3.weight" in sd and "body.res1.shortcut.conv5_bn.running_var" in sd
    assert "body.res0.body.conv2_bn.weight" in sd and not any(k.startswith("body.res0.shortcut") for k in sd)


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _cbr(sd, x, key, stride, pad, act=True, groups=1):
    y = F.conv2d(x, sd[key + ".weight"], stride=stride, padding=pad, groups=groups)
    y = F.batch_norm(y, sd[key + "_bn.running_mean"], sd[key + "_bn.running_var"], sd[key + "_bn.weight"],
                     sd[key + "_bn.bias"], False, 0.0, 1e-5)
    return F.relu(y) if act else y


def _reference_forward(name: str, sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The float network written out by hand from its published topology."""
    if name == "resnet8":
        y = _cbr(sd, x, "body.conv0", 1, 1)
        b = _cbr(sd, _cbr(sd, y, "body.res0.body.conv1", 1, 1), "body.res0.body.conv2", 1, 1, act=False)
        y = F.relu(b + y)
        for blk, (c1, c2, sc) in (("res1", (3, 4, 5)), ("res2", (6, 7, 8))):
            b = _cbr(sd, _cbr(sd, y, f"body.{blk}.body.conv{c1}", 2, 1), f"body.{blk}.body.conv{c2}", 1, 1, act=False)
            y = F.relu(b + _cbr(sd, y, f"body.{blk}.shortcut.conv{sc}", 2, 0, act=False))
    elif name == "mobilenet":
        y = _cbr(sd, x, "body.conv0", 2, 1)
        for i, s in enumerate(MB_STRIDES):
            y = _cbr(sd, y, f"body.dw{i}", s, 1, groups=y.shape[1])
            y = _cbr(sd, y, f"body.pw{i}", 1, 0)
    else:
        y = _cbr(sd, x, "body.conv0", (2, 2), (5, 1))
        for i in range(4):
            y = _cbr(sd, _cbr(sd, y, f"body.dw{i}", 1, 1, groups=64), f"body.pw{i}", 1, 0)
    return y.mean((2, 3)) @ sd["body.fc0.weight"].T


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", GRAPH_NETS)
def test_float_and_quant_forward(name, shape):
    torch.manual_seed(0)
    spec = make_spec(name, shape)
    f = _randomise_bn(build_float(spec))
    x = torch.rand(2, *shape)
    with torch.no_grad():
        got = f(x)
        ref = _reference_forward(name, f.state_dict(), x)
    assert got.shape == (2, 10)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    if shape != SHAPES[0]:
        return  # the Brevitas model is built and run once per net (time)
    q = quant_from_float(spec, uniform_plan(spec, 4, 4), f.state_dict()).eval()
    with torch.no_grad():
        yq = q(x)
    assert yq.shape == (2, 10) and torch.isfinite(yq).all()


def test_float_weights_load_into_the_quant_model():
    spec = make_spec("resnet8", (3, 32, 32))
    f = _randomise_bn(build_float(spec), seed=3)
    q = quant_from_float(spec, uniform_plan(spec, 4, 4), f.state_dict())
    for n in [l["name"] for l in quant_layers(spec)]:
        assert torch.equal(q.layer(n).weight, f.layer(n).weight), n
        if q.bn(n) is not None:
            assert torch.equal(q.bn(n).running_mean, f.bn(n).running_mean), n
    assert f.bn("fc0") is None and f.bn("conv5") is not None
    with pytest.raises(CodesignError, match="lacks weights"):
        quant_from_float(spec, uniform_plan(spec, 4, 4), {k: v for k, v in f.state_dict().items()
                                                           if "conv5" not in k})


def test_plan_round_trip_and_join_bits(tmp_path):
    """One plan entry per quant layer (body and shortcut layers too); the body's last layer's
    act_bits a give the block's QuantReLU (a bits) and the shared signed join (a + 1 bits)."""
    spec = make_spec("resnet8")
    plan = uniform_plan(spec, 4, 4)
    assert set(plan["layers"]) == {f"conv{i}" for i in range(9)} | {"fc0"}
    plan["layers"]["conv4"].update(weight_bits=3, act_bits=5)
    plan["layers"]["dummy"] = {"weight_bits": 2}
    with pytest.raises(CodesignError, match="dummy"):
        validate_plan(spec, plan)
    del plan["layers"]["dummy"]
    path = save_plan(tmp_path / "plan.json", plan)
    again = load_plan(path, spec)
    assert again == plan
    q = build_quant(spec, again)
    blk = q.body.res1
    assert int(blk.join.act_quant.bit_width()) == 6 and blk.join.act_quant.is_signed
    assert int(blk.act.act_quant.bit_width()) == 5 and not blk.act.act_quant.is_signed
    assert q.act("conv4") is blk.act and q.act("conv5") is None and q.act("conv3") is q.body.res1.body.conv3_act
    assert int(q.layer("conv4").quant_weight().bit_width) == 3
    bad = copy.deepcopy(plan)
    del bad["layers"]["conv4"]["act_bits"]
    with pytest.raises(CodesignError, match="conv4"):
        validate_plan(spec, bad)


def test_with_widths_on_a_residual_spec():
    spec = make_spec("resnet8")
    widths = {"conv0": 4, "conv1": 3, "conv2": 4, "conv3": 6, "conv4": 8, "conv5": 8,
              "conv6": 5, "conv7": 12, "conv8": 12}
    small = with_widths(spec, widths)
    shapes = layer_shapes(small)
    assert {n: shapes[n]["fan_out"] for n in widths} == widths
    assert shapes["conv5"]["in_shape"][0] == 4 and shapes["fc0"]["in_shape"] == (12,)
    assert shapes["conv4"]["in_shape"][0] == 6 and shapes["conv4"]["weights"] == 6 * 9 * 8
    assert spec == make_spec("resnet8")  # the original is untouched
    x = torch.rand(2, 1, 28, 28)
    assert build_float(small)(x).shape == (2, 10)
    # the identity shortcut ties conv2's width to conv0's: a mismatch names the block
    with pytest.raises(CodesignError, match=r"residual block 'res0'.*\(3, 28, 28\).*\(4, 28, 28\)"):
        with_widths(spec, dict(widths, conv2=3))
    # a dwconv follows its input: setting it to anything else names the layer
    mb = make_spec("mobilenet")
    assert layer_shapes(with_widths(mb, {"conv0": 5, "dw0": 5}))["dw0"]["weights"] == 45
    with pytest.raises(CodesignError, match="dw0 is a dwconv"):
        with_widths(mb, {"conv0": 5, "dw0": 8})


def _tiny_res(**over):
    res = {"type": "residual", "name": "res0",
           "body": [{"type": "conv", "name": "c1", "out_channels": 4, "kernel": 3, "padding": 1, "bn": True,
                     "act": True},
                    {"type": "conv", "name": "c2", "out_channels": 4, "kernel": 3, "padding": 1, "bn": True,
                     "act": False}],
           "shortcut": []}
    res.update(over)
    return {"name": "tiny", "input_shape": [1, 8, 8], "num_classes": 10, "layers": [
        {"type": "conv", "name": "c0", "out_channels": 4, "kernel": 3, "padding": 1, "bn": True, "act": True},
        res, {"type": "gap"}, {"type": "flatten"},
        {"type": "fc", "name": "fc", "out_features": 10, "bn": False, "act": False}]}


def test_clear_errors():
    validate_spec(_tiny_res())
    bad = _tiny_res()
    bad["layers"][1]["body"][0]["type"] = "conv3d"
    with pytest.raises(CodesignError, match=r"unknown layer type 'conv3d' \(layer c1"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][1]["body"][0]["stride"] = 2
    with pytest.raises(CodesignError, match=r"residual block 'res0': the body gives \(4, 4, 4\).*\(4, 8, 8\)"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][1]["body"][1]["name"] = "c0"
    with pytest.raises(CodesignError, match=r"duplicate layer names in spec: \['c0'\]"):
        validate_spec(bad)
    bad = _tiny_res(shortcut=[{"type": "dwconv", "name": "d", "out_channels": 4, "kernel": 1, "bn": True,
                               "act": False}])
    with pytest.raises(CodesignError, match="layer d: a dwconv has no out_channels"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][1]["body"][1]["act"] = True
    with pytest.raises(CodesignError, match="res0.*last layer must be a conv/dwconv with act false"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][1]["body"].insert(1, {"type": "flatten"})
    with pytest.raises(CodesignError, match="flatten inside a residual block"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][0]["kernel"] = [3, 3, 3]
    with pytest.raises(CodesignError, match=r"layer c0: kernel must be an int or \[h, w\]"):
        validate_spec(bad)
    bad = _tiny_res()
    bad["layers"][0]["groups"] = 3
    with pytest.raises(CodesignError, match="layer c0: groups=3 must divide"):
        validate_spec(bad)
    with pytest.raises(CodesignError, match="unknown model"):
        make_spec("resnet9")


# ------------------------------------------------------------------ relevance on graph models

TINY_WIDTHS = {
    "resnet8": {"conv0": 4, "conv1": 3, "conv2": 4, "conv3": 6, "conv4": 6, "conv5": 6, "conv6": 8, "conv7": 8,
                "conv8": 8},
    "mobilenet": {"conv0": 4, **{f"pw{i}": max(2, w // 16) for i, w in enumerate(MB_WIDTHS)}},
    "dscnn": {"conv0": 8, **{f"pw{i}": 8 for i in range(4)}},
}


def _tiny(name: str, shape=(1, 28, 28)):
    return with_widths(make_spec(name, shape), TINY_WIDTHS[name])


def _images(n: int, shape=(1, 28, 28), offset: int = 0) -> torch.Tensor:
    from dataflow_helpers import images

    return torch.from_numpy(images(n, shape, offset))


@pytest.mark.parametrize("kind", ["quant", "float"])
def test_deeplift_on_a_residual_net_is_complete_and_per_unit(kind):
    """DeepLIFT on ResNet-8 (4-bit and float): one score per unit of every quant layer,
    including body and shortcut convs; completeness holds at every top-level cut and, per
    block with a conv shortcut, over the two branch ends together (the check raises else)."""
    from codesign.relevance import compute_relevance
    from dataflow_helpers import calibrate_and_randomise_bn

    spec = _tiny("resnet8")
    x, y = _images(6), torch.arange(6) % 10
    torch.manual_seed(0)
    model = build_quant(spec, uniform_plan(spec, 4, 4)) if kind == "quant" else build_float(spec)
    calibrate_and_randomise_bn(model, x.numpy())
    rel = compute_relevance(model, spec, x, y, method="deeplift", progress=False, batch_size=6)
    shapes = layer_shapes(spec)
    assert list(rel.layers) == list(shapes)
    for n, s in shapes.items():
        assert len(rel.layers[n]["units"]) == s["fan_out"] and len(rel.layers[n]["in_act"]) == s["in_shape"][0], n
    assert sum(rel.layers["conv5"]["units"]) > 0  # the shortcut conv is attributed
    c = rel.convergence
    assert set(c["block_max_abs"]) == {"res1", "res2"} and set(c["per_layer_max_abs"]) == {"conv0", "fc0"}
    assert c["relative"] < 1e-3, c
    assert rel.layers["conv4"]["weight_shape"] == [6, 6, 3, 3]


@pytest.mark.parametrize("method", ["magnitude", "taylor", "random", "deeplift"])
def test_relevance_lengths_on_depthwise_nets(method):
    from codesign.relevance import compute_relevance, weight_relevance

    spec = _tiny("dscnn")
    x, y = _images(4), torch.arange(4) % 10
    torch.manual_seed(1)
    model = _randomise_bn(build_quant(spec, uniform_plan(spec, 4, 4)))
    rel = compute_relevance(model, spec, x, y, method=method, progress=False, batch_size=4)
    for n, s in layer_shapes(spec).items():
        assert len(rel.layers[n]["units"]) == s["fan_out"], n
    assert rel.layers["dw1"]["weight_shape"] == [8, 1, 3, 3] and rel.layers["conv0"]["weight_shape"] == [64 // 8, 1, 10, 4]
    # a dwconv unit's relevance is spread over its own 9 weights, which read its own input channel
    w = model.layer("dw1").weight
    wr = weight_relevance(rel, "dw1", w)
    assert wr.shape == w.shape
    if method != "random":  # random scores every weight on its own
        live = torch.tensor(rel.layers["dw1"]["in_act"]) > 0  # a dead input channel gives its weights nothing
        assert live.any()
        torch.testing.assert_close(wr.flatten(1).sum(1)[live],
                                   torch.tensor(rel.layers["dw1"]["units"], dtype=torch.float32)[live],
                                   rtol=1e-5, atol=1e-7)


def test_lrp_and_chain_walks_refuse_graph_specs():
    from codesign.compress.prune import apply_structured, prune_structured
    from codesign.dataflow.fast import FastNet
    from codesign.designspace.space import SearchSpace
    from codesign.errors import UnsupportedError
    from codesign.relevance import compute_relevance

    spec = _tiny("resnet8")
    model = build_float(spec).eval()
    x, y = _images(4), torch.arange(4)
    with pytest.raises(CodesignError, match=r"LRP relevance handles chain specs only; model 'resnet8' has residual"):
        compute_relevance(model, spec, x, y, method="lrp", progress=False)
    rel = compute_relevance(model, spec, x, y, method="magnitude", progress=False)
    with pytest.raises(CodesignError, match=r"chain specs only.*codesign\.compress\.depgraph") as e:
        prune_structured(spec, model.state_dict(), rel, 0.5)
    assert "\n" not in str(e.value)
    with pytest.raises(CodesignError, match="depgraph"):
        apply_structured(spec, model.state_dict(), {"conv0": [0, 1]})
    for name in GRAPH_NETS:
        with pytest.raises(UnsupportedError, match=rf"FastNet\.from_spec\) handles chain specs only; model '{name}'"):
            FastNet.from_spec(make_spec(name))
    with pytest.raises(CodesignError, match=r"prune_levels=\(0,\)"):
        SearchSpace(make_spec("mobilenet"))
    assert SearchSpace(make_spec("mobilenet"), prune_levels=(0,)).layers[-1] == "fc0"


# ------------------------------------------------- export (codesign.export) and compile, w4a4

def _export_and_compile(name: str, tmp_path, shape=(1, 28, 28), n: int = 2):
    """The Brevitas model of a (narrowed) zoo net at w4a4 exported with codesign's export (numeric
    check on real images), lowered by the dataflow compiler, and compared bit-exactly (the last
    MVAU's integer accumulator) with the QONNX model run in float64."""
    from codesign.dataflow.compiler import hw_nodes, load_model, lower_to_hw
    from codesign.export import export_qonnx
    from dataflow_helpers import assert_bit_exact, calibrate_and_randomise_bn, float64_reference

    spec = _tiny(name, shape)
    x = _images(32, shape)
    torch.manual_seed(0)
    model = calibrate_and_randomise_bn(build_quant(spec, uniform_plan(spec, 4, 4)), x.numpy())
    path = export_qonnx(model, x[:1], tmp_path / f"{name}.onnx", check_batch=x[:8])
    ref64 = float64_reference(load_model(str(path)))
    test_x = _images(n, shape, offset=100).numpy()
    compiled = lower_to_hw(load_model(str(path)))
    assert_bit_exact(ref64, compiled, test_x)
    return [nd.op_type for nd in hw_nodes(compiled)]


@pytest.mark.slow
def test_resnet8_compiles_bit_exact(tmp_path):
    ops = _export_and_compile("resnet8", tmp_path)
    # three residual joins (fork + add each), 9 convs + the fc on MVAUs, the global pool's sum on a VVAU
    assert ops.count("DuplicateStreams") == ops.count("AddStreams") == 3
    assert ops.count("MVAU") == 10 and ops.count("VVAU") == 1


@pytest.mark.slow
def test_dscnn_compiles_bit_exact(tmp_path):
    ops = _export_and_compile("dscnn", tmp_path)
    # the 10x4 stem and 4 pointwise convs + fc on MVAUs; 4 depthwise convs + the pool sum on VVAUs
    assert ops.count("MVAU") == 6 and ops.count("VVAU") == 5


@pytest.mark.slow
def test_mobilenet_compiles_bit_exact(tmp_path):
    ops = _export_and_compile("mobilenet", tmp_path)
    assert ops.count("VVAU") == 14
