"""Study storage (optuna RDB) and the trial evaluator with its plan-hash accuracy cache.

Why optuna's RDB storage: it is a transactional store many processes (and machines, with
PostgreSQL/MySQL) can share, with trial states and heartbeats. The rules that make a search
resumable and distributable without losing or repeating work:

* Every trial carries its design's `plan_hash` from the moment it is created (the trial is
  created RUNNING with the hash as a user attribute, in one insert).
* Before training, the evaluator looks the hash up: a COMPLETE trial *is* the cache (its
  values are reused, nothing is trained or recorded again). A RUNNING trial of a live worker
  with the same hash and a lower number owns the design: a later duplicate is marked PRUNED
  (`duplicate_of`) and waits for the owner's result. So completed trials never repeat a design.
* While training, a heartbeat thread keeps the trial alive; a killed worker's trial goes stale
  and `fail_stale_trials` marks it FAIL after the grace period, freeing its design for the next
  worker or the restarted run. Completed trials are never touched again.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from codesign.errors import CodesignError
from codesign.search.hw import HwEstimate, HwEstimator
from codesign.search.space import Candidate, SearchSpace

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")  # (accuracy, LUT)


def default_storage_url(folder: str | Path) -> str:
    """SQLite file `study.db` in the search folder."""
    path = Path(folder).resolve() / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_storage(url: str, heartbeat_interval: int = 10, grace_period: int = 30):
    """An optuna RDBStorage for any SQLAlchemy URL, with heartbeats for stale-trial recovery."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 300}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, heartbeat_interval=max(1, int(heartbeat_interval)),
                                              grace_period=max(2, int(grace_period)), **kwargs)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors vary by backend
        raise CodesignError(f"cannot open study storage {url!r}: {exc}. Use an SQLAlchemy URL such as "
                            "sqlite:///runs/x/study.db or postgresql://user:pw@host/db (its driver installed)") from exc


def open_study(storage: Any, name: str, sampler: Any = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS),
                                    sampler=sampler, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise CodesignError(f"study {name!r} in this storage has other objectives; use another study name")
    return study


@dataclass
class Evaluation:
    """The outcome of one candidate: accuracy from short QAT plus the cost-model estimate."""

    cand: Candidate
    est: HwEstimate
    accuracy: float | None  # short-QAT validation accuracy (None: infeasible, not trained)
    trial_number: int | None
    cached: bool
    seconds: float = 0.0

    @property
    def lut(self) -> int:
        return int(self.est.totals["LUT"])


TrainFn = Callable[[Candidate, Path], dict]


