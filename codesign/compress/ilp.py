"""Exact bit (and prune-ratio) allocation under the hardware budget: a chain-structured ILP.

Why an ILP and not the greedy walk: the question "which per-layer bits lose the least
relevance while the accelerator fits its LUT/BRAM at the target FPS" is a multiple-choice
knapsack. A greedy walk answers it approximately; scipy's ``milp`` (HiGHS, already installed)
answers it exactly in milliseconds for networks of this size.

The model (docs/compression.md, "ILP allocation"):

* Per layer l a set of *items* ``k = (weight bits, activation bits, prune ratio)``; the
  objective is the sensitivity table's relevance lost, ``T_w[l][w] + T_a[l][a] +
  alpha * score_l * mass_l(p)`` (``mass_l``: relevance share of the pruned units), summed.
* Resource cost at the target FPS: the cost model folds each node with the cheapest folding
  that meets the target cycles, which does not depend on other layers; what does is the
  layer's *input*: its activation width and channel count come from the previous layer's item
  (and its sliding window / padding, costed with the layer). So a layer's cost is a function
  ``C_l(k_{l-1}, k_l)`` of its own item and the previous layer's *interface* (act bits, prune
  ratio), and the network total is the sum over layers. The ILP is exact for that structure:
  binaries ``x_{l,k}`` (one item per layer) and pair variables ``y_{l,i,j}`` with
  ``sum_j y_{l,i,j} = x_{l-1,i}``, ``sum_i y_{l,i,j} = x_{l,j}`` (so ``y = x_{l-1,i} x_{l,j}``),
  and ``sum C^r y <= limit_r`` for every resource r.
* ``C_l`` is measured with the project's own estimator (`codesign.designspace.estimate.HwEstimator`,
  i.e. the compiler's ``auto_fold`` + cost model, per-layer breakdown): designs that set
  disjoint layer pairs at once, ``2 x |interfaces| x |items|`` estimates in all.
* Assumption checked, not trusted: after solving, the chosen design is estimated with the full
  cost model; if it overshoots a limit (an effect outside the pair structure) the ILP's limit
  is tightened by the overshoot, the design is cut off, and the problem is re-solved
  (``IlpResult.rounds`` says how often). A design that misses the target FPS is cut off too.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from codesign.compress.sensitivity import SensitivityTable, prune_mass
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

ILP_RESOURCES = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")


@dataclass(frozen=True)
class Item:
    """One choice for a layer: weight bits, activation bits (None: logits layer), prune ratio."""

    w: int
    a: int | None
    p: float = 0.0

    @property
    def interface(self) -> tuple[int | None, float]:
        """What the next layer's cost depends on: this layer's output bits and width."""
        return (self.a, self.p)


# --------------------------------------------------------------------------- the solver

def solve_chain(damage: Sequence[np.ndarray], costs: Sequence[Mapping[str, np.ndarray]],
                limits: Mapping[str, float], cuts: Sequence[Sequence[int]] = ()) -> list[int] | None:
    """Exact minimum-damage choice of one item per layer under pairwise-additive costs.

    ``damage[l]``: (K_l,) objective per item. ``costs[l][r]``: (1, K_0) for l = 0, else
    (K_{l-1}, K_l): resource r of layer l given the previous and own item (``inf`` forbids).
    ``limits[r]``: sum over layers <= limit. ``cuts``: item index lists to exclude (no-good
    cuts, for the k best designs / a rejected design). Returns item indices or None if infeasible.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_array

    L = len(damage)
    K = [len(d) for d in damage]
    xoff = np.concatenate([[0], np.cumsum(K)]).astype(int)
    nx = int(xoff[-1])
    yoff = [0] * L
    ny = 0
    for l in range(1, L):
        yoff[l] = nx + ny
        ny += K[l - 1] * K[l]
    nv = nx + ny
    c = np.zeros(nv)
    for l in range(L):
        c[xoff[l]:xoff[l] + K[l]] = np.asarray(damage[l], float)
    lb, ub = np.zeros(nv), np.ones(nv)
    res = [r for r in limits if math.isfinite(float(limits[r]))]
    rows: list[tuple[dict[int, float], float, float]] = []
    for l in range(L):
        rows.append(({xoff[l] + j: 1.0 for j in range(K[l])}, 1.0, 1.0))
    for l in range(1, L):
        for i in range(K[l - 1]):
            row = {yoff[l] + i * K[l] + j: 1.0 for j in range(K[l])}
            row[xoff[l - 1] + i] = -1.0
            rows.append((row, 0.0, 0.0))
        for j in range(K[l]):
            row = {yoff[l] + i * K[l] + j: 1.0 for i in range(K[l - 1])}
            row[xoff[l] + j] = -1.0
            rows.append((row, 0.0, 0.0))
    for r in res:
        row: dict[int, float] = {}
        c0 = np.asarray(costs[0][r], float).reshape(-1)
        for j in range(K[0]):
            if math.isinf(c0[j]):
                ub[xoff[0] + j] = 0
            elif c0[j]:
                row[xoff[0] + j] = c0[j]
        for l in range(1, L):
            cl = np.asarray(costs[l][r], float).reshape(K[l - 1], K[l])
            for i in range(K[l - 1]):
                for j in range(K[l]):
                    v = yoff[l] + i * K[l] + j
                    if math.isinf(cl[i, j]):
                        ub[v] = 0
                    elif cl[i, j]:
                        row[v] = cl[i, j]
        rows.append((row, -np.inf, float(limits[r])))
    for cut in cuts:
        rows.append(({xoff[l] + int(j): 1.0 for l, j in enumerate(cut)}, -np.inf, L - 1.0))
    A = lil_array((len(rows), nv))
    lo, hi = np.empty(len(rows)), np.empty(len(rows))
    for k, (row, a, b) in enumerate(rows):
        for v, coef in row.items():
            A[k, v] = coef
        lo[k], hi[k] = a, b
    integrality = np.zeros(nv)
    integrality[:nx] = 1
    out = milp(c, constraints=LinearConstraint(A.tocsr(), lo, hi), integrality=integrality,
               bounds=Bounds(lb, ub))
    if out.status != 0 or out.x is None:
        return None
    x = out.x
    return [int(np.argmax(x[xoff[l]:xoff[l] + K[l]])) for l in range(L)]


