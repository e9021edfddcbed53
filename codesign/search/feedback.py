"""The relevance-guided move rules: how hardware feedback changes a design.

The rules (the paper's relevance with the cost model in the loop):

* **Damage of a move** — the relevance a move throws away. Lowering layer l's weight or
  activation bits from b to b' costs ``T[l][b'] - T[l][b]``, a lookup into the measured
  `codesign.compress.sensitivity.SensitivityTable` (relevance lost per layer and bits), the
  same table `codesign compress` allocates with. Documented fallback without a table:
  ``s_l * (2^-b' - 2^-b)`` (s_l: the layer's share of the network's DeepLIFT relevance). Pruning layer l from ratio r to r' costs
  ``alpha * s_l * (M_l(r') - M_l(r))`` where M_l(r) is the share of the layer's unit relevance
  held by its round(r * width) least relevant units (the ones structured pruning removes).
  ``alpha`` weighs pruning against quantization.
* **Over budget** (a resource above its limit, or the target FPS not reachable): take the
  shrinking move with the largest drop of the binding utilisation per unit of damage — lower
  bits or prune more *where relevance per LUT is lowest*. Repeat until the design fits.
* **Slack** (the design fits): take the growing move with the most relevance regained per unit
  of utilisation added, as long as the design still fits — raise bits *where relevance is
  highest*. Repeat until no growing move fits: the design sits on the budget boundary.
* Every step queries the cost model only (milliseconds); no training happens here.
"""

from __future__ import annotations

import logging
import math
from typing import Mapping

import numpy as np

from codesign.compress.sensitivity import SensitivityTable
from codesign.errors import CodesignError
from codesign.designspace.estimate import RESOURCES, THROUGHPUT_PENALTY, HwEstimate, HwEstimator, binding
from codesign.designspace.space import Candidate, SearchSpace

log = logging.getLogger(__name__)


class InfeasibleBudgetError(CodesignError):
    """Even the smallest design in the search space does not meet the budget."""

    def __init__(self, message: str, smallest: dict):
        super().__init__(message)
        self.smallest = smallest


