"""Study storage (optuna RDB on SQLite or PostgreSQL) and the trial evaluator.

Why optuna's RDB storage: it is a transactional store many processes, and machines with
PostgreSQL, can share, with trial states and heartbeats. The rules that make a search
resumable and distributable without losing or repeating work:

* **One owner per design, decided by the database.** Beside optuna's tables the storage holds
  `codesign_claims`, one row per (study, design hash) with a primary key on both. A worker
  trains a design only after its INSERT of that row succeeded; a second worker's INSERT fails
  on the key and it waits for (or skips) the owner's result. A read-then-write check cannot
  do this: two workers both read "nobody has it" 0.1 ms apart.
* **A COMPLETE trial is the cache**: its values are reused, nothing is trained again.
* **A dead worker's design is retried.** While training, a heartbeat thread keeps the trial
  alive; a killed worker's trial goes stale and optuna's `fail_stale_trials` marks it FAIL
  after `grace_s`. The claim then points at a FAIL trial and the next worker takes it over
  with a compare-and-swap UPDATE (`WHERE trial_id = <the failed one>`), so exactly one worker
  retries it (at most `max_attempts` times in all). Workers that run out of work wait for the
  designs others are training (`Evaluator.drain`), so a design whose worker dies late is
  still retried before the search ends.
* **Opening a fresh storage is serialised** (a file lock for SQLite, an advisory lock for
  PostgreSQL): optuna's schema creation is not safe against a second process doing the same.
* **A lost database connection is retried** for `reconnect_s` (a server restart), then the
  worker stops with one line saying the completed trials are kept and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from codesign.errors import CodesignError
from codesign.designspace.estimate import HwEstimate, HwEstimator
from codesign.designspace.space import Candidate, SearchSpace

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")  # (accuracy, LUT)
CLAIMS_TABLE = "codesign_claims"
_ADVISORY_KEY = 0x0C0DE5161  # pg_advisory_lock key serialising schema creation


class StorageLostError(CodesignError):
    """The study database stayed unreachable for longer than the reconnect window."""


def default_storage_url(folder: str | Path) -> str:
    """SQLite file `study.db` in the search folder."""
    path = Path(folder).resolve() / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def masked_url(url: str) -> str:
    """The URL with its password hidden (for logs, reports and run-folder files)."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by make_storage
        return url