def brute_force(damage: Sequence[np.ndarray], costs: Sequence[Mapping[str, np.ndarray]],
                limits: Mapping[str, float]) -> tuple[list[int] | None, float]:
    """Reference enumeration of `solve_chain`'s problem (for tests on small problems)."""
    import itertools

    best, best_d = None, math.inf
    for combo in itertools.product(*[range(len(d)) for d in damage]):
        ok = True
        for r, lim in limits.items():
            tot = float(np.asarray(costs[0][r]).reshape(-1)[combo[0]])
            for l in range(1, len(damage)):
                tot += float(np.asarray(costs[l][r]).reshape(len(damage[l - 1]), len(damage[l]))[combo[l - 1], combo[l]])
            if tot > lim + 1e-9:
                ok = False
                break
        if ok:
            d = sum(float(damage[l][k]) for l, k in enumerate(combo))
            if d < best_d - 1e-12:
                best, best_d = list(combo), d
    return best, best_d


# ------------------------------------------------------------------ the allocation problem

@dataclass
class IlpResult:
    """The chosen designs (best first) with their objective and full-cost-model verdicts."""

    candidates: list[Any]
    damage: list[float]
    estimates: list[Any]
    rounds: int
    limits_used: dict[str, float]
    seconds: float
    estimator_calls: int
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> Any:
        return self.candidates[0] if self.candidates else None


def layer_items(space: Any, act: str | int = "free") -> dict[str, list[Item]]:
    """Items per layer from a `SearchSpace`. ``act``: "free" (every act width of the space),
    "follow" (act bits track weight bits, at least 2, nearest in the space) or a fixed width."""
    out: dict[str, list[Item]] = {}
    for n in space.layers:
        if n in space.act_layers:
            if act == "free":
                acts: list[int | None] = list(space.act_bits)
            elif act == "follow":
                acts = []
            else:
                if int(act) not in space.act_bits:
                    raise CodesignError(f"fixed activation width {act} is not in the space {space.act_bits}")
                acts = [int(act)]
        else:
            acts = [None]
        prunes = list(space.prune_levels) if n in space.prunable else [0.0]
        items = []
        for w in space.weight_bits:
            a_list = acts
            if act == "follow" and n in space.act_layers:
                a_list = [min(space.act_bits, key=lambda x, w=w: (abs(x - max(2, w)), -x))]
            for a in a_list:
                for p in prunes:
                    items.append(Item(int(w), None if a is None else int(a), float(p)))
        out[n] = items
    return out


def item_damage(table: SensitivityTable, layer: str, it: Item, units: Mapping[str, np.ndarray] | None,
                scores: Mapping[str, float] | None, alpha: float) -> float:
    d = table.w(layer, it.w)
    if it.a is not None and table.has_act(layer):
        d += table.a(layer, it.a)
    if it.p > 0:
        u = units.get(layer) if units else None
        share = float((scores or {}).get(layer, 1.0 / max(1, len(table.layers))))
        d += alpha * share * (prune_mass(u, it.p) if u is not None else it.p)
    return float(d)


