"""Dependency-aware structured pruning (codesign.compress.depgraph, Torch-Pruning's DepGraph).

Independent checks: on chain specs the result must equal prune.py's chain pruning exactly
(keep indices, every state-dict value, the new spec, the sliced relevance); on a residual
network with a depthwise conv the pruned module must compute exactly what the unpruned one
computes once the chosen channels' filters and BN scale/shift are zero (so exactly those
channels, and all their consumers' inputs, were removed), with residual groups consistent.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from codesign.compress.depgraph import (DependencyGroups, needs_depgraph, prune_module,
                                        prune_spec_structured, prune_structured_graph,
                                        slice_relevance_graph, spec_layer_names)
from codesign.compress.prune import (apply_structured, prune_structured, select_units,
                                     slice_relevance)
from codesign.errors import CodesignError
from codesign.models import build_float, layer_shapes, make_spec, quant_layers, with_widths
from codesign.relevance import Relevance, weight_shapes


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BN statistics, so a wrongly sliced entry shows in values and outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


# ----------------------------------------------------------------------------- chains

def _tiny_chains() -> dict[str, dict]:
    cnv = with_widths(make_spec("cnv", (3, 32, 32)), {"conv0": 8, "conv1": 8, "conv2": 12, "conv3": 12,
                                                     "conv4": 16, "conv5": 16, "fc0": 24, "fc1": 20})
    lenet = make_spec("lenet", (1, 28, 28))  # conv1 -> flatten over 5x5: the H*W expansion into fc0
    tfc = with_widths(make_spec("tfc", (1, 28, 28)), {"fc0": 16, "fc1": 12, "fc2": 12})
    return {"cnv": cnv, "lenet": lenet, "tfc": tfc}


def _scores(spec: dict, seed: int, ties: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for l in quant_layers(spec)[:-1]:
        w = layer_shapes(spec)[l["name"]]["fan_out"]
        out[l["name"]] = (rng.integers(0, 4, w).astype(np.float64) if ties else rng.random(w) * rng.random() * 10)
    return out


@pytest.mark.parametrize("model", ["cnv", "lenet", "tfc"])
def test_chain_specs_equal_chain_pruning(model):
    spec = _tiny_chains()[model]
    assert not needs_depgraph(spec)
    torch.manual_seed(0)
    state = _randomise(build_float(spec), 1).state_dict()
    names = [l["name"] for l in quant_layers(spec)]
    cases = [(0.25, "layer", False), (0.5, "global", False), (0.5, "layer", True), (0.3, "global", True),
             ({names[0]: 0.5, names[-2]: 0.25}, "layer", False)]
    for k, (ratio, scope, ties) in enumerate(cases):
        scores = _scores(spec, k, ties)
        want = apply_structured(spec, state, select_units(spec, scores, ratio, scope=scope))
        got = prune_spec_structured(spec, state, scores, ratio, scope)
        assert got.keep == want.keep, (model, ratio, scope)
        assert got.spec == want.spec
        assert list(got.state_dict) == list(want.state_dict)
        for key, v in want.state_dict.items():
            assert torch.equal(got.state_dict[key], v), (model, ratio, scope, key)
        assert got.keep[names[-2]] and names[-1] not in got.keep  # logits never pruned


def _relevance(spec: dict, seed: int) -> Relevance:
    """A relevance object with distinct per-unit and per-input values (to check slicing)."""
    rng = np.random.default_rng(seed)
    shapes, ws = layer_shapes(spec), weight_shapes(spec)
    layers = {}
    for l in quant_layers(spec):
        s = shapes[l["name"]]
        units = rng.random(s["fan_out"]).tolist()
        layers[l["name"]] = {"type": l["type"], "weight_shape": ws[l["name"]], "units": units,
                             "in_act": rng.random(s["fan_in"] if s["type"] == "fc" else s["in_shape"][0]).tolist(),
                             "total": float(sum(units))}
    grand = sum(e["total"] for e in layers.values())
    for e in layers.values():
        e["score"] = e["total"] / grand
    return Relevance(method="deeplift", spec=spec, layers=layers, baseline="zero", samples=8)


@pytest.mark.parametrize("model", ["cnv", "lenet"])
def test_chain_relevance_slicing_equals_chain_slicing(model):
    spec = _tiny_chains()[model]
    state = _randomise(build_float(spec), 2).state_dict()
    rel = _relevance(spec, 3)
    want = prune_structured(spec, state, rel, 0.4, scope="global")
    got = prune_structured_graph(spec, state, rel, 0.4, scope="global")
    assert got.keep == want.keep
    rw, rg = slice_relevance(rel, want), slice_relevance_graph(rel, got)
    assert rg.spec == rw.spec
    assert rg.layers == rw.layers
    rg.check_matches(got.spec)


# ----------------------------------------------------------------------------- residual graph

class _Residual(nn.Module):
    """graphspec.md's residual item: act(join(body(x)) + join(shortcut(x)))."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body, self.shortcut, self.join, self.act = body, shortcut, nn.Identity(), nn.ReLU()

    def forward(self, x):
        return self.act(self.join(self.body(x)) + self.join(self.shortcut(x)))


