"""The search space: a candidate design (per-layer bits, prune ratios, optional weight sharing).

Why a dedicated encoding: every part of the loop must agree on *which* design a result belongs
to. A candidate is plain data with one canonical JSON form, and its hash (`plan_hash`) is the key
of the accuracy cache and of the study's de-duplication, so a design trained once is never
trained again — across restarts and across worker processes.

A candidate maps to (a) optuna parameters (`<layer>.w`, `<layer>.a`, `<layer>.p`, `cluster`),
so any optuna sampler can propose designs, and (b) the contracts.md artefacts: the pruned model
spec (`with_widths`) and the bit plan (`plan.json`) the QAT step consumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from codesign.errors import CodesignError
from codesign.models.plan import Plan, validate_plan
from codesign.models.zoo import Spec, layer_shapes, quant_layers, refuse_graph_spec, with_widths


@dataclass(frozen=True)
class Candidate:
    """One design point. `w`/`a`/`prune` are sorted (layer, value) tuples so the object hashes."""

    w: tuple[tuple[str, int], ...]
    a: tuple[tuple[str, int], ...]
    prune: tuple[tuple[str, float], ...]
    input_bits: int = 8
    cluster: int | None = None

    # -- construction ---------------------------------------------------------------
    @classmethod
    def make(cls, w: Mapping[str, int], a: Mapping[str, int], prune: Mapping[str, float] | None = None,
             input_bits: int = 8, cluster: int | None = None) -> "Candidate":
        prune = prune or {}
        return cls(tuple(sorted((k, int(v)) for k, v in w.items())),
                   tuple(sorted((k, int(v)) for k, v in a.items())),
                   tuple(sorted((k, round(float(v), 4)) for k, v in prune.items() if float(v) > 0)),
                   int(input_bits), int(cluster) if cluster else None)

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any], input_bits: int = 8) -> "Candidate":
        """The (unpruned) candidate of a contracts.md bit plan, so a plan made outside the search
        (an ILP or Hessian allocation, `codesign compress`) is costed by the same estimator and
        keyed by the same hash as the search's designs."""
        layers = plan["layers"]
        return cls.make({n: e["weight_bits"] for n, e in layers.items()},
                        {n: e["act_bits"] for n, e in layers.items() if "act_bits" in e}, {},
                        plan.get("input_bits", input_bits))

    @property
    def wd(self) -> dict[str, int]:
        return dict(self.w)

    @property
    def ad(self) -> dict[str, int]:
        return dict(self.a)

    @property
    def pd(self) -> dict[str, float]:
        return dict(self.prune)

    def replace(self, w: Mapping[str, int] | None = None, a: Mapping[str, int] | None = None,
                prune: Mapping[str, float] | None = None, cluster: Any = "keep") -> "Candidate":
        return Candidate.make({**self.wd, **(w or {})}, {**self.ad, **(a or {})},
                              {**self.pd, **(prune or {})}, self.input_bits,
                              self.cluster if cluster == "keep" else cluster)

    # -- identity -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"input_bits": self.input_bits, "weight_bits": self.wd, "act_bits": self.ad,
                "prune": self.pd, "cluster": self.cluster}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Candidate":
        return cls.make(d["weight_bits"], d["act_bits"], d.get("prune") or {}, d.get("input_bits", 8),
                        d.get("cluster"))

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit key of the design (canonical JSON, sorted keys)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """Compact form for logs: 'fc0 w4a3 p.25 | fc1 w2a2 | fc3 w4'."""
        parts = []
        for name, wb in self.w:
            s = f"{name} w{wb}" + (f"a{self.ad[name]}" if name in self.ad else "")
            if self.pd.get(name):
                s += f" p{self.pd[name]:.2f}".replace("0.", ".")
            parts.append(s)
        return " | ".join(parts) + (f" | k{self.cluster}" if self.cluster else "")


def plan_hash(cand: Candidate) -> str:
    return cand.hash