def _candidate(space: Any, layers: list[str], items: Mapping[str, Item]) -> Any:
    from codesign.designspace.space import Candidate

    return Candidate.make({n: items[n].w for n in layers},
                          {n: items[n].a for n in layers if items[n].a is not None},
                          {n: items[n].p for n in layers if items[n].p > 0}, space.input_bits)


def pair_costs(space: Any, hw: Any, items: Mapping[str, list[Item]]) -> list[dict[str, np.ndarray]]:
    """Measure ``C_l(interface_{l-1}, item_l)`` with the estimator (module doc), expanded to
    (K_{l-1}, K_l) per resource; ``inf`` where the layer cannot meet the target FPS."""
    layers = list(space.layers)
    L = len(layers)
    ifaces = [sorted({it.interface for it in items[n]}, key=lambda t: (t[0] or 0, t[1])) for n in layers]
    rep = [{f: next(it for it in items[n] if it.interface == f) for f in ifaces[l]} for l, n in enumerate(layers)]
    default = {n: min(items[n], key=lambda it: (it.w, it.a or 0, -it.p)) for n in layers}
    # measured[l][(iface_prev or None, item)] = {resource: value}
    measured: list[dict[tuple[Any, Item], dict[str, float]]] = [dict() for _ in layers]

    def record(assign: dict[str, Item], targets: list[int]) -> bool:
        est = hw.estimate(_candidate(space, layers, assign), per_layer=True)
        if not est.max_cycles:
            return False
        for l in targets:
            key = (assign[layers[l - 1]].interface if l else None, assign[layers[l]])
            measured[l][key] = {r: float(est.per_layer[layers[l]][r]) for r in ILP_RESOURCES}
        return True

    for group in (1, 2):  # disjoint pairs (l-1, l): l odd, then l even >= 2 (plus layer 0 alone)
        targets = [l for l in range(L) if (l % 2 == 1 if group == 1 else (l % 2 == 0 and l >= 2))]
        if group == 2:
            targets = [0] + targets
        if not targets:
            continue
        ni = max(len(ifaces[l - 1]) if l else 1 for l in targets)
        nk = max(len(items[layers[l]]) for l in targets)
        for i in range(ni):
            for j in range(nk):
                assign = dict(default)
                for l in targets:
                    if l:
                        prev = layers[l - 1]
                        assign[prev] = rep[l - 1][ifaces[l - 1][i % len(ifaces[l - 1])]]
                    assign[layers[l]] = items[layers[l]][j % len(items[layers[l]])]
                todo = [l for l in targets
                        if (assign[layers[l - 1]].interface if l else None, assign[layers[l]]) not in measured[l]]
                if not todo or record(assign, todo):
                    continue
                for l in todo:  # a design failed the target: find which pair, one at a time
                    one = dict(default)
                    if l:
                        one[layers[l - 1]] = assign[layers[l - 1]]
                    one[layers[l]] = assign[layers[l]]
                    if not record(one, [l]):
                        key = (one[layers[l - 1]].interface if l else None, one[layers[l]])
                        measured[l][key] = {r: math.inf for r in ILP_RESOURCES}
    out = []
    for l, n in enumerate(layers):
        prev_items = [None] if l == 0 else items[layers[l - 1]]
        tab = {r: np.zeros((len(prev_items), len(items[n]))) for r in ILP_RESOURCES}
        for i, pi in enumerate(prev_items):
            for j, it in enumerate(items[n]):
                m = measured[l][(pi.interface if pi is not None else None, it)]
                for r in ILP_RESOURCES:
                    tab[r][i, j] = m[r]
        out.append(tab)
    return out