def worker_id() -> str:
    """host:pid of this process, recorded on every trial it trains (status per worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


# ----------------------------------------------------------------------------- reconnecting

def _is_connection_error(exc: BaseException) -> bool:
    """Is this (or its cause) a lost/refused database connection, worth retrying?"""
    import sqlalchemy.exc as sa_exc

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        if isinstance(e, sa_exc.DBAPIError) and (e.connection_invalidated or isinstance(e, sa_exc.OperationalError)):
            return True
        if isinstance(e, (sa_exc.OperationalError, ConnectionError)):
            return True
        if type(e).__module__.startswith("psycopg") and type(e).__name__ in ("OperationalError", "InterfaceError"):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


class Reconnect:
    """Retry policy for database calls: connection errors are retried with backoff for
    `window_s` seconds (a server restart), then turned into one clear StorageLostError."""

    def __init__(self, url: str, window_s: float = 60.0):
        self.url = url
        self.window_s = float(window_s)
        self.retries = 0
        self.last_error = ""

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # the window counts from the first failure, not from the call: a call that ran (or hung on
        # a dying server) for a while still gets its retries
        t0: float | None = None
        delay = 0.2
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - filtered by _is_connection_error
                if not _is_connection_error(exc):
                    raise
                now = time.time()
                t0 = now if t0 is None else t0
                waited = now - t0
                self.last_error = _short(exc)
                if waited >= self.window_s:
                    raise StorageLostError(
                        f"lost the study database {masked_url(self.url)} for {waited:.0f} s ({_short(exc)}); "
                        "completed trials are kept in the study: start the server and re-run the same "
                        "command to resume") from None
                if self.retries == 0 or delay >= 2:
                    log.warning("study database unreachable (%s); retrying for up to %.0f s", _short(exc),
                                self.window_s - waited)
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _short(exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return (str(root).strip().splitlines() or [type(root).__name__])[0][:160]


def _make_reconnecting_class():
    """_CachedStorage (optuna's cache over RDBStorage) whose every public call goes through
    a Reconnect policy; still a BaseStorage + BaseHeartbeat so optuna's heartbeat and
    stale-trial machinery work unchanged."""
    from optuna.storages._cached_storage import _CachedStorage

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self._reconnect.call(fn, self, *args, **kwargs)

        return inner

    def record_heartbeat(self: Any, trial_id: int) -> None:
        """Runs in optuna's heartbeat thread: a lost database is reported by the main
        thread's next call; here it only costs missed beats (no thread traceback)."""
        try:
            self._reconnect.call(_CachedStorage.record_heartbeat, self, trial_id)
        except StorageLostError as exc:
            log.warning("heartbeat of trial id %d stopped: %s", trial_id, _short(exc))

    ns: dict[str, Any] = {"__doc__": _make_reconnecting_class.__doc__}
    for name in dir(_CachedStorage):
        attr = getattr(_CachedStorage, name)
        if callable(attr) and (not name.startswith("_") or name == "_get_stale_trial_ids") \
                and name not in ("get_heartbeat_interval", "get_heartbeat_stale_trial_callback",
                                 "get_failed_trial_callback"):
            ns[name] = wrap(attr)
    ns["record_heartbeat"] = record_heartbeat
    return type("ReconnectingStorage", (_CachedStorage,), ns)


_RECONNECTING: Any = None


def _reconnecting_storage(backend: Any, policy: Reconnect) -> Any:
    global _RECONNECTING
    if _RECONNECTING is None:
        _RECONNECTING = _make_reconnecting_class()
    st = _RECONNECTING(backend)
    st._reconnect = policy
    return st


# ----------------------------------------------------------------------------- opening

@contextlib.contextmanager
def _init_lock(url: str) -> Iterator[None]:
    """Serialise schema creation between processes: a lock file beside an SQLite database,
    a session advisory lock on PostgreSQL; other backends rely on the retry in `connect`."""
    import sqlalchemy

    u = sqlalchemy.engine.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        from filelock import FileLock

        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(u.database + ".lock", timeout=300):
            yield
        return
    if u.get_backend_name() == "postgresql":
        eng = sqlalchemy.create_engine(u, poolclass=sqlalchemy.pool.NullPool)
        try:
            with eng.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                    conn.commit()
        finally:
            eng.dispose()
        return
    yield


def make_storage(url: str, heartbeat_interval: int = 10, grace_period: int = 30, reconnect_s: float = 60.0):
    """An optuna storage for any SQLAlchemy URL with heartbeats (stale-trial recovery), the
    claims table, and reconnection on lost connections. Safe to call from many processes at
    once on a fresh database."""
    import optuna
    import sqlalchemy

    try:
        sqlalchemy.engine.make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise CodesignError(f"--storage {url!r} is not a database URL ({exc}); use sqlite:///runs/x/study.db or "
                            "postgresql://user:pw@host:5432/db") from None
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 300}}
    policy = Reconnect(url, reconnect_s)

    def build():
        with _init_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backend = optuna.storages.RDBStorage(url, heartbeat_interval=max(1, int(heartbeat_interval)),
                                                 grace_period=max(2, int(grace_period)), **kwargs)
            claims_table().metadata.create_all(backend.engine, checkfirst=True)
            return backend

    first = Reconnect(url, min(float(reconnect_s), 10.0))
    try:  # a server that is down at start gets a short wait; a wrong URL fails fast
        backend = first.call(build)
    except StorageLostError:
        raise CodesignError(f"cannot reach the study database {masked_url(url)} ({first.last_error}); start the "
                            "server, or fix --storage / search.storage") from None
    except ImportError as exc:
        raise CodesignError(f"cannot open study storage {masked_url(url)}: {exc}. PostgreSQL needs the pinned "
                            "driver: pip install 'psycopg[binary]' (tools/setup.sh installs it)") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors vary by backend
        raise CodesignError(f"cannot open study storage {masked_url(url)}: {_short(exc)}. Use an SQLAlchemy URL such "
                            "as sqlite:///runs/x/study.db or postgresql://user:pw@host/db") from None
    return _reconnecting_storage(backend, policy)