def _cba(name, cin, cout, k, stride=1, pad=0, groups=1, act=True):
    items = [(name, nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)),
             (f"{name}_bn", nn.BatchNorm2d(cout))]
    return items + ([(f"{name}_act", nn.ReLU())] if act else [])


class TinyResNet(nn.Module):
    """Stem conv; an identity residual block; a block with a strided body (3x3 conv, depthwise
    3x3, pointwise 1x1) and a 1x1 strided conv shortcut; gap; fc (the SpecNet layout)."""

    def __init__(self):
        super().__init__()
        m = OrderedDict(_cba("conv0", 3, 8, 3, pad=1))
        m["res1"] = _Residual(nn.Sequential(OrderedDict(_cba("conv1", 8, 8, 3, pad=1)
                                                        + _cba("conv2", 8, 8, 3, pad=1, act=False))),
                              nn.Sequential())
        m["res2"] = _Residual(nn.Sequential(OrderedDict(_cba("conv3", 8, 16, 3, 2, 1) + _cba("dw4", 16, 16, 3, 1, 1, 16)
                                                        + _cba("conv5", 16, 16, 1, act=False))),
                              nn.Sequential(OrderedDict(_cba("conv6", 8, 16, 1, 2, act=False))))
        m["gap"] = nn.AdaptiveAvgPool2d(1)
        m["flatten"] = nn.Flatten()
        m["fc0"] = nn.Linear(16, 10, bias=False)
        self.body = nn.Sequential(m)

    def forward(self, x):
        return self.body(x)


# The coupled channels, written down by hand from the topology (not from the tracer).
GROUPS = [("conv0", "conv2"), ("conv1",), ("conv3", "dw4"), ("conv5", "conv6")]
WIDTH = {"conv0": 8, "conv2": 8, "conv1": 8, "conv3": 16, "dw4": 16, "conv5": 16, "conv6": 16}


def _net(seed=0):
    torch.manual_seed(seed)
    return _randomise(TinyResNet(), seed).double().eval()


def _x():
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _modules(net):
    return {n: m for m, n in spec_layer_names(net).items()}


def _bn(net, name):
    for qual, m in net.named_modules():
        if qual.rsplit(".", 1)[-1] == f"{name}_bn":
            return m
    return None


