"""`codesign search --status RUN`: the state of a (shared) study, read from its database.

Why from the database and not from log files: the workers may run on several machines; the
study is the one place that sees all of them. Each trial records the worker (host:pid) that
trained it, so the table is per worker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from codesign.atomic import read_json
from codesign.errors import CodesignError

log = logging.getLogger(__name__)


def _kind(t: Any) -> str:
    """complete / running / failed / infeasible / duplicate / other, for one trial."""
    from optuna.trial import TrialState

    u = t.user_attrs
    if t.state == TrialState.COMPLETE:
        return "complete" if "plan_hash" in u else "other"
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.FAIL:
        return "failed"
    if t.state == TrialState.PRUNED:
        return "infeasible" if u.get("feasible") is False else "duplicate"
    return "other"


def study_status(storage_url: str, name: str, budget: int | None = None) -> dict[str, Any]:
    """Counts per state and per worker, the best design so far, retried designs."""
    from codesign.search.study import Claims, make_storage, masked_url, open_study

    storage = make_storage(storage_url, reconnect_s=2)
    study = open_study(storage, name, create=False)
    trials = study.get_trials(deepcopy=False)
    claims = Claims(storage, study._study_id).rows()
    totals: dict[str, int] = defaultdict(int)
    workers: dict[str, dict[str, Any]] = {}
    best = None
    for t in trials:
        k = _kind(t)
        totals[k] += 1
        w = str(t.user_attrs.get("worker") or "-")
        row = workers.setdefault(w, {"worker": w, "complete": 0, "running": 0, "failed": 0, "duplicate": 0,
                                     "infeasible": 0, "other": 0, "best_accuracy": None, "last": None})
        row[k] += 1
        if k == "complete":
            acc = float(t.values[0])
            if row["best_accuracy"] is None or acc > row["best_accuracy"]:
                row["best_accuracy"] = acc
            if best is None or (acc, -t.values[1]) > (best["accuracy"], -best["LUT"]):
                best = {"trial": t.number, "accuracy": acc, "LUT": int(t.values[1]), "worker": w,
                        "design": t.user_attrs.get("candidate")}
        stamp = t.datetime_complete or t.datetime_start
        if stamp is not None and (row["last"] is None or stamp.isoformat() > row["last"]):
            row["last"] = stamp.isoformat(timespec="seconds")
    if best and best.get("design"):
        from codesign.designspace.space import Candidate

        best["describe"] = Candidate.from_json(best["design"]).describe()
    return {"storage": masked_url(storage_url), "study": name, "budget": budget,
            "totals": {k: int(totals.get(k, 0)) for k in ("complete", "running", "failed", "duplicate",
                                                          "infeasible", "other")},
            "designs_claimed": len(claims), "designs_retried": sum(c.attempts > 1 for c in claims),
            "best": best, "workers": sorted(workers.values(), key=lambda r: r["worker"])}


def run_status(run: Path, storage: str | None = None, study: str | None = None) -> dict[str, Any]:
    """Status of the search in run folder `run` (its search/study.json says where the study is)."""
    run = Path(run)
    info_path = run / "search" / "study.json"
    info = read_json(info_path) if info_path.is_file() else {}
    if not info and not (storage and study):
        raise CodesignError(f"{info_path} not found: no search has started in {run} (or pass --storage URL "
                            "and --study-name)")
    url = storage or info.get("storage")
    if url and "***" in url and not storage:
        raise CodesignError(f"the study URL in {info_path} has its password hidden; pass --storage URL")
    return study_status(url, study or info["study"], info.get("trials"))


def print_status(st: dict[str, Any]) -> None:
    """Totals line, best design, and one table row per worker (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    t = st["totals"]
    budget = f" of {st['budget']}" if st.get("budget") else ""
    console.print(f"study [bold]{st['study']}[/bold] in {st['storage']}", markup=True, highlight=False)
    console.print(f"designs trained: {t['complete']}{budget}, running: {t['running']}, failed: {t['failed']} "
                  f"(designs retried: {st['designs_retried']}), duplicates skipped: {t['duplicate']}, "
                  f"rejected by the cost model: {t['infeasible']}", markup=False, highlight=False)
    b = st.get("best")
    if b:
        console.print(f"best so far: trial {b['trial']}, val acc {100 * b['accuracy']:.2f}%, {b['LUT']:,} LUT, "
                      f"{b.get('describe', '')} (worker {b['worker']})", markup=False, highlight=False)
    tab = Table(title="per worker")
    for col in ("worker", "trained", "running", "failed", "duplicates", "infeasible", "best val acc", "last activity"):
        tab.add_column(col)
    for r in st["workers"]:
        tab.add_row(r["worker"], str(r["complete"]), str(r["running"]), str(r["failed"]), str(r["duplicate"]),
                    str(r["infeasible"]), "-" if r["best_accuracy"] is None else f"{100 * r['best_accuracy']:.2f}%",
                    r["last"] or "-")
    console.print(tab)
