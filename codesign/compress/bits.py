"""Per-layer bit allocation under a budget: relevant layers get more bits (greedy walk).

The sensitivity (docs/compression.md): the measured relevance lost by layer l at b bits, a
lookup into the `codesign.compress.sensitivity.SensitivityTable` that the search uses too
(DeepLIFT-weighted Brevitas quantization error, or the HAWQ-V2 table). Documented fallback
when no table exists (a plain ``{layer: score}`` mapping): distortion ``s_l * 4^-b`` (uniform
quantization noise power falls 4x per bit). Starting from every layer at its lower bound, a
greedy loop repeatedly gives one more bit to the layer with the largest *distortion reduction
per unit of cost* (``T[l][b] - T[l][b+1]``, fallback ``0.75 * s_l * 4^-b_l``, over
``delta_cost_l``) while the budget holds. The exact allocation under a hardware budget is
`codesign.compress.ilp`; this walk is its baseline. For memory-like budgets the cost
of a bit is the layer's weight count, so the rule favours layers that are relevant *per weight*
(small, relevant first/last layers end up wide; big, redundant middle layers narrow).

Budgets: ``avg:B`` (weight-count-weighted mean weight bits <= B), ``mem:BITS`` (total weight
memory <= BITS), or any ``cost(plan) -> float`` callback with a limit (the dataflow compiler's
resource estimate plugs in here). With a callback, activation bits are allocated too (their
sensitivity is the same layer relevance); for weight-only budgets activation bits follow the
weight bits (at least 2, since bipolar activations need special training).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from codesign.compress.sensitivity import SensitivityTable
from codesign.errors import CodesignError
from codesign.models.plan import MAX_BITS, MIN_BITS, Plan, average_weight_bits, uniform_plan, validate_plan
from codesign.models.zoo import Spec, layer_shapes, quant_layers

log = logging.getLogger(__name__)

CostFn = Callable[[Plan], float]
ALLOCATORS = ("relevance", "uniform", "hessian")


@dataclass
class Budget:
    """A budget: ``kind`` avg | mem | cost, with its ``limit`` (and the callback for cost)."""

    kind: str
    limit: float
    cost: CostFn | None = None

    def measure(self, spec: Spec, plan: Plan) -> float:
        if self.kind == "avg":
            return average_weight_bits(spec, plan)
        if self.kind == "mem":
            return float(weight_memory_bits(spec, plan))
        return float(self.cost(plan))  # type: ignore[misc]

    def ok(self, spec: Spec, plan: Plan) -> bool:
        return self.measure(spec, plan) <= self.limit + 1e-9


def weight_memory_bits(spec: Spec, plan: Plan) -> int:
    shapes = layer_shapes(spec)
    return sum(shapes[n]["weights"] * plan["layers"][n]["weight_bits"] for n in shapes)


def parse_budget(text: str) -> Budget:
    """'avg:4' or 'mem:200000' -> Budget (uniform:w4a4 is handled by `plan_from_bits_arg`)."""
    m = re.fullmatch(r"(avg|mem):([0-9.eE+]+)", text.strip().lower())
    if not m:
        raise CodesignError(f"bit budget '{text}' not understood: use avg:4, mem:BITS or uniform:w4a4")
    return Budget(m.group(1), float(m.group(2)))


def _bounds(spec: Spec, bounds: Mapping[str, tuple[int, int]] | None, default: tuple[int, int]
            ) -> dict[str, tuple[int, int]]:
    names = [l["name"] for l in quant_layers(spec)]
    out = {}
    for n in names:
        lo, hi = (bounds or {}).get(n, default)
        if not (MIN_BITS <= lo <= hi <= MAX_BITS):
            raise CodesignError(f"bit bounds of {n} must satisfy {MIN_BITS} <= min <= max <= {MAX_BITS}, "
                                f"got ({lo}, {hi})")
        out[n] = (int(lo), int(hi))
    if bounds:
        unknown = set(bounds) - set(names)
        if unknown:
            raise CodesignError(f"bit bounds for unknown layers {sorted(unknown)} (layers: {names})")
    return out


def _follow_act(wb: int, act_bounds: tuple[int, int]) -> int:
    return max(act_bounds[0], min(act_bounds[1], max(2, wb)))


def _make_plan(spec: Spec, wbits: Mapping[str, int], abits: Mapping[str, int], input_bits: int) -> Plan:
    names = [l["name"] for l in quant_layers(spec)]
    layers = {}
    for i, n in enumerate(names):
        e = {"weight_bits": int(wbits[n])}
        if i < len(names) - 1:
            e["act_bits"] = int(abits[n])
        layers[n] = e
    plan = {"input_bits": int(input_bits), "layers": layers}
    validate_plan(spec, plan)
    return plan


def allocate_bits(spec: Spec, sensitivity: Mapping[str, float] | SensitivityTable, budget: Budget,
                  weight_bounds: Mapping[str, tuple[int, int]] | None = None,
                  act_bounds: tuple[int, int] = (2, 8), act_bits: int | None = None,
                  default_bounds: tuple[int, int] = (2, 8), input_bits: int = 8) -> Plan:
    """Greedy marginal-sensitivity-per-cost allocation (module doc). Returns a plan.

    ``sensitivity``: a `SensitivityTable` (measured relevance lost per layer and bits; the
    one sensitivity model), or per-layer scores (the documented ``4^-b`` fallback).
    ``act_bits``: fixed activation bits; None lets them follow the weight bits (weight-only
    budgets) or be allocated with the weights (cost-callback budgets).
    Raises CodesignError when even the lower bounds exceed the budget.
    """
    names = [l["name"] for l in quant_layers(spec)]
    table = sensitivity if isinstance(sensitivity, SensitivityTable) else None
    if table is not None:
        table.check_layers(names)
    else:
        missing = [n for n in names if n not in sensitivity]
        if missing:
            raise CodesignError(f"no sensitivity for layers {missing}; the relevance belongs to another model")
    wb = _bounds(spec, weight_bounds, default_bounds)
    if budget.kind == "cost" and budget.cost is None:
        raise CodesignError("a cost budget needs a cost callback")
    alloc_act = budget.kind == "cost" and act_bits is None
    w = {n: wb[n][0] for n in names}

    def acts(wbits):
        if act_bits is not None:
            return {n: int(act_bits) for n in names}
        if alloc_act:
            return a
        return {n: _follow_act(wbits[n], act_bounds) for n in names}

    a = {n: act_bounds[0] for n in names}
    plan = _make_plan(spec, w, acts(w), input_bits)
    if not budget.ok(spec, plan):
        raise CodesignError(f"budget {budget.kind}:{budget.limit:g} is infeasible: the lowest allowed bits "
                            f"already cost {budget.measure(spec, plan):.4g}")
    if table is None:
        total_s = sum(max(float(sensitivity[n]), 0.0) for n in names) or 1.0  # type: ignore[index]
        s = {n: max(float(sensitivity[n]), 0.0) / total_s + 1e-9 for n in names}  # type: ignore[index]

    def drop(kind: str, n: str, b: int) -> float:
        """Relevance regained by one more bit (table lookup; 4^-b fallback without a table)."""
        if table is None:
            return 0.75 * s[n] * 4.0 ** (-b)
        if kind == "w":
            return table.w(n, b) - table.w(n, b + 1) + 1e-12
        return table.a(n, b) - table.a(n, b + 1) + 1e-12
    while True:
        base = budget.measure(spec, plan)
        best, best_gain = None, -1.0
        moves = [("w", n) for n in names if w[n] < wb[n][1]]
        if alloc_act:
            moves += [("a", n) for n in names[:-1] if a[n] < act_bounds[1]]
        for kind, n in moves:
            w2, a2 = dict(w), dict(a)
            (w2 if kind == "w" else a2)[n] += 1
            b = w[n] if kind == "w" else a[n]
            cand = _make_plan(spec, w2, a2 if alloc_act else acts(w2), input_bits)
            cost = budget.measure(spec, cand)
            if cost > budget.limit + 1e-9:
                continue
            gain = drop(kind, n, b) / max(cost - base, 1e-12)
            if gain > best_gain:
                best, best_gain = (kind, n, cand), gain
        if best is None:
            break
        kind, n, plan = best
        (w if kind == "w" else a)[n] += 1
    log.info("bit allocation (%s <= %g): %s", budget.kind, budget.limit,
             ", ".join(f"{n} w{plan['layers'][n]['weight_bits']}" for n in names))
    return plan


def uniform_allocation(spec: Spec, budget: Budget, act_bits: int | None = None,
                       bounds: tuple[int, int] = (2, 8), input_bits: int = 8) -> Plan:
    """The widest uniform weight bits within the budget (the comparison baseline)."""
    for b in range(bounds[1], bounds[0] - 1, -1):
        plan = uniform_plan(spec, b, act_bits if act_bits is not None else max(2, b), input_bits)
        if budget.ok(spec, plan):
            return plan
    raise CodesignError(f"budget {budget.kind}:{budget.limit:g} is infeasible even at {bounds[0]} bits")


def average_bits(spec: Spec, plan: Plan) -> float:
    return average_weight_bits(spec, plan)


def effective_bits(k: int) -> float:
    return math.log2(k) if k > 1 else 0.0