class Evaluator:
    """Cost check in milliseconds, then short QAT for feasible designs; the study is the cache."""

    def __init__(self, study: Any, space: SearchSpace, hw: HwEstimator, train_fn: TrainFn, trials_dir: Path,
                 strategy: str, max_trials: int, poll_s: float = 1.0):
        self.study = study
        self.space = space
        self.hw = hw
        self.train_fn = train_fn
        self.trials_dir = Path(trials_dir)
        self.strategy = strategy
        self.max_trials = int(max_trials)
        self.poll_s = poll_s
        self.trained_here = 0
        self.cache_hits = 0

    # -- study queries ----------------------------------------------------------------
    def _trials(self, states=None):
        from optuna.trial import TrialState

        self._fail_stale()
        return self.study.get_trials(deepcopy=False, states=states or (TrialState.COMPLETE, TrialState.RUNNING))

    def _fail_stale(self) -> None:
        from optuna.storages import fail_stale_trials

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(self.study)

    def completed(self) -> list[Any]:
        """COMPLETE trials that trained a design (not duplicates), in trial order."""
        from optuna.trial import TrialState

        return [t for t in self._trials((TrialState.COMPLETE,)) if "plan_hash" in t.user_attrs]

    def n_completed(self) -> int:
        return len(self.completed())

    def budget_left(self) -> int:
        return self.max_trials - self.n_completed()

    def lookup(self, h: str) -> tuple[str, Any] | None:
        """('complete', trial) or ('running', trial) for a design hash, else None."""
        from optuna.trial import TrialState

        best = None
        for t in self._trials():
            if t.user_attrs.get("plan_hash") != h:
                continue
            if t.state == TrialState.COMPLETE:
                return "complete", t
            if best is None or t.number < best.number:
                best = t
        return ("running", best) if best is not None else None

    def cached(self, cand: Candidate) -> Evaluation | None:
        hit = self.lookup(cand.hash)
        if hit and hit[0] == "complete":
            return self._from_trial(cand, hit[1], cached=True)
        return None

    def _from_trial(self, cand: Candidate, t: Any, cached: bool) -> Evaluation:
        return Evaluation(cand, self.hw.estimate(cand), float(t.values[0]), t.number, cached,
                          float(t.user_attrs.get("train_seconds", 0.0)))

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, cand: Candidate, wait: bool = True, trial: Any = None) -> Evaluation | None:
        """Accuracy and cost of `cand`. Infeasible: accuracy None, nothing trained. Returns None
        when the trial budget is spent, or (wait=False) when another worker is training it.
        `trial`: a trial a sampler already created for this design (optuna strategy)."""
        from optuna.trial import TrialState

        est = self.hw.estimate(cand)
        if not est.feasible:
            if trial is not None:
                self._tell(trial, None, TrialState.PRUNED, {"feasible": False, "reason": est.reason})
            return Evaluation(cand, est, None, None, False)
        h = cand.hash
        while True:
            hit = self.lookup(h)
            if hit and hit[0] == "complete":
                self.cache_hits += 1
                if trial is not None:
                    self._tell(trial, None, TrialState.PRUNED, {"duplicate_of": hit[1].number})
                return self._from_trial(cand, hit[1], cached=True)
            if hit and hit[0] == "running" and (trial is None or hit[1].number < trial.number):
                if trial is not None:
                    self._tell(trial, None, TrialState.PRUNED, {"duplicate_of": hit[1].number})
                    trial = None
                if not wait:
                    return None
                time.sleep(self.poll_s)
                continue
            break
        if trial is None:
            if self.budget_left() <= 0:
                return None
            trial = self._create(cand)
            # a concurrent worker may have created the same design between lookup and create
            hit = self.lookup(h)
            if hit and hit[1].number != trial.number and (hit[0] == "complete" or hit[1].number < trial.number):
                self._tell(trial, None, TrialState.PRUNED, {"duplicate_of": hit[1].number})
                return self.evaluate(cand, wait=wait)
        else:
            trial.set_user_attr("plan_hash", h)
            trial.set_user_attr("candidate", cand.to_json())
            trial.set_user_attr("strategy", self.strategy)
        return self._train(cand, est, trial)

    def _create(self, cand: Candidate):
        import optuna
        from optuna.trial import TrialState

        template = optuna.trial.FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=None,
            datetime_complete=None, params=self.space.params(cand), distributions=self.space.distributions(),
            user_attrs={"plan_hash": cand.hash, "candidate": cand.to_json(), "strategy": self.strategy},
            system_attrs={}, intermediate_values={}, trial_id=-1)
        import datetime

        template.datetime_start = datetime.datetime.now()
        storage = self.study._storage
        tid = storage.create_new_trial(self.study._study_id, template_trial=template)
        record_heartbeat(self.study, tid)
        return optuna.Trial(self.study, tid)

    def _train(self, cand: Candidate, est: HwEstimate, trial: Any) -> Evaluation:
        from optuna.storages._heartbeat import get_heartbeat_thread
        from optuna.trial import TrialState

        hb = get_heartbeat_thread(trial._trial_id, self.study._storage)
        hb.start()
        t0 = time.time()
        try:
            res = self.train_fn(cand, self.trials_dir / cand.hash)
        except BaseException:
            hb.join()
            try:
                self._tell(trial, None, TrialState.FAIL, {})
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        hb.join()
        secs = time.time() - t0
        acc = float(res["val_acc"])
        attrs = {"feasible": True, "train_seconds": secs, "LUT": est.totals["LUT"], "BRAM_18K": est.totals["BRAM_18K"],
                 "DSP": est.totals["DSP"], "FF": est.totals["FF"], "fps": est.fps, "max_cycles": est.max_cycles}
        self._tell(trial, [acc, float(est.totals["LUT"])], TrialState.COMPLETE, attrs)
        self.trained_here += 1
        log.info("trial %d [%s] %s: val acc %.4f, %s LUT, %.0f FPS (%.1f s)", trial.number, self.strategy,
                 cand.describe(), acc, f"{est.totals['LUT']:,}", est.fps, secs)
        return Evaluation(cand, est, acc, trial.number, False, secs)

    def _tell(self, trial: Any, values: list[float] | None, state: Any, attrs: dict) -> None:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.tell(trial, values=values, state=state, skip_if_finished=True)


def record_heartbeat(study: Any, trial_id: int) -> None:
    """First heartbeat right at creation: a trial whose process dies before training starts
    must still go stale (optuna only fails trials that have a heartbeat record)."""
    storage = study._storage
    if hasattr(storage, "record_heartbeat") and storage.get_heartbeat_interval():
        storage.record_heartbeat(trial_id)


def completed_records(study: Any) -> list[dict[str, Any]]:
    """Plain records of the trained designs of a study (for Pareto fronts and reports)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "plan_hash" not in t.user_attrs:
            continue
        u = t.user_attrs
        out.append({"trial": t.number, "plan_hash": u["plan_hash"], "candidate": u.get("candidate"),
                    "strategy": u.get("strategy"), "accuracy": float(t.values[0]), "LUT": int(t.values[1]),
                    "BRAM_18K": u.get("BRAM_18K"), "DSP": u.get("DSP"), "FF": u.get("FF"), "fps": u.get("fps"),
                    "train_seconds": u.get("train_seconds"),
                    "finished": t.datetime_complete.isoformat() if t.datetime_complete else None})
    return out