def ilp_allocate(space: Any, hw: Any, table: SensitivityTable, units: Mapping[str, np.ndarray] | None = None,
                 scores: Mapping[str, float] | None = None, alpha: float = 1.0, act: str | int = "free",
                 k_best: int = 1, max_rounds: int = 12) -> IlpResult:
    """Minimum-relevance-lost designs of ``space`` that fit ``hw``'s limits at its target FPS.

    ``hw``: a `codesign.designspace.estimate.HwEstimator` with a target FPS. Returns up to ``k_best``
    designs (no-good cuts between them), each checked with the full cost model (module doc).
    Raises CodesignError when no design fits.
    """
    if hw.target_fps is None:
        raise CodesignError("the ILP allocation needs a target FPS (the folding, hence each layer's cost, "
                            "depends on it): pass fps=... / --target-fps")
    t0 = time.time()
    calls0 = hw.calls
    layers = list(space.layers)
    table.check_layers(layers)
    items = layer_items(space, act)
    damage = [np.array([item_damage(table, n, it, units, scores, alpha) for it in items[n]]) for n in layers]
    costs = pair_costs(space, hw, items)
    limits = {r: float(hw.limits[r]) for r in ILP_RESOURCES}
    cuts: list[list[int]] = []
    found, dmg, ests, hist = [], [], [], []
    rounds = 0
    while len(found) < k_best and rounds < max_rounds:
        rounds += 1
        sol = solve_chain(damage, costs, limits, cuts)
        if sol is None:
            break
        chosen = {n: items[n][k] for n, k in zip(layers, sol)}
        cand = _candidate(space, layers, chosen)
        est = hw.estimate(cand)
        pred = {r: float(costs[0][r][0, sol[0]] + sum(costs[l][r][sol[l - 1], sol[l]] for l in range(1, len(layers))))
                for r in ILP_RESOURCES}
        hist.append({"design": cand.describe(), "predicted": pred, "full": dict(est.totals),
                     "feasible": est.feasible, "limits": dict(limits)})
        cuts.append(sol)
        if est.feasible:
            found.append(cand)
            dmg.append(float(sum(damage[l][k] for l, k in enumerate(sol))))
            ests.append(est)
            continue
        log.info("ILP design %s over budget in the full cost model (%s): tightening", cand.describe(), est.reason)
        if est.max_cycles:
            for r in ILP_RESOURCES:
                over = est.totals[r] - hw.limits[r]
                if over > 0:
                    limits[r] = min(limits[r], pred[r] - over)
    if not found:
        raise CodesignError(f"no design of the space fits {hw.limits_text()} at {hw.target_fps:,.0f} FPS "
                            f"(ILP, {rounds} rounds): raise the budget, lower the target FPS or allow fewer bits")
    res = IlpResult(found, dmg, ests, rounds, limits, time.time() - t0, hw.calls - calls0, hist)
    log.info("ILP allocation: %s (relevance lost %.4g; %d rounds, %d estimates, %.2f s)", found[0].describe(),
             dmg[0], rounds, res.estimator_calls, res.seconds)
    return res


def hw_budget_text(kind: str, limits: Mapping[str, float], fps: float, board: str = "Pynq-Z2",
                   clock_ns: float | None = None, act: str | int = "free") -> str:
    """The ``--bits`` text of a hardware budget (the inverse of `parse_hw_budget`), e.g.
    ``ilp:LUT=8000,fps=100000,board=Pynq-Z2,clock=10,act=free``: benchmarks that hand a search's
    budget to the allocators build it here, so both read the same limits."""
    if kind not in ("ilp", "greedy"):
        raise CodesignError(f"hardware-budget allocation '{kind}': choose ilp or greedy")
    def num(v: float) -> str:  # exact: no 6-digit %g rounding of a large limit
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)

    parts = [f"{k}={num(v)}" for k, v in limits.items() if v]
    parts += [f"fps={num(fps)}", f"board={board}"]
    if clock_ns:
        parts.append(f"clock={num(clock_ns)}")
    parts.append(f"act={act}")
    return f"{kind}:" + ",".join(parts)


def parse_hw_budget(text: str) -> dict[str, Any]:
    """'ilp:LUT=8000,BRAM=100,fps=10000,board=Pynq-Z2,act=follow' -> options dict.

    Resource keys (LUT, FF, BRAM/BRAM_18K, URAM, DSP) are limits; ``fps`` (required) the target,
    ``board`` (default Pynq-Z2), ``clock`` (ns), ``act`` free|follow|<bits>, ``alpha``."""
    kind, _, rest = text.partition(":")
    opts: dict[str, Any] = {"kind": kind.strip().lower(), "limits": {}, "board": "Pynq-Z2", "fps": None,
                            "clock": None, "act": "follow", "alpha": 1.0}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            raise CodesignError(f"--bits {text}: '{part}' is not KEY=VALUE (example: ilp:LUT=8000,BRAM=100,fps=10000)")
        k, v = (s.strip() for s in part.split("=", 1))
        kl = k.lower()
        try:
            if kl in ("lut", "ff", "bram", "bram_18k", "uram", "dsp"):
                opts["limits"][{"bram": "BRAM_18K", "bram_18k": "BRAM_18K"}.get(kl, kl.upper())] = float(v)
            elif kl == "fps":
                opts["fps"] = float(v)
            elif kl == "clock":
                opts["clock"] = float(v)
            elif kl == "board":
                opts["board"] = v
            elif kl == "alpha":
                opts["alpha"] = float(v)
            elif kl == "act":
                opts["act"] = v if v in ("free", "follow") else int(v)
            else:
                raise CodesignError(f"--bits {text}: unknown key '{k}' (use LUT, FF, BRAM, URAM, DSP, fps, board, "
                                    "clock, act, alpha)")
        except ValueError as exc:
            raise CodesignError(f"--bits {text}: value of '{k}' is not a number") from exc
    if opts["fps"] is None:
        raise CodesignError(f"--bits {text}: needs the target FPS, e.g. {kind}:LUT=8000,fps=10000")
    return opts
