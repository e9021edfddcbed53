"""Bring your own model (issue 13 part 5): a user's torch / Brevitas nn.Module, defined only
here (a module file written into tmp_path), is traced into a spec and goes through the whole
co-design loop like a zoo model. Checked against the user's module itself: the traced SpecNet
computes its outputs on real digits images; the spec, plan and keys are written out by hand."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
import yaml

from codesign.cli import main
from codesign.errors import CodesignError

USER_MODELS = textwrap.dedent('''
    """A user's models: nothing here is a zoo topology."""
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Net(nn.Module):
        """conv 5x5 12ch pad 2 -> BN -> ReLU -> maxpool -> conv 3x3 20ch -> BN -> maxpool -> ReLU
        -> view(N, -1) -> fc 24 -> BN -> ReLU -> fc 10 (a functional forward on purpose)."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 12, 5, padding=2, bias=False), nn.BatchNorm2d(12),
                                          nn.ReLU(inplace=True), nn.MaxPool2d(2))
            self.conv2 = nn.Conv2d(12, 20, 3, bias=False)
            self.bn2 = nn.BatchNorm2d(20)
            self.hidden = nn.Linear(20, 24, bias=False)
            self.bn3 = nn.BatchNorm1d(24)
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(24, 10, bias=False)

        def forward(self, x):
            x = self.features(x)
            x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))  # act after the pool: they commute
            x = x.view(x.size(0), -1)
            return self.head(self.drop(torch.relu(self.bn3(self.hidden(x)))))


    def build():
        return Net()


    class QNet(nn.Module):
        """The same idea in Brevitas, with its own bit widths per layer."""

        def __init__(self):
            super().__init__()
            import brevitas.nn as qnn
            from codesign.models.quantizers import InputQuant

            self.inp = qnn.QuantIdentity(act_quant=InputQuant, bit_width=6, return_quant_tensor=False)
            self.c1 = qnn.QuantConv2d(1, 12, 5, padding=2, bias=False, weight_bit_width=3)
            self.b1 = nn.BatchNorm2d(12)
            self.a1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=False)
            self.pool = nn.MaxPool2d(2)
            self.flat = nn.Flatten()
            self.fc1 = qnn.QuantLinear(12 * 16, 24, bias=False, weight_bit_width=5)
            self.b2 = nn.BatchNorm1d(24)
            self.a2 = qnn.QuantReLU(bit_width=2, return_quant_tensor=False)
            self.fc2 = qnn.QuantLinear(24, 10, bias=False, weight_bit_width=7)

        def forward(self, x):
            x = self.pool(self.a1(self.b1(self.c1(self.inp(x)))))
            return self.fc2(self.a2(self.b2(self.fc1(self.flat(x)))))


    def build_quant():
        return QNet()


    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            down = stride != 1 or cin != cout
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if down else nn.Identity())

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + self.short(x))


    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, (3, 1), padding=(1, 0), bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.b1 = Block(8, 8, 1)
            self.b2 = Block(8, 16, 2)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
            self.avg = nn.AvgPool2d(2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10, bias=False)

        def forward(self, x):
            x = F.relu(self.dw(self.b2(self.b1(self.stem(x)))))
            return self.fc(torch.flatten(self.gap(self.avg(x)), 1))


    def build_resnet():
        return ResNet()


    class QRes(nn.Module):
        """A Brevitas residual: one shared signed join quantizer (a + 1 bits) on both branches."""

        def __init__(self):
            super().__init__()
            import brevitas.nn as qnn
            from brevitas.quant import Int8ActPerTensorFloat
            from codesign.models.quantizers import InputQuant

            self.inp = qnn.QuantIdentity(act_quant=InputQuant, bit_width=8, return_quant_tensor=False)
            self.c0 = qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.b0 = nn.BatchNorm2d(8)
            self.a0 = qnn.QuantReLU(bit_width=3, return_quant_tensor=False)
            self.c1 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=2)
            self.b1 = nn.BatchNorm2d(8)
            self.join = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=5, return_quant_tensor=False)
            self.a1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=False)
            self.flat = nn.Flatten()
            self.fc = qnn.QuantLinear(8 * 64, 10, bias=False, weight_bit_width=6)

        def forward(self, x):
            x = self.a0(self.b0(self.c0(self.inp(x))))
            x = self.a1(self.join(self.b1(self.c1(x))) + self.join(x))
            return self.fc(self.flat(x))


    def build_qres():
        return QRes()


    class Sig(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, bias=False)
            self.gate = nn.Sigmoid()
            self.fc = nn.Linear(144, 10, bias=False)

        def forward(self, x):
            return self.fc(torch.flatten(self.gate(self.conv(x)), 1))


    class Sub(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
            self.fc = nn.Linear(64, 10, bias=False)

        def forward(self, x):
            return self.fc(torch.flatten(x - self.conv(x), 1))


    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1, bias=False)
            self.b = nn.Conv2d(1, 2, 3, padding=1, bias=False)
            self.fc = nn.Linear(256, 10, bias=False)

        def forward(self, x):
            return self.fc(torch.flatten(torch.cat([self.a(x), self.b(x)], 1), 1))


    class Biased(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))


    def build_sigmoid():
        return Sig()


    def build_sub():
        return Sub()


    def build_cat():
        return Cat()


    def build_biased():
        return Biased()


    NOT_CALLABLE = 42


    def returns_list():
        return [nn.Linear(64, 10)]


    def needs_args(width):
        return nn.Linear(64, width)
''')


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """`mymodels` importable from tmp_path only (and forgotten after the test)."""
    (tmp_path / "mymodels.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    yield tmp_path
    sys.modules.pop("mymodels", None)


@pytest.fixture(scope="module")
def digits():
    from codesign.data import load_dataset, sample_batch

    splits = load_dataset("digits")
    return splits, sample_batch(splits, 64, split="test")[0]


def _settle_bn(module: torch.nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    """A few training steps, so BatchNorm statistics and Brevitas scales are not their inits
    (a mapping that dropped them would then show)."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(steps):
        loss = module(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()


def test_traced_spec_computes_the_user_module(user_models, digits):
    from codesign.models.build import build_float
    from codesign.models.trace import build_entry_point, spec_from_module

    _, x = digits
    torch.manual_seed(0)
    user = build_entry_point("mymodels:build")
    _settle_bn(user, x)
    spec, state, plan = spec_from_module(user, (1, 8, 8), "mymodels:build", num_classes=10)
    assert plan is None
    conv = {"type": "conv", "stride": 1, "bn": True, "act": True}
    assert spec == {"name": "mymodels_build", "input_shape": [1, 8, 8], "num_classes": 10, "layers": [
        {**conv, "name": "conv0", "out_channels": 12, "kernel": 5, "padding": 2}, {"type": "pool", "kernel": 2},
        {**conv, "name": "conv1", "out_channels": 20, "kernel": 3, "padding": 0}, {"type": "pool", "kernel": 2},
        {"type": "flatten"},
        {"type": "fc", "name": "fc0", "out_features": 24, "bn": True, "act": True},
        {"type": "fc", "name": "fc1", "out_features": 10, "bn": False, "act": False}]}
    assert torch.equal(state["body.conv1.weight"], user.conv2.weight)
    assert torch.equal(state["body.fc0_bn.running_var"], user.bn3.running_var)
    net = build_float(spec).eval()
    net.load_state_dict(state)  # strict: every SpecNet key, nothing else
    with torch.no_grad():
        want, got = user(x), net(x)
    assert float((want - got).abs().max()) <= 1e-6 * float(want.abs().max())
    assert (got.argmax(1) == want.argmax(1)).all()


def test_brevitas_user_model_gives_its_plan_and_its_outputs(user_models, digits):
    from codesign.models.build import build_quant
    from codesign.models.trace import build_entry_point, spec_from_module

    _, x = digits
    torch.manual_seed(0)
    user = build_entry_point("mymodels:build_quant")
    _settle_bn(user, x)
    spec, state, plan = spec_from_module(user, (1, 8, 8), "q")
    assert plan == {"input_bits": 6, "layers": {"conv0": {"weight_bits": 3, "act_bits": 4},
                                                "fc0": {"weight_bits": 5, "act_bits": 2}, "fc1": {"weight_bits": 7}}}
    assert [l["type"] for l in spec["layers"]] == ["conv", "pool", "flatten", "fc", "fc"]
    assert "body.conv0_act.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value" in state
    net = build_quant(spec, plan).eval()
    net.load_state_dict(state)  # its learned activation scales too: the quantizers are codesign's
    with torch.no_grad():
        assert torch.equal(net(x), user(x))


def test_residual_user_model_traces_to_the_contracts_block(user_models, digits):
    from codesign.models.trace import build_entry_point, spec_from_module

    # check=False: this SpecNet may not build residual specs yet (graph-models branch)
    spec, state, _ = spec_from_module(build_entry_point("mymodels:build_resnet"), (1, 8, 8), "r", check=False)
    c = {"type": "conv", "kernel": 3, "padding": 1, "bn": True}
    assert spec["layers"] == [
        {**c, "name": "conv0", "out_channels": 8, "stride": 1, "act": True, "kernel": [3, 1], "padding": [1, 0]},
        {"type": "residual", "name": "res0", "act": True, "shortcut": [], "body": [
            {**c, "name": "conv1", "out_channels": 8, "stride": 1, "act": True},
            {**c, "name": "conv2", "out_channels": 8, "stride": 1, "act": False}]},
        {"type": "residual", "name": "res1", "act": True, "body": [
            {**c, "name": "conv3", "out_channels": 16, "stride": 2, "act": True},
            {**c, "name": "conv4", "out_channels": 16, "stride": 1, "act": False}],
         "shortcut": [{"type": "conv", "name": "conv5", "out_channels": 16, "kernel": 1, "stride": 2, "padding": 0,
                       "bn": True, "act": False}]},
        {"type": "dwconv", "name": "dwconv0", "kernel": 3, "stride": 1, "padding": 1, "bn": False, "act": True},
        {"type": "avgpool", "kernel": 2}, {"type": "gap"}, {"type": "flatten"},
        {"type": "fc", "name": "fc0", "out_features": 10, "bn": False, "act": False}]
    assert {"body.res0.body.conv1.weight", "body.res1.body.conv4_bn.running_mean", "body.res1.shortcut.conv5.weight",
            "body.res1.shortcut.conv5_bn.weight", "body.dwconv0.weight"} <= set(state)

    qres = build_entry_point("mymodels:build_qres")
    _settle_bn(qres, digits[1])  # the join quantizer's scale exists once it has seen data
    qspec, qstate, plan = spec_from_module(qres, (1, 8, 8), "qr", check=False)
    block = qspec["layers"][1]
    assert block["type"] == "residual" and block["shortcut"] == [] and block["act"]
    assert [l["name"] for l in block["body"]] == ["conv1"] and block["body"][0]["act"] is False
    assert qspec["layers"][2] == {"type": "flatten"}
    # the body's last act_bits = the block's post-add QuantReLU; the join is signed a + 1 = 5 bits
    assert plan == {"input_bits": 8, "layers": {"conv0": {"weight_bits": 4, "act_bits": 3},
                                                "conv1": {"weight_bits": 2, "act_bits": 4}, "fc0": {"weight_bits": 6}}}
    assert "body.res0.join.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value" in qstate
    assert torch.equal(qstate["body.res0.body.conv1.weight"], qres.c1.weight)
    assert "body.res0.act.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value" in qstate


def test_residual_user_model_computes_the_module(user_models, digits):
    """Runs once SpecNet builds residual specs (graphspec.md); skipped on a SpecNet without them."""
    from codesign.models.build import build_float
    from codesign.models.trace import build_entry_point, spec_from_module
    from codesign.models.zoo import validate_spec

    _, x = digits
    torch.manual_seed(0)
    user = build_entry_point("mymodels:build_resnet")
    _settle_bn(user, x)
    spec, state, _ = spec_from_module(user, (1, 8, 8), "r", check=False)
    try:
        validate_spec(spec)
    except (CodesignError, TypeError) as exc:  # the pre-graphspec zoo: no residual, no [h, w] kernels
        pytest.skip(f"this SpecNet cannot build graph specs (residual, non-square kernels) yet ({exc})")
    spec_from_module(user, (1, 8, 8), "r")  # with its own check (validate, float SpecNet == module)
    net = build_float(spec).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        want, got = user(x), net(x)
    assert float((want - got).abs().max()) <= 1e-5 * float(want.abs().max())

    from codesign.models.build import build_quant

    quser = build_entry_point("mymodels:build_qres")
    _settle_bn(quser, x)
    qspec, qstate, plan = spec_from_module(quser, (1, 8, 8), "qr")
    qnet = build_quant(qspec, plan).eval()
    qnet.load_state_dict(qstate)  # the shared join (signed a + 1 bits) and the post-add QuantReLU included
    with torch.no_grad():
        assert torch.equal(qnet(x), quser(x))


@pytest.mark.parametrize("entry,needle", [
    ("build_sigmoid", "'gate' (call_module gate): Sigmoid has no codesign counterpart"),
    ("build_sub", "(call_function _operator.sub): it combines 2 tensors"),
    ("build_cat", "(call_function torch.cat): it combines 2 tensors"),
    ("build_biased", "'fc' (call_module fc): the linear layer has a bias"),
])
def test_unsupported_op_is_one_line_naming_the_node(user_models, tmp_path, caplog, entry, needle):
    from codesign.models.trace import TraceError, build_entry_point, spec_from_module

    with pytest.raises(TraceError) as ei:
        spec_from_module(build_entry_point(f"mymodels:{entry}"), (1, 8, 8), entry)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg and "supported: Conv2d" in msg
    caplog.clear()
    assert main(["train", "--model", f"mymodels:{entry}", "--dataset", "digits", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and needle in errors[0].getMessage()
    assert not (tmp_path / "run" / "float.pt").exists()


@pytest.mark.parametrize("model,needle", [
    ("nosuchpkg_zz.models:build", "no module named 'nosuchpkg_zz'; put the folder holding it on PYTHONPATH"),
    ("mymodels:nosuch", "mymodels has no attribute 'nosuch' (its functions and classes:"),
    ("mymodels:NOT_CALLABLE", "NOT_CALLABLE is a int, not callable"),
    ("mymodels:returns_list", "it returned a list, not a torch.nn.Module"),
    ("mymodels:needs_args", "calling it with no arguments failed"),
    ("mymodels:", "give your own model as package.module:function"),
    ("resnet_zz", "unknown model 'resnet_zz': choose one of tfc"),
])
def test_bad_entry_point_is_one_line_with_the_fix(user_models, tmp_path, caplog, model, needle):
    from codesign.config import load_config

    assert main(["train", "--model", model, "--dataset", "digits", "--no-progress", "--out", str(tmp_path / "r")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and needle in errors[0] and "\n" not in errors[0], errors
    if model.endswith(("nosuch", "NOT_CALLABLE", "build")):  # found before any data is loaded, in a config too
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump({"model": model, "dataset": "digits", "out": str(tmp_path / "r")}))
        with pytest.raises(CodesignError, match="c.yaml: model: "):
            load_config(p)


def test_codesign_run_with_a_user_model_end_to_end(user_models, tmp_path):
    """`codesign run CONFIG.yaml` with `model: mymodels:build`: float training from the user's
    weights, relevance, search with pruning and mixed bits, full QAT, export, compile."""
    from codesign.models.trace import build_entry_point, spec_from_module
    from codesign.train import load_checkpoint

    out = tmp_path / "run"
    cfg = {"name": "byo", "model": "mymodels:build", "dataset": "digits", "out": str(out), "target_fps": 20_000,
           "train": {"epochs": 1, "max_batches": 5}, "qat": {"epochs": 1, "max_batches": 2},
           "search": {"strategy": "random", "trials": 2, "budget": {"LUT": 40000}, "weight_bits": [2, 3],
                      "act_bits": [2, 3], "prune_levels": [0.0, 0.25, 0.5],
                      "rank": {"epochs": 1, "max_batches": 2, "val_samples": 64}, "relevance": {"samples": 32},
                      "finalists": 1, "baselines": []}}
    (tmp_path / "byo.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "byo.yaml"), "--no-progress"]) == 0

    fck = load_checkpoint(out / "float.pt")
    spec, _, _ = spec_from_module(build_entry_point("mymodels:build"), (1, 8, 8), "mymodels:build")
    assert fck["spec"] == spec and fck["meta"]["model"] == "mymodels:build"
    assert fck["meta"]["layer_sources"] == {"conv0": "features.0", "conv1": "conv2", "fc0": "hidden", "fc1": "head"}
    rel = json.loads((out / "relevance.json").read_text())
    assert rel["model"] == "mymodels_build"
    summary = json.loads((out / "search" / "summary.json").read_text())
    chosen = summary["chosen"]
    assert set(chosen["per_layer"]) == {"conv0", "conv1", "fc0", "fc1"}
    qck = load_checkpoint(out / "qat.pt")
    assert qck["plan"] is not None and [l.get("name") for l in qck["spec"]["layers"] if "name" in l] == \
        ["conv0", "conv1", "fc0", "fc1"]
    assert (out / "model.onnx").is_file() and (out / "BUILD" / "dataflow.onnx").is_file()


def test_brevitas_user_model_through_the_step_commands(user_models, tmp_path):
    """train -> relevance -> compress -> qat with the model's own bits -> export -> compile, each
    step a plain CLI command on the traced checkpoint (none of them knows it is not a zoo model)."""
    run = tmp_path / "run"
    assert main(["train", "--model", "mymodels:build_quant", "--dataset", "digits", "--epochs", "1", "--max-batches",
                 "3", "--no-progress", "--out", str(run)]) == 0
    user_plan = json.loads((run / "user_plan.json").read_text())
    assert user_plan["input_bits"] == 6 and user_plan["layers"]["fc0"] == {"weight_bits": 5, "act_bits": 2}
    assert main(["relevance", str(run / "float.pt"), "--samples", "32", "--no-progress",
                 "--out", str(run / "relevance.json")]) == 0
    assert main(["compress", str(run / "float.pt"), "--relevance", str(run / "relevance.json"), "--prune-filters",
                 "0.25", "--bits", "uniform:w3a3", "--qat-epochs", "1", "--finetune-epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "pruned")]) == 0
    pruned = json.loads((tmp_path / "pruned" / "compress.json").read_text())
    widths = {l["name"]: l.get("out_channels", l.get("out_features")) for l in pruned["spec"]["layers"] if "name" in l}
    assert widths == {"conv0": 9, "fc0": 18, "fc1": 10} and (tmp_path / "pruned" / "model.onnx").is_file()
    assert main(["qat", str(run / "float.pt"), "--plan", str(run / "user_plan.json"), "--epochs", "1",
                 "--max-batches", "3", "--no-progress", "--out", str(run)]) == 0
    assert json.loads((run / "plan.json").read_text()) == user_plan
    assert main(["export", str(run / "qat.pt"), "--out", str(run / "model.onnx"), "--check-samples", "16"]) == 0
    assert json.loads((run / "model.check.json").read_text())["ok"]
    assert main(["compile", str(run / "model.onnx"), "--board", "Pynq-Z2", "--target-fps", "2000",
                 "--out", str(tmp_path / "BUILD")]) == 0
    assert (tmp_path / "BUILD" / "dataflow.onnx").is_file()