@dataclass
class SearchSpace:
    """What may vary: bit choices per layer, prune levels for hidden layers, cluster sizes."""

    spec: Spec
    weight_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    act_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    prune_levels: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5)
    input_bits: int = 8
    cluster: tuple[int, ...] = ()  # e.g. (0, 8, 16); 0 = no weight sharing
    layers: list[str] = field(init=False)
    prunable: list[str] = field(init=False)
    act_layers: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.weight_bits = tuple(sorted(set(int(b) for b in self.weight_bits)))
        self.act_bits = tuple(sorted(set(int(b) for b in self.act_bits)))
        self.prune_levels = tuple(sorted(set(round(float(p), 4) for p in self.prune_levels) | {0.0}))
        for b in self.weight_bits + self.act_bits:
            if not 1 <= b <= 8:
                raise CodesignError(f"search bits must be in 1..8, got {b}")
        for p in self.prune_levels:
            if not 0.0 <= p < 1.0:
                raise CodesignError(f"prune levels must be in [0, 1), got {p}")
        if not self.weight_bits or not self.act_bits:
            raise CodesignError("the search space needs at least one weight and one activation bit width")
        if any(p > 0 for p in self.prune_levels):
            refuse_graph_spec(self.spec, "the search's structured pruning",
                              "pruning graph specs needs the dependency-aware pruning (codesign.compress.depgraph); "
                              "search bits only with prune_levels=(0,)")
        self.layers = [l["name"] for l in quant_layers(self.spec)]
        self.prunable = self.layers[:-1]
        self.act_layers = self.layers[:-1]

    # -- optuna ---------------------------------------------------------------------
    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        d: dict[str, Any] = {}
        for n in self.layers:
            d[f"{n}.w"] = CategoricalDistribution(list(self.weight_bits))
            if n in self.act_layers:
                d[f"{n}.a"] = CategoricalDistribution(list(self.act_bits))
            if n in self.prunable and len(self.prune_levels) > 1:
                d[f"{n}.p"] = CategoricalDistribution(list(self.prune_levels))
        if self.cluster:
            d["cluster"] = CategoricalDistribution([int(k) for k in self.cluster])
        return d

    def params(self, c: Candidate) -> dict[str, Any]:
        p: dict[str, Any] = {}
        for n in self.layers:
            p[f"{n}.w"] = c.wd[n]
            if n in self.act_layers:
                p[f"{n}.a"] = c.ad[n]
            if n in self.prunable and len(self.prune_levels) > 1:
                p[f"{n}.p"] = c.pd.get(n, 0.0)
        if self.cluster:
            p["cluster"] = int(c.cluster or 0)
        return p

    def from_params(self, p: Mapping[str, Any]) -> Candidate:
        return Candidate.make({n: p[f"{n}.w"] for n in self.layers},
                              {n: p[f"{n}.a"] for n in self.act_layers},
                              {n: p.get(f"{n}.p", 0.0) for n in self.prunable},
                              self.input_bits, p.get("cluster") or None)

    def contains(self, c: Candidate) -> bool:
        return (all(c.wd[n] in self.weight_bits for n in self.layers)
                and all(c.ad[n] in self.act_bits for n in self.act_layers)
                and all(v in self.prune_levels for v in c.pd.values())
                and (not c.cluster or c.cluster in self.cluster))

    # -- design points --------------------------------------------------------------
    def uniform(self, wb: int, ab: int) -> Candidate:
        return Candidate.make({n: wb for n in self.layers}, {n: ab for n in self.act_layers}, {}, self.input_bits)

    def largest(self) -> Candidate:
        return self.uniform(self.weight_bits[-1], self.act_bits[-1])

    def smallest(self) -> Candidate:
        return Candidate.make({n: self.weight_bits[0] for n in self.layers},
                              {n: self.act_bits[0] for n in self.act_layers},
                              {n: self.prune_levels[-1] for n in self.prunable}, self.input_bits,
                              min([k for k in self.cluster if k] or [0]) or None)

    def widths(self, c: Candidate) -> dict[str, int]:
        """Output widths after pruning, rounded exactly as `codesign.compress.prune.select_units`."""
        shapes = layer_shapes(self.spec)
        out = {}
        for n in self.prunable:
            full = shapes[n]["fan_out"]
            r = c.pd.get(n, 0.0)
            out[n] = max(1, full - int(round(r * full)))
        return out

    def pruned_spec(self, c: Candidate) -> Spec:
        return with_widths(self.spec, self.widths(c)) if c.prune else self.spec

    def plan(self, c: Candidate) -> Plan:
        """The contracts.md bit plan of the candidate (layer names do not change with pruning)."""
        layers = {}
        for n in self.layers:
            e: dict[str, int] = {"weight_bits": c.wd[n]}
            if n in self.act_layers:
                e["act_bits"] = c.ad[n]
            layers[n] = e
        plan = {"input_bits": c.input_bits, "layers": layers}
        validate_plan(self.spec, plan)
        return plan

    def neighbours(self, c: Candidate) -> Iterable[tuple[str, str, int, Candidate]]:
        """Single-step moves: (kind, layer, direction, candidate); kind in w/a/p; +1 = bigger design."""
        for n in self.layers:
            i = self.weight_bits.index(c.wd[n])
            for d in (-1, 1):
                if 0 <= i + d < len(self.weight_bits):
                    yield "w", n, d, c.replace(w={n: self.weight_bits[i + d]})
            if n in self.act_layers:
                j = self.act_bits.index(c.ad[n])
                for d in (-1, 1):
                    if 0 <= j + d < len(self.act_bits):
                        yield "a", n, d, c.replace(a={n: self.act_bits[j + d]})
            if n in self.prunable and len(self.prune_levels) > 1:
                k = self.prune_levels.index(c.pd.get(n, 0.0))
                for d in (-1, 1):  # a bigger design = less pruning
                    if 0 <= k - d < len(self.prune_levels):
                        yield "p", n, d, c.replace(prune={n: self.prune_levels[k - d]})
