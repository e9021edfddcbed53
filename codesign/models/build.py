"""Build torch modules from a spec: the float model, or the Brevitas model for a bit plan.

Both share one module layout and the same state_dict keys for weights and BatchNorm, so QAT
starts from the float weights with a plain `load_state_dict(strict=False)`.

Graph specs (docs/contracts.md "Graph specs"): a residual block is one module under the block's
name with children `body`, `shortcut` (nn.Sequential, named like the top level), `join` and
`act`; out = act(join(body(x)) + join(shortcut(x))). In the Brevitas model `join` is ONE
signed quantizer shared by both branches (act bits + 1), so the add is of integers at one
scale, which the dataflow compiler lowers to its stream adder; in the float model it is an identity.
An average pool / global average pool in the Brevitas model is followed by a QuantReLU at the
bits of the activation feeding it (`avgpool{i}_act`, `gap_act`), as the compiler's average-pool
lowering expects (the window sum runs exactly on the depthwise unit, the next threshold
requantizes it; tests/test_vvau.py); the float model has no module there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from codesign.errors import CodesignError
from codesign.models import quantizers as Q
from codesign.models.plan import Plan, validate_plan
from codesign.models.zoo import Spec, layer_shapes, module_paths, quant_layers, validate_spec


def _pt(v: Any) -> Any:
    """Spec int-or-[h, w] to what torch takes (int or tuple); ints stay ints."""
    return tuple(int(e) for e in v) if isinstance(v, (list, tuple)) else int(v)


class ResidualBlock(nn.Module):
    """out = act(join(body(x)) + join(shortcut(x))); an empty shortcut is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential, join: nn.Module, act: nn.Module):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.join = join
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s = self.body(x), self.shortcut(x)
        if hasattr(self, "join_shortcut"):  # a `split_joins` copy for captum
            return self.act(self.join(b) + self.join_shortcut(s.clone()))
        return self.act(self.join(b) + self.join(s))