def open_study(storage: Any, name: str, sampler: Any = None, create: bool = True):
    """The study `name` in `storage` (created unless `create=False`), objectives checked."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if create:
            url = storage._backend.url if hasattr(storage, "_backend") else ""
            with _init_lock(url) if url else contextlib.nullcontext():
                study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS),
                                            sampler=sampler, load_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            except KeyError:
                raise CodesignError(f"no study {name!r} in this storage (has the search started?)") from None
    if [d.name.lower() for d in study.directions] != list(DIRECTIONS):
        raise CodesignError(f"study {name!r} in this storage has other objectives; use another study name")
    return study


# ----------------------------------------------------------------------------- claims

_CLAIMS: Any = None


def claims_table():
    """codesign_claims(study_id, plan_hash) -> trial_id, attempts, worker: the atomic owner record."""
    global _CLAIMS
    if _CLAIMS is None:
        import sqlalchemy as sa

        md = sa.MetaData()
        _CLAIMS = sa.Table(
            CLAIMS_TABLE, md,
            sa.Column("study_id", sa.Integer, primary_key=True),
            sa.Column("plan_hash", sa.String(64), primary_key=True),
            sa.Column("trial_id", sa.Integer, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, default=1),
            sa.Column("worker", sa.String(128)),
            sa.Column("updated", sa.DateTime))
    return _CLAIMS


@dataclass
class Claim:
    plan_hash: str
    trial_id: int
    attempts: int
    worker: str | None
    state: Any  # optuna TrialState of the owning trial


class Claims:
    """The claims table of one study: claim, take over, and read with the owners' states."""

    def __init__(self, storage: Any, study_id: int):
        self.engine = storage._backend.engine
        self.reconnect: Reconnect = storage._reconnect
        self.study_id = int(study_id)
        self.t = claims_table()

    def claim(self, h: str, trial_id: int, worker: str) -> bool:
        """INSERT the owner row; False when another worker owns the design (key conflict)."""
        import sqlalchemy.exc as sa_exc

        def go() -> bool:
            try:
                with self.engine.begin() as c:
                    c.execute(self.t.insert().values(study_id=self.study_id, plan_hash=h, trial_id=int(trial_id),
                                                     attempts=1, worker=worker, updated=_now()))
                return True
            except sa_exc.IntegrityError:
                return False

        return self.reconnect.call(go)

    def take_over(self, h: str, old_trial_id: int, trial_id: int, worker: str) -> bool:
        """Compare-and-swap the owner from a failed trial to ours; exactly one worker wins."""
        t = self.t

        def go() -> bool:
            with self.engine.begin() as c:
                r = c.execute(t.update().where((t.c.study_id == self.study_id) & (t.c.plan_hash == h)
                                               & (t.c.trial_id == int(old_trial_id)))
                              .values(trial_id=int(trial_id), attempts=t.c.attempts + 1, worker=worker,
                                      updated=_now()))
                return r.rowcount == 1

        return self.reconnect.call(go)

    def rows(self, h: str | None = None) -> list[Claim]:
        """Claims (of one design, or all) joined with their trials' states: one query."""
        import sqlalchemy as sa
        from optuna.storages._rdb.models import TrialModel
        from optuna.trial import TrialState

        tr = TrialModel.__table__
        t = self.t
        q = sa.select(t.c.plan_hash, t.c.trial_id, t.c.attempts, t.c.worker, tr.c.state) \
            .select_from(t.join(tr, tr.c.trial_id == t.c.trial_id)).where(t.c.study_id == self.study_id)
        if h is not None:
            q = q.where(t.c.plan_hash == h)

        def go() -> list[Claim]:
            with self.engine.connect() as c:
                out = []
                for r in c.execute(q):
                    st = r.state if isinstance(r.state, TrialState) else TrialState[str(r.state)]
                    out.append(Claim(r.plan_hash, int(r.trial_id), int(r.attempts), r.worker, st))
                return out

        return self.reconnect.call(go)

    def get(self, h: str) -> Claim | None:
        rows = self.rows(h)
        return rows[0] if rows else None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# ----------------------------------------------------------------------------- evaluation

