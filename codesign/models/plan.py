"""Per-layer bit plans: input bits, and weight/activation bits per conv/fc layer.

A plan is plain JSON (`plan.json`) so compression, search and QAT exchange it as a file.
Bits are 1..8; 1 means bipolar (+1/-1), as in Brevitas and FINN.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from codesign.atomic import read_json, write_json
from codesign.errors import CodesignError
from codesign.models.zoo import Spec, quant_layers

Plan = dict[str, Any]
MIN_BITS, MAX_BITS = 1, 8


def uniform_plan(spec: Spec, weight_bits: int, act_bits: int, input_bits: int = 8) -> Plan:
    """Same weight and activation bits for every layer (the last layer has no activation)."""
    layers = {}
    qls = quant_layers(spec)
    for i, l in enumerate(qls):
        entry = {"weight_bits": int(weight_bits)}
        if i < len(qls) - 1:
            entry["act_bits"] = int(act_bits)
        layers[l["name"]] = entry
    plan = {"input_bits": int(input_bits), "layers": layers}
    validate_plan(spec, plan)
    return plan


def parse_bits(text: str) -> tuple[int, int]:
    """'w4a4' -> (4, 4)."""
    m = re.fullmatch(r"w(\d)a(\d)", text.strip().lower())
    if not m:
        raise CodesignError(f"bits '{text}' not understood: use the form w4a4 (weight bits, activation bits)")
    return int(m.group(1)), int(m.group(2))


def validate_plan(spec: Spec, plan: Plan) -> None:
    """Every conv/fc layer has bits in 1..8; no entries for layers the spec lacks."""
    if "layers" not in plan:
        raise CodesignError("plan lacks 'layers'")
    names = [l["name"] for l in quant_layers(spec)]
    extra = set(plan["layers"]) - set(names)
    if extra:
        raise CodesignError(f"plan names layers the model does not have: {sorted(extra)} (model layers: {names})")
    ib = plan.get("input_bits", 8)
    if not (MIN_BITS <= int(ib) <= MAX_BITS):
        raise CodesignError(f"input_bits {ib} outside {MIN_BITS}..{MAX_BITS}")
    for i, name in enumerate(names):
        if name not in plan["layers"]:
            raise CodesignError(f"plan has no entry for layer '{name}'")
        entry = plan["layers"][name]
        keys = ["weight_bits"] + (["act_bits"] if i < len(names) - 1 else [])
        for key in keys:
            if key not in entry:
                raise CodesignError(f"plan entry for '{name}' lacks '{key}'")
            b = entry[key]
            if not isinstance(b, int) or not (MIN_BITS <= b <= MAX_BITS):
                raise CodesignError(f"layer '{name}': {key}={b} outside {MIN_BITS}..{MAX_BITS}")


def save_plan(path: str | Path, plan: Plan) -> Path:
    return write_json(path, plan)


def load_plan(path: str | Path, spec: Spec | None = None) -> Plan:
    plan = read_json(path)
    if spec is not None:
        validate_plan(spec, plan)
    return plan


def average_weight_bits(spec: Spec, plan: Plan) -> float:
    """Weight-count-weighted mean weight bit width (what a memory budget sees)."""
    from codesign.models.zoo import layer_shapes

    shapes = layer_shapes(spec)
    total = sum(s["weights"] for s in shapes.values())
    return sum(shapes[n]["weights"] * plan["layers"][n]["weight_bits"] for n in shapes) / total


def describe(plan: Plan) -> str:
    """Compact human form: 'in8 | fc0 w4a4 | fc1 w2a2 | fc3 w4'."""
    parts = [f"in{plan.get('input_bits', 8)}"]
    for name, e in plan["layers"].items():
        parts.append(f"{name} w{e['weight_bits']}" + (f"a{e['act_bits']}" if "act_bits" in e else ""))
    return " | ".join(parts)


def copy_plan(plan: Plan) -> Plan:
    return copy.deepcopy(plan)