def split_joins(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose residual blocks pass their shortcut through a *copy* of
    the shared join quantizer (same parameters, so the same function).

    Why: captum's DeepLift stores each nonlinearity's input/output on the module, so a module
    called twice per forward (the shared join) gets the second call's values for both and its
    multipliers are wrong (or captum refuses it); attribution runs on this copy instead. The
    shortcut's join also gets its own input tensor (a clone): captum overrides a nonlinearity's
    input gradient with a hook on the input *tensor*, so with an identity shortcut it would
    also rescale the body's gradient through the same tensor (measured: DeepLIFT completeness
    off by 18 % of the output change on a 4-bit ResNet-8 without the clone, exact with it).
    """
    import copy

    new = copy.deepcopy(model)
    for m in new.modules():
        if isinstance(m, ResidualBlock):
            m.join_shortcut = copy.deepcopy(m.join)
    return new


class _Builder:
    """Lays out the modules of one spec; pool counters run over the whole spec so every
    module name is unique however the layers nest."""

    def __init__(self, spec: Spec, plan: Plan | None):
        self.spec, self.plan = spec, plan
        self.shapes = layer_shapes(spec)
        self.counts: dict[str, int] = {}
        # bits of the activation currently flowing (for the requantizer after an average pool)
        self.cur_bits = int(plan.get("input_bits", 8)) if plan is not None else 8

    def _count(self, kind: str) -> int:
        i = self.counts.get(kind, 0)
        self.counts[kind] = i + 1
        return i

    def _bits(self, name: str) -> dict | None:
        return self.plan["layers"][name] if self.plan is not None else None

    def seq(self, layers: list[dict]) -> "OrderedDict[str, nn.Module]":
        mods: "OrderedDict[str, nn.Module]" = OrderedDict()
        for layer in layers:
            t = layer["type"]
            if t == "pool":
                k = _pt(layer["kernel"])
                mods[f"pool{self._count('pool')}"] = nn.MaxPool2d(
                    k, stride=_pt(layer.get("stride", layer["kernel"])), padding=_pt(layer.get("padding", 0)))
            elif t in ("avgpool", "gap"):
                if t == "gap":
                    i = self._count("gap")
                    mname = "gap" if i == 0 else f"gap{i}"
                    mods[mname] = nn.AdaptiveAvgPool2d(1)
                else:
                    mname = f"avgpool{self._count('avgpool')}"
                    mods[mname] = nn.AvgPool2d(_pt(layer["kernel"]), stride=_pt(layer.get("stride", layer["kernel"])))
                if self.plan is not None:
                    mods[f"{mname}_act"] = Q.activation(self.cur_bits)
            elif t == "flatten":
                mods["flatten"] = nn.Flatten()
            elif t == "residual":
                mods[layer["name"]] = self.residual(layer)
            else:
                self.weight_layer(layer, mods)
        return mods

    def weight_layer(self, layer: dict, mods: "OrderedDict[str, nn.Module]") -> None:
        t, name = layer["type"], layer["name"]
        s = self.shapes[name]
        bits = self._bits(name)
        if t in ("conv", "dwconv"):
            cin, cout, g = s["in_shape"][0], s["out_shape"][0], s["groups"]
            k, st, p = _pt(layer["kernel"]), _pt(layer.get("stride", 1)), _pt(layer.get("padding", 0))
            if bits:
                mods[name] = Q.quant_conv(cin, cout, k, st, p, bits["weight_bits"], groups=g)
            elif g == 1:  # exactly today's module (same repr) for chain specs
                mods[name] = nn.Conv2d(cin, cout, k, stride=st, padding=p, bias=False)
            else:
                mods[name] = nn.Conv2d(cin, cout, k, stride=st, padding=p, groups=g, bias=False)
            bn: nn.Module = nn.BatchNorm2d(cout)
        else:
            fin = s["in_shape"][0]
            mods[name] = (Q.quant_linear(fin, layer["out_features"], bits["weight_bits"]) if bits else
                          nn.Linear(fin, layer["out_features"], bias=False))
            bn = nn.BatchNorm1d(layer["out_features"])
        if layer.get("bn"):
            mods[f"{name}_bn"] = bn
        if layer.get("act"):
            mods[f"{name}_act"] = Q.activation(bits["act_bits"]) if bits else nn.ReLU()
            if bits:
                self.cur_bits = int(bits["act_bits"])

    def residual(self, layer: dict) -> ResidualBlock:
        entry = self.cur_bits
        body = nn.Sequential(self.seq(layer["body"]))
        self.cur_bits = entry
        shortcut = nn.Sequential(self.seq(layer.get("shortcut", [])))
        last = self._bits(layer["body"][-1]["name"])
        if last is not None:
            a = int(last["act_bits"])
            join: nn.Module = Q.join_quant(a)
            act: nn.Module = Q.activation(a) if layer.get("act", True) else nn.Identity()
            self.cur_bits = a
        else:
            join, act = nn.Identity(), (nn.ReLU() if layer.get("act", True) else nn.Identity())
        return ResidualBlock(body, shortcut, join, act)


class SpecNet(nn.Module):
    """A feed-forward network laid out from a spec; `body` is an nn.Sequential whose children
    are named after the spec (`conv0`, `conv0_bn`, `conv0_act`, `pool0`, `flatten`, `fc0`, ...;
    `avgpool{i}`, `gap`, and a residual block's module under the block's name)."""

    def __init__(self, spec: Spec, plan: Plan | None = None):
        super().__init__()
        validate_spec(spec)
        if plan is not None:
            validate_plan(spec, plan)
            for blk in (l for l in spec["layers"] if l["type"] == "residual"):
                if "act_bits" not in plan["layers"][blk["body"][-1]["name"]]:
                    raise CodesignError(f"plan entry for '{blk['body'][-1]['name']}' lacks 'act_bits' (it sets "
                                        f"residual block '{blk['name']}''s activation and join bits)")
        self.spec = spec
        self.plan = plan
        self._paths = module_paths(spec)
        self._block_act = {blk["body"][-1]["name"]: f"body.{blk['name']}.act"
                           for blk in spec["layers"] if blk["type"] == "residual" and blk.get("act", True)}
        b = _Builder(spec, plan)
        mods: "OrderedDict[str, nn.Module]" = OrderedDict()
        if plan is not None:
            mods["input_quant"] = Q.input_quant(int(plan.get("input_bits", 8)))
        mods.update(b.seq(spec["layers"]))
        self.body = nn.Sequential(mods)

    @property
    def quant_layer_names(self) -> list[str]:
        return [l["name"] for l in quant_layers(self.spec)]

    def module_path(self, name: str) -> str:
        """`body.conv0` or `body.res1.body.conv3`: the layer's path (state_dict key prefix)."""
        try:
            return self._paths[name]
        except KeyError as exc:
            raise CodesignError(f"model has no layer '{name}' (layers: {self.quant_layer_names})") from exc

    def _opt(self, path: str) -> nn.Module | None:
        try:
            return self.get_submodule(path)
        except AttributeError:
            return None

    def layer(self, name: str) -> nn.Module:
        """The conv/linear module of a spec layer (also inside residual blocks)."""
        return self.get_submodule(self.module_path(name))

    def bn(self, name: str) -> nn.Module | None:
        """The layer's BatchNorm, or None."""
        return self._opt(self.module_path(name) + "_bn")

    def act(self, name: str) -> nn.Module | None:
        """The layer's activation module, or None. For the last layer of a residual body (act
        false in the spec) it is the block's post-add activation, the one its plan `act_bits`
        sets."""
        own = self._opt(self.module_path(name) + "_act")
        if own is None and name in self._block_act:
            return self._opt(self._block_act[name])
        return own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_float(spec: Spec) -> SpecNet:
    return SpecNet(spec, None)


def build_quant(spec: Spec, plan: Plan) -> SpecNet:
    return SpecNet(spec, plan)


def quant_from_float(spec: Spec, plan: Plan, float_state: dict) -> SpecNet:
    """Brevitas model for `plan`, initialised from float weights (QAT starts here)."""
    model = build_quant(spec, plan)
    missing, unexpected = model.load_state_dict(float_state, strict=False)
    if unexpected:
        raise CodesignError(f"float checkpoint has weights the quant model lacks: {unexpected[:5]}")
    # Only quantizer parameters may be missing (they are initialised by Brevitas).
    real_missing = [k for k in missing if "quant" not in k]
    if real_missing:
        raise CodesignError(f"float checkpoint lacks weights: {real_missing[:5]}")
    return model


def count_weights(model: nn.Module) -> int:
    """Number of conv/linear weights (what FINN's classic parameter counts refer to)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
