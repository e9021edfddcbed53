"""Pareto fronts over trained designs: accuracy (max) vs LUT (min), FPS (max) as a third axis."""

from __future__ import annotations

from typing import Any, Sequence


def dominates(a: dict, b: dict, keys: Sequence[tuple[str, int]]) -> bool:
    """a dominates b: no worse on every key (sign +1 maximise, -1 minimise), better on one."""
    ge = all(s * (a[k] or 0) >= s * (b[k] or 0) for k, s in keys)
    gt = any(s * (a[k] or 0) > s * (b[k] or 0) for k, s in keys)
    return ge and gt


def pareto_front(records: list[dict[str, Any]],
                 keys: Sequence[tuple[str, int]] = (("accuracy", 1), ("LUT", -1), ("fps", 1))) -> list[dict]:
    """Non-dominated records, sorted by LUT. Ties (same values) are all kept."""
    front = [r for r in records if not any(dominates(o, r, keys) for o in records if o is not r)]
    return sorted(front, key=lambda r: (r["LUT"], -r["accuracy"]))


def hypervolume_2d(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` = [(cost, value), ...] (cost minimised, value maximised, e.g.
    (LUT, accuracy)) up to the reference point ``ref`` = (worst cost, worst value): the union of
    the boxes [cost_i, ref_cost] x [ref_value, value_i]. Points no better than ``ref`` on either
    axis add nothing; dominated points add nothing (their box lies inside another's).

    Why by hand: in 2-D it is a sort and a sum (sweep the costs upwards, keeping the best value
    seen so far), and optuna's hypervolume is private API (``optuna._hypervolume``)."""
    rc, rv = float(ref[0]), float(ref[1])
    pts = sorted((float(c), float(v)) for c, v in points if float(c) < rc and float(v) > rv)
    area, best = 0.0, rv
    for i, (c, v) in enumerate(pts):
        best = max(best, v)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else rc
        area += (nxt - c) * (best - rv)
    return area