@dataclass
class Evaluation:
    """The outcome of one candidate: accuracy from short QAT plus the cost-model estimate."""

    cand: Candidate
    est: HwEstimate
    accuracy: float | None  # short-QAT validation accuracy (None: infeasible or failed, not trained)
    trial_number: int | None
    cached: bool
    seconds: float = 0.0

    @property
    def lut(self) -> int:
        return int(self.est.totals["LUT"])


TrainFn = Callable[[Candidate, Path], dict]


class Evaluator:
    """Cost check in milliseconds, then short QAT for feasible designs; the study is the
    cache and the claims table decides who trains what."""

    def __init__(self, study: Any, space: SearchSpace, hw: HwEstimator, train_fn: TrainFn, trials_dir: Path,
                 strategy: str, max_trials: int, poll_s: float = 1.0, max_attempts: int = 3):
        self.study = study
        self.space = space
        self.hw = hw
        self.train_fn = train_fn
        self.trials_dir = Path(trials_dir)
        self.strategy = strategy
        self.max_trials = int(max_trials)
        self.poll_s = poll_s
        self.max_attempts = int(max_attempts)
        self.claims = Claims(study._storage, study._study_id)
        self.worker = worker_id()
        self.trained_here = 0
        self.cache_hits = 0
        self.retried = 0
        self._last_stale = 0.0
        self._in_retry = False
        self._backfill()

    def _backfill(self) -> None:
        """Claims for COMPLETE trials of a study written before the claims table existed."""
        from optuna.trial import TrialState

        have = {c.plan_hash for c in self.claims.rows()}
        for t in self.completed():
            h = t.user_attrs["plan_hash"]
            if h not in have and t.state == TrialState.COMPLETE:
                self.claims.claim(h, t._trial_id, str(t.user_attrs.get("worker") or "earlier run"))
                have.add(h)

    # -- study queries ----------------------------------------------------------------
    def _fail_stale(self, force: bool = False) -> None:
        """Mark trials of dead workers FAIL (at most every poll interval: one query)."""
        from optuna.storages import fail_stale_trials

        if not force and time.time() - self._last_stale < self.poll_s:
            return
        self._last_stale = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(self.study)

    def completed(self) -> list[Any]:
        """COMPLETE trials that trained a design (not duplicates), in trial order."""
        from optuna.trial import TrialState

        return [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if "plan_hash" in t.user_attrs]

    def _counts(self) -> tuple[int, int]:
        from optuna.trial import TrialState

        self._fail_stale()
        rows = self.claims.rows()
        return (sum(r.state == TrialState.COMPLETE for r in rows), sum(r.state == TrialState.RUNNING for r in rows))

    def n_completed(self) -> int:
        return self._counts()[0]

    def budget_left(self) -> int:
        """Trainings left: the budget less the designs done and those being trained now."""
        done, running = self._counts()
        return self.max_trials - done - running

    def cached(self, cand: Candidate) -> Evaluation | None:
        from optuna.trial import TrialState

        c = self.claims.get(cand.hash)
        if c is not None and c.state == TrialState.COMPLETE:
            return self._from_trial(cand, self.study._storage.get_trial(c.trial_id), cached=True)
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
            self._fail_stale()
            c = self.claims.get(h)
            if c is not None and c.state == TrialState.COMPLETE:
                self.cache_hits += 1
                if trial is not None:
                    self._tell(trial, None, TrialState.PRUNED, {"duplicate_of_trial_id": c.trial_id})
                return self._from_trial(cand, self.study._storage.get_trial(c.trial_id), cached=True)
            if c is not None and c.state in (TrialState.RUNNING, TrialState.WAITING):
                if trial is not None and trial._trial_id != c.trial_id:
                    self._tell(trial, None, TrialState.PRUNED, {"duplicate_of_trial_id": c.trial_id})
                    trial = None
                if not wait:
                    return None
                time.sleep(self.poll_s)
                continue
            if c is not None and c.attempts >= self.max_attempts:  # FAIL (or PRUNED) too often: give up
                log.warning("design %s failed %d times; not retried", cand.describe(), c.attempts)
                if trial is not None:
                    self._tell(trial, None, TrialState.PRUNED, {"failed_design": True})
                return Evaluation(cand, est, None, None, False)
            if trial is None:
                if c is None:
                    self.retry_failed()  # dead workers' designs before new ones
                if self.budget_left() <= 0:
                    return None
                trial = self._create(cand)
            else:
                for k, v in self._attrs(cand).items():
                    trial.set_user_attr(k, v)
            won = self.claims.claim(h, trial._trial_id, self.worker) if c is None else \
                self.claims.take_over(h, c.trial_id, trial._trial_id, self.worker)
            if won:
                if c is not None:
                    self.retried += 1
                    log.info("retrying design %s (its trial %d %s; attempt %d)", cand.describe(),
                             c.trial_id, c.state.name, c.attempts + 1)
                break
            # another worker claimed it between our read and our write: ours is a duplicate
            self._tell(trial, None, TrialState.PRUNED, {"duplicate": True})
            trial = None
        return self._train(cand, est, trial)

    def retry_failed(self, rows: list[Claim] | None = None) -> int:
        """Train the designs whose trial FAILed (a dead worker, or an error) and that have
        attempts left; the take-over in `evaluate` makes sure one worker does each."""
        from optuna.trial import TrialState

        if self._in_retry:
            return 0
        self._in_retry = True
        n = 0
        try:
            rows = self.claims.rows() if rows is None else rows
            for r in rows:
                if r.state != TrialState.FAIL or r.attempts >= self.max_attempts:
                    continue
                cj = self.study._storage.get_trial(r.trial_id).user_attrs.get("candidate")
                if cj is None:
                    continue
                e = self.evaluate(Candidate.from_json(cj), wait=False)
                n += int(e is not None and e.accuracy is not None and not e.cached)
        finally:
            self._in_retry = False
        return n

    def drain(self) -> int:
        """Before this worker stops: wait for the designs other workers are training and
        retry those whose worker died (their trial went stale -> FAIL). Returns retries."""
        from optuna.trial import TrialState

        n = 0
        while True:
            self._fail_stale(force=True)
            rows = self.claims.rows()
            retried = self.retry_failed(rows) if any(r.state == TrialState.FAIL for r in rows) else 0
            n += retried
            if retried:
                continue
            if not any(r.state == TrialState.RUNNING for r in rows):
                return n
            time.sleep(self.poll_s)

    def _attrs(self, cand: Candidate) -> dict[str, Any]:
        return {"plan_hash": cand.hash, "candidate": cand.to_json(), "strategy": self.strategy, "worker": self.worker}

    def _create(self, cand: Candidate):
        import optuna
        from optuna.trial import TrialState

        template = optuna.trial.FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.datetime.now(),
            datetime_complete=None, params=self.space.params(cand), distributions=self.space.distributions(),
            user_attrs=self._attrs(cand), system_attrs={}, intermediate_values={}, trial_id=-1)
        tid = self.study._storage.create_new_trial(self.study._study_id, template_trial=template)
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
            try:  # FAIL at once: the design is free for another worker (no grace period)
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
        state = self.study._storage.get_trial(trial._trial_id).state
        if state != TrialState.COMPLETE:  # declared dead meanwhile (heartbeat lost): another worker retries
            log.warning("trial %d was marked %s while training (heartbeat lost); its result is dropped",
                        trial.number, state.name)
            return Evaluation(cand, est, None, trial.number, False, secs)
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


def fail_own_running_trials(storage_url: str, name: str, worker: str | None = None) -> int:
    """Mark the RUNNING trials this worker (host:pid) created FAIL: a worker stopped by a signal
    may unwind anywhere (between creating a trial and the try block that would tell it), and a
    trial left RUNNING would wait for the grace period before another worker retries it."""
    from optuna.trial import TrialState

    worker = worker or worker_id()
    try:
        study = open_study(make_storage(storage_url, reconnect_s=5.0), name, create=False)
        n = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker") == worker:
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                n += 1
        return n
    except Exception as exc:  # noqa: BLE001 - best effort on the way out; the heartbeat covers the rest
        log.warning("could not mark this worker's running trials failed: %s", _short(exc))
        return 0


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
                    "train_seconds": u.get("train_seconds"), "worker": u.get("worker"),
                    "finished": t.datetime_complete.isoformat() if t.datetime_complete else None})
    return out
