"""Build torch modules from a spec: the float model, or the Brevitas model for a bit plan.

Both share one module layout and the same state_dict keys for weights and BatchNorm, so QAT
starts from the float weights with a plain `load_state_dict(strict=False)`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from codesign.errors import CodesignError
from codesign.models import quantizers as Q
from codesign.models.plan import Plan, validate_plan
from codesign.models.zoo import Spec, layer_shapes, quant_layers, validate_spec


class SpecNet(nn.Module):
    """A feed-forward network laid out from a spec; `body` is an nn.Sequential whose children
    are named after the spec (`conv0`, `conv0_bn`, `conv0_act`, `pool0`, `flatten`, `fc0`, ...)."""

    def __init__(self, spec: Spec, plan: Plan | None = None):
        super().__init__()
        validate_spec(spec)
        if plan is not None:
            validate_plan(spec, plan)
        self.spec = spec
        self.plan = plan
        shapes = layer_shapes(spec)
        mods: "OrderedDict[str, nn.Module]" = OrderedDict()
        if plan is not None:
            mods["input_quant"] = Q.input_quant(int(plan.get("input_bits", 8)))
        npool = 0
        for layer in spec["layers"]:
            t = layer["type"]
            if t == "pool":
                mods[f"pool{npool}"] = nn.MaxPool2d(layer["kernel"])
                npool += 1
                continue
            if t == "flatten":
                mods["flatten"] = nn.Flatten()
                continue
            name = layer["name"]
            s = shapes[name]
            bits = plan["layers"][name] if plan is not None else None
            if t == "conv":
                cin = s["in_shape"][0]
                args = (cin, layer["out_channels"], layer["kernel"], layer.get("stride", 1), layer.get("padding", 0))
                mods[name] = (Q.quant_conv(*args, bits["weight_bits"]) if bits else
                              nn.Conv2d(*args[:3], stride=args[3], padding=args[4], bias=False))
                bn = nn.BatchNorm2d(layer["out_channels"])
            else:
                fin = s["in_shape"][0]
                mods[name] = (Q.quant_linear(fin, layer["out_features"], bits["weight_bits"]) if bits else
                              nn.Linear(fin, layer["out_features"], bias=False))
                bn = nn.BatchNorm1d(layer["out_features"])
            if layer.get("bn"):
                mods[f"{name}_bn"] = bn
            if layer.get("act"):
                mods[f"{name}_act"] = Q.activation(bits["act_bits"]) if bits else nn.ReLU()
        self.body = nn.Sequential(mods)

    @property
    def quant_layer_names(self) -> list[str]:
        return [l["name"] for l in quant_layers(self.spec)]

    def layer(self, name: str) -> nn.Module:
        """The conv/linear module of a spec layer."""
        try:
            return getattr(self.body, name)
        except AttributeError as exc:
            raise CodesignError(f"model has no layer '{name}' (layers: {self.quant_layer_names})") from exc

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
