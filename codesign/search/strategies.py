"""Search strategies: which designs to train, in which order. All share one Evaluator.

* `relevance` (default): cost-model walks to the budget boundary guided by relevance
  (`feedback.RelevanceFeedback`) with several pruning weights give the seed designs; short QAT
  ranks them; then trade-off swaps around the best design (grow where relevance is high, shrink
  where relevance per LUT is low) are trained while they improve accuracy. Stops when no swap
  is new (converged), after `patience` swaps without improvement, or when the trial budget is
  spent. Deterministic: a restarted run replays the same walk, with every trained design read
  back from the study instead of being trained again.
* `optuna`: NSGA-II (or TPE) over the same parameters, objectives (accuracy, LUT); infeasible
  proposals are rejected by the cost model in milliseconds and told PRUNED; optionally seeded
  with the relevance boundary designs through `enqueue_trial`.
* `uniform`: the same bits in every layer, largest fitting designs first (the usual practice).
* `random`: uniformly random fitting designs (seeded, so a restart replays the sequence).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from codesign.errors import CodesignError
from codesign.search.feedback import RelevanceFeedback
from codesign.designspace.space import Candidate, SearchSpace
from codesign.search.study import Evaluation, Evaluator, record_heartbeat

log = logging.getLogger(__name__)

STRATEGIES = ("relevance", "optuna", "uniform", "random")


@dataclass
class StrategyResult:
    """What a strategy did in this process (the study holds every worker's trials)."""

    strategy: str
    converged: bool = False
    stop_reason: str = ""
    best: Evaluation | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _better(a: Evaluation | None, b: Evaluation | None) -> bool:
    """Is `a` better than `b`: higher accuracy, then fewer LUTs."""
    if a is None or a.accuracy is None:
        return False
    if b is None or b.accuracy is None:
        return True
    return (a.accuracy, -a.lut) > (b.accuracy, -b.lut)


def boundary_seeds(space: SearchSpace, fb: RelevanceFeedback, alphas=(0.25, 1.0, 4.0), above: int = 2) -> list[Candidate]:
    """Relevance-guided designs on the budget boundary: one walk per pruning weight alpha from
    the largest fitting uniform design and from the `above` next larger (non-fitting) uniform
    designs, so walks trade bits against pruning differently (deduplicated, cost model only)."""
    uni = []
    for wb in space.weight_bits:
        ab = max([a for a in space.act_bits if a <= wb] or [space.act_bits[0]])
        uni.append(space.uniform(wb, ab))
    fits = [fb.hw.estimate(c).feasible for c in uni]
    last_fit = max([i for i, f in enumerate(fits) if f], default=-1)
    starts = uni[max(last_fit, 0):last_fit + 1 + above] or [space.largest()]
    out: list[Candidate] = []
    seen: set[str] = set()
    base_alpha = fb.alpha
    try:
        for alpha in alphas:
            fb.alpha = alpha
            for s in starts:
                c, _ = fb.to_boundary(s)
                if fb.hw.estimate(c).feasible and c.hash not in seen:
                    seen.add(c.hash)
                    out.append(c)
    finally:
        fb.alpha = base_alpha
    return out


def _evaluate_list(ev: Evaluator, cands: list[Candidate], res: StrategyResult) -> bool:
    """Evaluate in order; designs another worker is training are revisited at the end.
    Returns False when the trial budget ran out."""
    later = []
    for c in cands:
        if ev.budget_left() <= 0 and ev.cached(c) is None:
            return False
        e = ev.evaluate(c, wait=False)
        if e is None:
            later.append(c)
            continue
        _note(res, e)
    for c in later:
        e = ev.evaluate(c, wait=True)
        if e is None:
            return False
        _note(res, e)
    return True


def _note(res: StrategyResult, e: Evaluation) -> None:
    if e.accuracy is None:
        return
    res.history.append({"plan_hash": e.cand.hash, "design": e.cand.describe(), "accuracy": e.accuracy,
                        "LUT": e.lut, "cached": e.cached})
    if _better(e, res.best):
        res.best = e


def run_relevance(ev: Evaluator, fb: RelevanceFeedback, patience: int = 3, max_iters: int = 50,
                  min_delta: float = 0.001) -> StrategyResult:
    res = StrategyResult("relevance")
    seeds = boundary_seeds(ev.space, fb)
    log.info("relevance: %d boundary designs from the cost model (%d estimates, %.2f s)", len(seeds),
             fb.hw.calls, fb.hw.seconds)
    if not _evaluate_list(ev, seeds, res):
        res.stop_reason = "trial budget spent"
        return res
    stale = 0
    tried: set[str] = {c.hash for c in seeds}
    for it in range(max_iters):
        if res.best is None:
            res.stop_reason = "no feasible design trained"
            return res
        props = [c for c in fb.swaps(res.best.cand) if c.hash not in tried]
        if not props:
            res.converged, res.stop_reason = True, f"converged: no new trade-off around the best design (iteration {it})"
            return res
        e = None
        for c in props:  # the first one no other worker is training right now
            tried.add(c.hash)
            if ev.budget_left() <= 0 and ev.cached(c) is None:
                res.stop_reason = "trial budget spent"
                return res
            e = ev.evaluate(c, wait=False)
            if e is not None:
                break
        if e is None:
            e = ev.evaluate(props[0], wait=True)
            if e is None:
                res.stop_reason = "trial budget spent"
                return res
        prev = res.best
        _note(res, e)
        if res.best is not prev and res.best.accuracy >= prev.accuracy + min_delta:
            stale = 0
        else:
            stale += 1
        if stale >= patience:
            res.converged, res.stop_reason = True, f"converged: {patience} trade-offs without improvement"
            return res
    res.stop_reason = "iteration budget spent"
    return res


def run_uniform(ev: Evaluator) -> StrategyResult:
    res = StrategyResult("uniform")
    sp = ev.space
    cands = [sp.uniform(w, a) for w in sp.weight_bits for a in sp.act_bits]
    cands = [c for c in cands if ev.hw.estimate(c).feasible]
    cands.sort(key=lambda c: -ev.hw.estimate(c).totals["LUT"])
    ok = _evaluate_list(ev, cands, res)
    res.converged, res.stop_reason = ok, ("all fitting uniform designs trained" if ok else "trial budget spent")
    return res


def random_candidate(sp: SearchSpace, rng: random.Random) -> Candidate:
    return Candidate.make({n: rng.choice(sp.weight_bits) for n in sp.layers},
                          {n: rng.choice(sp.act_bits) for n in sp.act_layers},
                          {n: rng.choice(sp.prune_levels) for n in sp.prunable}, sp.input_bits,
                          (rng.choice(sp.cluster) or None) if sp.cluster else None)


def run_random(ev: Evaluator, seed: int = 0, max_rejects: int = 20000) -> StrategyResult:
    res = StrategyResult("random")
    rng = random.Random(seed)
    rejects = 0
    seen: set[str] = set()
    while True:
        c = random_candidate(ev.space, rng)
        if c.hash in seen:
            continue
        seen.add(c.hash)
        if not ev.hw.estimate(c).feasible:  # cost model only: no database query
            rejects += 1
            if rejects > max_rejects:
                res.stop_reason = f"{max_rejects} random designs rejected by the cost model"
                return res
            continue
        if ev.budget_left() <= 0:
            break
        e = ev.evaluate(c, wait=False)
        if e is not None:
            _note(res, e)
    res.stop_reason = "trial budget spent"
    return res


def make_sampler(kind: str, seed: int, population: int = 8) -> Any:
    import optuna

    kind = kind.lower()
    if kind in ("nsga2", "nsgaii", "nsga-ii"):
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, population))
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(2, population))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise CodesignError(f"unknown optuna sampler '{kind}': choose nsga2, tpe or random")


def run_optuna(ev: Evaluator, seeds: list[Candidate] | None = None, max_asks: int | None = None) -> StrategyResult:
    """Sampler-driven search (the study's sampler); `seeds` are enqueued once (skip_if_exists)."""
    import warnings

    res = StrategyResult("optuna")
    study = ev.study
    for c in seeds or []:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(ev.space.params(c), skip_if_exists=True)
    dists = ev.space.distributions()
    asks = 0
    max_asks = max_asks or 200 * max(1, ev.max_trials)
    while ev.budget_left() > 0:
        if asks >= max_asks:
            res.stop_reason = f"{max_asks} proposals, too few fit the budget"
            return res
        asks += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(dists)
        record_heartbeat(study, trial._trial_id)
        c = ev.space.from_params(trial.params)
        e = ev.evaluate(c, wait=False, trial=trial)
        if e is not None:
            _note(res, e)
    res.stop_reason = "trial budget spent"
    return res
