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
