"""The `ilp` search strategy: the exact minimum-relevance-lost designs under the budget.

Why: the relevance walk (`strategies.run_relevance`) reaches the budget boundary by greedy
steps; the ILP (`codesign.compress.ilp`) finds the designs that lose the least measured
relevance (the same `SensitivityTable` the walk and `codesign compress` read) and fit the
cost model's limits at the target FPS, exactly. They serve as a strategy of their own (train
the k best in order) or as starting points: `ilp_seeds` for `run_optuna(seeds=...)` or for
the relevance walk's swaps.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from codesign.compress.ilp import ilp_allocate
from codesign.compress.sensitivity import SensitivityTable
from codesign.designspace.estimate import HwEstimator
from codesign.designspace.space import Candidate, SearchSpace

log = logging.getLogger(__name__)


def ilp_seeds(space: SearchSpace, hw: HwEstimator, table: SensitivityTable,
              units: Mapping[str, np.ndarray] | None = None, scores: Mapping[str, float] | None = None,
              k: int = 4, alphas: tuple[float, ...] = (1.0,), act: str | int = "free") -> list[Candidate]:
    """The k least-damaging fitting designs per pruning weight alpha (deduplicated, cost model only)."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for alpha in alphas:
        res = ilp_allocate(space, hw, table, units, scores, alpha=alpha, act=act, k_best=k)
        for c in res.candidates:
            if c.hash not in seen:
                seen.add(c.hash)
                out.append(c)
    return out


def run_ilp(ev: Any, table: SensitivityTable, units: Mapping[str, np.ndarray] | None = None,
            scores: Mapping[str, float] | None = None, k: int = 4, alphas: tuple[float, ...] = (0.25, 1.0, 4.0)) -> Any:
    """Train the ILP designs in order of relevance lost (a `strategies.StrategyResult`)."""
    from codesign.search.strategies import StrategyResult, _evaluate_list

    res = StrategyResult("ilp")
    seeds = ilp_seeds(ev.space, ev.hw, table, units, scores, k=k, alphas=alphas)
    log.info("ilp: %d designs from the exact allocation", len(seeds))
    ok = _evaluate_list(ev, seeds, res)
    res.converged = ok
    res.stop_reason = "all ILP designs trained" if ok else "trial budget spent"
    return res