def test_groups_follow_residual_adds_and_depthwise():
    net = _net()
    groups = DependencyGroups(net, _x()[:1])
    assert [tuple(g.layers) for g in groups.groups] == [tuple(sorted(g, key=list(WIDTH).index)) for g in GROUPS]
    assert groups.logits == "fc0" and "fc0" not in groups.group_of
    # consumers: conv3 and conv6 read the block input (group conv0/conv2), fc0 reads conv5/conv6
    cons = {tuple(g.layers): set(g.consumers) for g in groups.groups}
    assert cons[("conv0", "conv2")] == {"conv1", "conv3", "conv6"}
    assert cons[("conv5", "conv6")] == {"fc0"}
    assert cons[("conv3", "dw4")] == {"dw4", "conv5"}


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_pruned_residual_net_equals_zeroed_channels(ratio):
    net = _net(1)
    x = _x()
    rng = np.random.default_rng(int(ratio * 100))
    drop: dict[str, list[int]] = {}
    scores = {}
    for g in GROUPS:
        w = WIDTH[g[0]]
        d = sorted(rng.choice(w, int(round(ratio * w)), replace=False).tolist())
        for n in g:
            s = 1.0 + rng.random(w)
            s[d] = rng.random(len(d)) * 0.1  # lowest in every member, so lowest in the sum
            scores[n] = s
            drop[n] = d
    with torch.no_grad():  # the case the pruned net must reproduce: those channels output exactly 0
        mods = _modules(net)
        for n, d in drop.items():
            mods[n].weight[d] = 0
            _bn(net, n).weight[d] = 0
            _bn(net, n).bias[d] = 0
        want = net(x)
    pruned, keep, keep_in = prune_module(net, x[:1], scores, ratio)
    for g in GROUPS:  # residual groups stay consistent: the same channels leave every member
        for n in g:
            assert keep[n] == sorted(set(range(WIDTH[n])) - set(drop[n])), n
    assert keep["conv0"] == keep["conv2"] and keep["conv5"] == keep["conv6"] and keep["conv3"] == keep["dw4"]
    assert keep_in["conv3"] == keep_in["conv6"] == keep_in["conv1"] == keep["conv0"]
    assert keep_in["fc0"] == keep["conv5"] and "fc0" not in keep
    m = _modules(pruned)
    w8, w16 = 8 - int(round(ratio * 8)), 16 - int(round(ratio * 16))
    assert [m[n].out_channels for n in ("conv0", "conv1", "conv2")] == [w8] * 3
    assert [m[n].out_channels for n in ("conv3", "dw4", "conv5", "conv6")] == [w16] * 4
    assert m["dw4"].groups == m["dw4"].in_channels == w16
    assert (m["conv3"].in_channels, m["conv6"].in_channels, m["fc0"].in_features, m["fc0"].out_features) == \
        (w8, w8, w16, 10)
    with torch.no_grad():
        got = pruned(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_group_score_is_the_sum_over_members():
    net = _net(2)
    ref = _net(2)
    rng = np.random.default_rng(7)
    scores = {n: rng.random(w) for n, w in WIDTH.items()}
    _, keep, _ = prune_module(net, _x()[:1], scores, 0.5)
    for g in GROUPS:
        total = sum(scores[n] for n in g)
        want = sorted(np.argsort(-total, kind="stable")[: WIDTH[g[0]] // 2].tolist())
        for n in g:
            assert keep[n] == want, n
    # kept filters are the original ones, and the consumers keep the matching input channels
    a, b = _modules(net), _modules(ref)
    torch.testing.assert_close(a["conv6"].weight, b["conv6"].weight[keep["conv6"]][:, keep["conv0"]], rtol=0, atol=0)
    torch.testing.assert_close(a["dw4"].weight, b["dw4"].weight[keep["dw4"]], rtol=0, atol=0)
    torch.testing.assert_close(a["fc0"].weight, b["fc0"].weight[:, keep["conv5"]], rtol=0, atol=0)
    torch.testing.assert_close(_bn(net, "conv2").running_mean, _bn(ref, "conv2").running_mean[keep["conv2"]])


def test_global_scope_normalises_per_group():
    net = _net(3)
    rng = np.random.default_rng(11)
    # group conv5/conv6 on a 1000x larger scale: per-group normalisation must not spare it
    scores = {n: rng.random(w) * (1000.0 if n in ("conv5", "conv6") else 1.0) for n, w in WIDTH.items()}
    groups = DependencyGroups(net, _x()[:1])
    keep_g = groups.select(scores, 0.5, scope="global")
    total = sum(g.width for g in groups.groups)
    assert total - sum(len(k) for k in keep_g) == round(0.5 * total)
    big = next(i for i, g in enumerate(groups.groups) if "conv5" in g.members)
    assert len(keep_g[big]) < groups.groups[big].width
    groups.prune(keep_g)
    assert _modules(net)["fc0"].out_features == 10


def test_bad_ratios_and_scores_are_clear_errors():
    net = _net(4)
    groups = DependencyGroups(net, _x()[:1])
    scores = {n: np.ones(w) for n, w in WIDTH.items()}
    with pytest.raises(CodesignError, match="share their channels"):
        groups.select(scores, {"conv5": 0.5, "conv6": 0.25})
    with pytest.raises(CodesignError, match="logits layer is never pruned"):
        groups.select(scores, {"fc0": 0.5})
    with pytest.raises(CodesignError, match="belongs to another model"):
        groups.select(dict(scores, conv1=np.ones(3)), 0.5)
    with pytest.raises(CodesignError, match="pruning ratio"):
        groups.select(scores, 1.0)
    keep_g = groups.select(scores, {"conv5": 0.5, "conv6": 0.5})  # one ratio for a shared group is fine
    assert [len(k) for k in keep_g] == [8, 8, 16, 8]
    grouped = nn.Sequential(OrderedDict(_cba("conv0", 3, 8, 3) + _cba("conv1", 8, 8, 3, groups=2)
                                        + [("flatten", nn.Flatten()), ("fc0", nn.Linear(8 * 4 * 4, 2))]))
    with pytest.raises(CodesignError, match="grouped conv"):
        DependencyGroups(grouped, torch.zeros(1, 3, 8, 8))


def test_needs_depgraph_reads_layer_types():
    for spec in _tiny_chains().values():
        assert not needs_depgraph(spec)
    conv = {"type": "conv", "name": "c", "out_channels": 4, "kernel": 1, "bn": True, "act": True}
    assert needs_depgraph({"layers": [conv, {"type": "residual", "name": "r", "body": [], "shortcut": []}]})
    assert needs_depgraph({"layers": [conv, {"type": "dwconv", "name": "d", "kernel": 3, "bn": True, "act": True}]})
    assert needs_depgraph({"layers": [dict(conv, groups=2)]})


class TinyConcatNet(nn.Module):
    """A concat joined by an add (one group spanning two convs' channel ranges and a 1x1 conv),
    then a concat of that with another branch read by one conv (two groups, one consumer)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(_cba("conv0", 3, 8, 3, pad=1)))
        self.a = nn.Sequential(OrderedDict(_cba("conv1", 8, 4, 3, pad=1, act=False)))
        self.b = nn.Sequential(OrderedDict(_cba("conv2", 8, 6, 1, act=False)))
        self.c = nn.Sequential(OrderedDict(_cba("conv4", 8, 10, 1, act=False)))
        self.d = nn.Sequential(OrderedDict(_cba("conv6", 8, 4, 1)))
        self.tail = nn.Sequential(OrderedDict(_cba("conv7", 14, 6, 1) + [("gap", nn.AdaptiveAvgPool2d(1)),
                                                                         ("flatten", nn.Flatten()),
                                                                         ("fc0", nn.Linear(6, 3, bias=False))]))

    def forward(self, x):
        h = self.stem(x)
        j = torch.relu(torch.cat([self.a(h), self.b(h)], 1) + self.c(h))
        return self.tail(torch.cat([j, self.d(h)], 1))


def test_concat_groups_map_channel_ranges():
    net = _randomise(TinyConcatNet(), 8).double().eval()
    ref = _randomise(TinyConcatNet(), 8).double().eval()
    x = _x()
    groups = DependencyGroups(net, x[:1])
    assert sorted(tuple(sorted(g.layers)) for g in groups.groups) == \
        [("conv0",), ("conv1", "conv2", "conv4"), ("conv6",), ("conv7",)]
    # removed by hand: conv1 unit 1 and conv2 units 0, 3 = channels 1, 4, 7 of the add (conv4)
    drop = {"conv1": [1], "conv2": [0, 3], "conv4": [1, 4, 7], "conv6": [2], "conv0": [5], "conv7": [0, 3]}
    widths = {"conv0": 8, "conv1": 4, "conv2": 6, "conv4": 10, "conv6": 4, "conv7": 6}
    rng = np.random.default_rng(9)
    scores = {}
    for n, w in widths.items():
        s = 1.0 + rng.random(w)
        s[drop[n]] = 0.0
        scores[n] = s
    ratio = {"conv0": 1 / 8, "conv1": 0.3, "conv6": 0.25, "conv7": 2 / 6}
    with torch.no_grad():
        mods = _modules(net)
        for n, d in drop.items():
            mods[n].weight[d] = 0
            _bn(net, n).weight[d] = 0
            _bn(net, n).bias[d] = 0
        want = net(x)
    _, keep, keep_in = prune_module(net, x[:1], scores, ratio)
    for n, w in widths.items():
        assert keep[n] == [i for i in range(w) if i not in drop[n]], n
    assert keep_in["conv7"] == [i for i in range(14) if i not in (1, 4, 7, 10 + 2)]
    assert keep_in["conv1"] == keep_in["conv2"] == keep_in["conv4"] == keep_in["conv6"] == keep["conv0"]
    with torch.no_grad():
        got = net(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(_modules(net)["conv7"].weight, _modules(ref)["conv7"].weight[keep["conv7"]][
        :, keep_in["conv7"]], rtol=0, atol=0)


# ----------------------------------------------------------------------------- zoo graph specs

@pytest.mark.parametrize("model", ["resnet8", "mobilenet", "dscnn"])
def test_zoo_graph_specs_prune_to_a_consistent_spec(model):
    """Runs once the graph zoo (graphspec.md) is in codesign.models."""
    try:
        spec = make_spec(model)
    except CodesignError as exc:
        pytest.skip(f"zoo has no {model} yet: {exc}")
    assert needs_depgraph(spec)
    net = _randomise(build_float(spec), 6).double().eval()
    state = {k: v.float() for k, v in net.state_dict().items()}
    x = torch.randn(2, *spec["input_shape"], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rng = np.random.default_rng(3)
    shapes = layer_shapes(spec)
    scores = {l["name"]: rng.random(shapes[l["name"]]["fan_out"]) for l in quant_layers(spec)[:-1]}
    res = prune_spec_structured(spec, state, scores, 0.5, "layer")
    # zero exactly the removed channels in the unpruned net: it must then equal the pruned one
    mods = _modules(net)
    with torch.no_grad():
        for n, k in res.keep.items():
            d = sorted(set(range(shapes[n]["fan_out"])) - set(k))
            mods[n].weight[d] = 0
            bn = _bn(net, n)
            if bn is not None:
                bn.weight[d] = 0
                bn.bias[d] = 0
        want = net(x)
        small = build_float(res.spec)
        small.load_state_dict(res.state_dict)
        got = small.double().eval()(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    assert layer_shapes(res.spec)[quant_layers(spec)[-1]["name"]]["fan_out"] == spec["num_classes"]
    # the relevance path of the pipeline: scores from a Relevance, then sliced to the new spec
    rel = _relevance(spec, 4)
    res2 = prune_structured_graph(spec, state, rel, 0.5, scope="global")
    sliced = slice_relevance_graph(rel, res2)
    sliced.check_matches(res2.spec)
    for n, k in res2.keep.items():
        assert sliced.layers[n]["units"] == [rel.layers[n]["units"][i] for i in k]