class RelevanceFeedback:
    """Relevance-weighted shrink/grow moves over one search space (see the module doc)."""

    def __init__(self, space: SearchSpace, hw: HwEstimator, scores: Mapping[str, float],
                 units: Mapping[str, np.ndarray] | None = None, alpha: float = 1.0,
                 table: SensitivityTable | None = None):
        self.space, self.hw, self.alpha = space, hw, float(alpha)
        self.table = table
        if table is not None:
            table.check_layers(space.layers)
        tot = sum(max(float(v), 0.0) for v in scores.values()) or 1.0
        self.s = {n: max(float(scores.get(n, 0.0)), 0.0) / tot + 1e-6 for n in space.layers}
        self._mass: dict[str, np.ndarray] = {}
        for n in space.prunable:
            u = np.sort(np.abs(np.asarray(units[n], dtype=np.float64))) if units and n in units else None
            if u is None or u.sum() <= 0:
                self._mass[n] = np.array([0.0])
            else:
                self._mass[n] = np.concatenate([[0.0], np.cumsum(u) / u.sum()])

    def mass(self, layer: str, ratio: float) -> float:
        """Share of the layer's unit relevance in its round(ratio*width) least relevant units."""
        m = self._mass[layer]
        if len(m) == 1:
            return float(ratio)
        k = int(round(ratio * (len(m) - 1)))
        return float(m[min(k, len(m) - 1)])

    def damage(self, old: Candidate, new: Candidate) -> float:
        """Relevance lost going from `old` to `new` (negative when relevance is regained)."""
        d = 0.0
        t = self.table
        for n in self.space.layers:
            s = self.s[n]
            if t is not None:
                d += t.w(n, new.wd[n]) - t.w(n, old.wd[n])
                if n in self.space.act_layers and t.has_act(n):
                    d += t.a(n, new.ad[n]) - t.a(n, old.ad[n])
            else:
                d += s * (2.0 ** -new.wd[n] - 2.0 ** -old.wd[n])
                if n in self.space.act_layers:
                    d += s * (2.0 ** -new.ad[n] - 2.0 ** -old.ad[n])
            if n in self.space.prunable:
                d += self.alpha * s * (self.mass(n, new.pd.get(n, 0.0)) - self.mass(n, old.pd.get(n, 0.0)))
        return d

    def util(self, c: Candidate) -> float:
        return binding(self.hw.estimate(c), self.hw.limits)

    def shrink(self, c: Candidate, forbid: set[tuple[str, str]] | None = None) -> Candidate | None:
        """One over-budget step: the down move with the largest utilisation drop per damage."""
        u0 = self.util(c)
        best, best_score = None, 0.0
        for kind, layer, d, nc in self.space.neighbours(c):
            if d > 0 or (forbid and (kind, layer) in forbid):
                continue
            du = u0 - self.util(nc)
            if du <= 0:
                continue
            score = du / (max(self.damage(c, nc), 0.0) + 1e-9)
            if score > best_score:
                best, best_score = nc, score
        return best

    def grow(self, c: Candidate, forbid: set[tuple[str, str]] | None = None) -> Candidate | None:
        """One slack step: the feasible up move regaining most relevance per utilisation added."""
        u0 = self.util(c)
        best, best_score = None, 0.0
        for kind, layer, d, nc in self.space.neighbours(c):
            if d < 0 or (forbid and (kind, layer) in forbid):
                continue
            if not self.hw.estimate(nc).feasible:
                continue
            gain = -self.damage(c, nc)
            if gain <= 0:
                continue
            score = gain / max(self.util(nc) - u0, 1e-6)
            if score > best_score:
                best, best_score = nc, score
        return best

    def to_boundary(self, start: Candidate, max_steps: int = 500,
                    forbid_shrink: set[tuple[str, str]] | None = None) -> tuple[Candidate, list[Candidate]]:
        """Shrink until the design fits, then grow while it fits. Returns (design, path)."""
        path = [start]
        c = start
        for _ in range(max_steps):
            if self.hw.estimate(c).feasible:
                break
            nc = self.shrink(c, forbid_shrink) or (self.shrink(c) if forbid_shrink else None)
            if nc is None:
                return c, path  # stuck: the caller checks feasibility
            c = nc
            path.append(c)
        for _ in range(max_steps):
            nc = self.grow(c)
            if nc is None:
                break
            c = nc
            path.append(c)
        return c, path

    def swaps(self, c: Candidate, max_ups: int = 4) -> list[Candidate]:
        """Trade-off proposals around a fitting design: grow one layer where relevance is high
        (any single up move, most relevant first), then shrink elsewhere until it fits again."""
        ups = [(kind, layer, nc) for kind, layer, d, nc in self.space.neighbours(c) if d > 0]
        ups.sort(key=lambda t: self.damage(c, t[2]))  # most relevance regained first
        ups = ups[:max_ups]
        out: list[Candidate] = []
        seen = {c.hash}
        for kind, layer, nc in ups:
            fitted, _ = self.to_boundary(nc, forbid_shrink={(kind, layer)})
            if self.hw.estimate(fitted).feasible and fitted.hash not in seen:
                seen.add(fitted.hash)
                out.append(fitted)
        return out


def check_achievable(space: SearchSpace, hw: HwEstimator) -> HwEstimate:
    """Raise InfeasibleBudgetError (with the smallest design's figures) when nothing fits."""
    small = space.smallest()
    est = hw.estimate(small)
    if est.feasible:
        return est
    figures = ", ".join(f"{r} {est.totals[r]:,}" for r in RESOURCES if est.totals[r])
    fps = f"{est.fps:,.0f} FPS" if est.fps else "target FPS unreachable"
    smallest = f"{figures}; {fps}" if figures else "not costed, the target FPS is unreachable"
    raise InfeasibleBudgetError(
        f"impossible budget: even the smallest design in the search space ({small.describe()}) does not fit "
        f"({est.reason}). Smallest achievable design: {smallest}. Limits: {hw.limits_text()}"
        + (f", target {hw.target_fps:,.0f} FPS" if hw.target_fps else "")
        + ". Raise the budget or lower the target FPS, or widen the search space (lower bits, more pruning).",
        {"candidate": small.to_json(), "estimate": est.to_dict(), "limits": hw.limits,
         "target_fps": hw.target_fps})
