"""Shared studies under stress, on a real PostgreSQL server and on SQLite: fresh-storage races,
atomic design claims, 4 workers, a worker killed mid-trial, a server restart, a killed parent.

The PostgreSQL server is started by the `pg` fixture (Debian's `postgresql` package: initdb
into a temporary folder, a server on a free loopback port, stopped at the end). Without the
binaries, the driver, or (as root) a `postgres` user the PostgreSQL cases skip and say why.
Training is real (tfc on digits, two batches per trial).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from codesign.config import RunConfig, _build
from codesign.search.pgserver import LocalPostgres, unavailable_reason

ROOT = Path(__file__).resolve().parent.parent
TARGET_FPS = 1_000_000
PG_REASON = unavailable_reason()


def _cfg_dict(out: Path, **search) -> dict:
    s = {"strategy": "random", "trials": 4, "budget": {"LUT": 6000}, "heartbeat_s": 1, "grace_s": 3,
         "reconnect_s": 30, "weight_bits": [2, 3, 4], "act_bits": [2, 3, 4], "prune_levels": [0.0, 0.25, 0.5],
         "rank": {"epochs": 1, "max_batches": 2, "val_samples": 64}, "relevance": {"samples": 32},
         "finalists": 1, "baselines": ["w2a2"]}
    s.update(search)
    return {"name": "t", "model": "tfc", "dataset": "digits", "out": str(out), "target_fps": TARGET_FPS,
            "train": {"epochs": 1, "max_batches": 5}, "qat": {"epochs": 1, "max_batches": 2}, "search": s}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A prepared run folder (float model + relevance), shared: workers only run trials."""
    from codesign.search.loop import prepare

    out = tmp_path_factory.mktemp("shared") / "run"
    prepare(_build(RunConfig, _cfg_dict(out), "test"), out)
    return out


@pytest.fixture(scope="module")
def pg():
    if PG_REASON:
        pytest.skip(f"PostgreSQL tests skipped: {PG_REASON}")
    server = LocalPostgres.start()
    yield server
    server.cleanup()


_DB_SEQ = [0]


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    """A fresh, empty study database URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    server = request.getfixturevalue("pg")
    _DB_SEQ[0] += 1
    return server.create_database(f"t{_DB_SEQ[0]}")


def _write_cfg(path: Path, out: Path, **search) -> Path:
    path.write_text(yaml.safe_dump(_cfg_dict(out, **search)))
    return path


def _search(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codesign.cli", "search", str(cfg), "--trials-only",
                             "--no-progress", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _open(url: str, name: str):
    from codesign.search.study import Claims, make_storage, open_study

    st = make_storage(url, 1, 3, reconnect_s=30)
    study = open_study(st, name)
    return study, Claims(st, study._study_id)


def _trials(url: str, name: str):
    """(COMPLETE design trials, all trials) of a study; ([], []) before it exists."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from codesign.search.study import make_storage

    try:
        st = optuna.load_study(study_name=name, storage=make_storage(url, 1, 3, reconnect_s=30))
    except KeyError:
        return [], []
    all_t = st.get_trials()
    return [t for t in all_t if t.state == TrialState.COMPLETE and "plan_hash" in t.user_attrs], all_t


def _study_name(cfg_path: Path, url: str) -> str:
    from codesign.config import load_config
    from codesign.search.loop import study_name

    return study_name(load_config(cfg_path), "random")


def _wait(pred, timeout: float, what: str, procs=()):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(f"{what}: a worker exited {p.returncode}:\n{p.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _fresh(t, max_age_s: float = 2.0) -> bool:
    """A trial started less than `max_age_s` ago: far from done (a training takes seconds),
    so a kill right now lands mid-trial."""
    import datetime

    return t.datetime_start is not None and (datetime.datetime.now() - t.datetime_start).total_seconds() < max_age_s


_POLL: dict = {}


def _owned_running(url: str, name: str) -> list:
    """RUNNING trials that own their design's claim (a worker is training them); a trial that
    lost a claim race is RUNNING for a moment too, but is never trained. One connection per
    study, one claims query per call (polled often)."""
    if (url, name) not in _POLL:
        if not _trials(url, name)[1]:
            return []
        _POLL[(url, name)] = _open(url, name)
    study, claims = _POLL[(url, name)]
    st = study._storage
    return [st.get_trial(c.trial_id) for c in claims.rows() if c.state.name == "RUNNING"]


def _killed_trial(url: str, name: str, worker: str):
    """The trial the killed `worker` was training (still RUNNING right after the kill)."""
    mine = [t for t in _owned_running(url, name) if t.user_attrs.get("worker") == worker]
    assert len(mine) == 1, f"the killed worker had {len(mine)} running trials"
    return mine[0]


# ----------------------------------------------------------------------------- storage level

_OPEN_SCRIPT = """
import sys, time
from pathlib import Path
from codesign.search.study import make_storage, open_study, Claims
Path(sys.argv[3] + ".ready" + sys.argv[4]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
st = make_storage(sys.argv[1], 1, 3)
study = open_study(st, sys.argv[2])
Claims(st, study._study_id).rows()
print("ok", study._study_id)
"""


def test_fresh_storage_opened_by_many_processes_at_once(storage, tmp_path):
    """Issue 11.7: the second process on a fresh --storage died with an alembic UNIQUE error."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_SCRIPT, storage, "race", str(go), str(i)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    _wait(lambda: len(list(tmp_path.glob("go.ready*"))) == len(procs), 120, "the processes to import", procs)
    go.touch()  # all at once
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
    ids = {o.split()[-1] for o in outs}
    assert len(ids) == 1  # one study, not four


def test_design_claim_is_atomic(storage, run_dir):
    """Six evaluators (each its own connection, like six processes) ask for the same design at
    the same instant: it is trained once, and all six get that one result."""
    from codesign.search.loop import build_hw, build_space
    from codesign.search.study import Evaluator
    from codesign.train import load_checkpoint

    cfg = _build(RunConfig, _cfg_dict(run_dir), "test")
    space = build_space(cfg, load_checkpoint(run_dir / "float.pt")["spec"])
    hw = build_hw(cfg, space)
    import random

    from codesign.search.strategies import random_candidate

    rng = random.Random(0)
    cand = next(c for c in (random_candidate(space, rng) for _ in range(500)) if hw.estimate(c).feasible)
    calls: list[int] = []
    lock = threading.Lock()

    def train(c, folder):  # stands in for the QAT only: the claim logic is under test
        with lock:
            calls.append(threading.get_ident())
        time.sleep(1.0)
        return {"val_acc": 0.625}

    evs = []
    for _ in range(6):
        study, _ = _open(storage, "atomic")
        evs.append(Evaluator(study, space, hw, train, run_dir / "search" / "trials", "uniform", 10, poll_s=0.2))
    barrier = threading.Barrier(len(evs))
    results: list = [None] * len(evs)

    def go(i):
        barrier.wait()
        results[i] = evs[i].evaluate(cand, wait=True)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(evs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(calls) == 1
    assert all(r is not None and r.accuracy == 0.625 for r in results)
    assert sum(not r.cached for r in results) == 1
    complete, _ = _trials(storage, "atomic")
    assert [t.user_attrs["plan_hash"] for t in complete] == [cand.hash]


# ----------------------------------------------------------------------------- workers

def test_four_workers_one_killed_no_duplicate_none_lost_and_status(pg, run_dir, tmp_path, capsys):
    """4 workers on one PostgreSQL study, all drawing the *same* seeded random sequence (only
    the claims keep them apart); one is SIGKILLed mid-trial: the others retry its design, the
    budget is met with distinct designs, and --status reads it all back per worker."""
    import json

    from codesign.cli import main

    url = pg.create_database("four")
    cfg = _write_cfg(tmp_path / "c.yaml", run_dir, trials=6, study_name="four",
                     rank={"epochs": 1, "max_batches": 8, "val_samples": 256})
    p = _search(cfg, "--storage", url, "--workers", "4")
    kids = _wait(lambda: (lambda k: k if len(k) == 4 else None)([c for c in _children(p.pid)
                                                                  if "spawn_main" in _cmdline(c)]),
                 180, "four worker processes", [p])

    def running_in_a_worker():
        return [t for t in _owned_running(url, "four") if _fresh(t)
                and int(t.user_attrs["worker"].rsplit(":", 1)[1]) in kids]

    worker = _wait(running_in_a_worker, 180, "a worker to start training", [p])[0].user_attrs["worker"]
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    victim = _killed_trial(url, "four", worker)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert "1 of 4 search workers failed" in out  # said, not hidden
    complete, all_t = _trials(url, "four")
    hashes = [t.user_attrs["plan_hash"] for t in complete]
    assert len(hashes) == 6 and len(set(hashes)) == 6  # budget met exactly, no design twice
    assert {t._trial_id: t for t in all_t}[victim._trial_id].state.name == "FAIL"
    assert victim.user_attrs["plan_hash"] in hashes  # the killed worker's design was retried
    assert not [t for t in all_t if t.state.name == "RUNNING"]  # nothing left behind
    assert len({t.user_attrs["worker"] for t in complete}) >= 2  # the work was split
    _, claims = _open(url, "four")
    rows = {c.plan_hash: c for c in claims.rows()}
    assert set(rows) == set(hashes) and rows[victim.user_attrs["plan_hash"]].attempts == 2
    # status from the database, per worker (in-process CLI)
    capsys.readouterr()
    assert main(["search", "--status", str(run_dir), "--storage", url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["totals"]["complete"] == 6 and st["totals"]["running"] == 0 and st["totals"]["failed"] >= 1
    assert sum(w["complete"] for w in st["workers"]) == 6 and st["designs_retried"] == 1
    assert st["best"]["accuracy"] == max(float(t.values[0]) for t in complete)
    assert main(["search", "--status", str(run_dir), "--storage", url]) == 0
    text = capsys.readouterr().out
    assert "designs trained: 6" in text and "per worker" in text


def test_killed_worker_design_is_retried_sqlite(run_dir, tmp_path):
    """The same on SQLite with two separate worker processes (as on two terminals): SIGKILL
    one mid-trial; its trial goes stale -> FAIL after grace_s and the other trains the design."""
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    name = "killed"
    cfg = _write_cfg(tmp_path / "k.yaml", run_dir, trials=3, study_name=name,
                     rank={"epochs": 1, "max_batches": 6, "val_samples": 256})
    # B starts only once A is mid-trial: launched together, B could take all three designs
    # while A is still importing torch on a loaded machine (seen in CI), and nothing is killed.
    a = _search(cfg, "--storage", storage)

    def a_running():
        return [t for t in _owned_running(storage, name) if _fresh(t)
                and t.user_attrs.get("worker", "").endswith(f":{a.pid}")]

    worker = _wait(a_running, 180, "worker A to start a trial", [a])[0].user_attrs["worker"]
    b = _search(cfg, "--storage", storage)
    a.send_signal(signal.SIGKILL)
    a.wait()
    victim = _killed_trial(storage, name, worker)
    out, _ = b.communicate(timeout=240)
    assert b.returncode == 0, out
    complete, all_t = _trials(storage, name)
    assert {t._trial_id: t for t in all_t}[victim._trial_id].state.name == "FAIL"
    hashes = [t.user_attrs["plan_hash"] for t in complete]
    assert len(hashes) == 3 and len(set(hashes)) == 3
    retry = [t for t in complete if t.user_attrs["plan_hash"] == victim.user_attrs["plan_hash"]]
    assert retry and retry[0].user_attrs["worker"].endswith(f":{b.pid}")


def test_server_restart_workers_reconnect_or_stop_clearly_then_resume(pg, run_dir, tmp_path):
    url = pg.create_database("restart")
    name = "restart"
    cfg = _write_cfg(tmp_path / "r.yaml", run_dir, trials=6, study_name=name, reconnect_s=10,
                     rank={"epochs": 1, "max_batches": 4, "val_samples": 128})
    w = _search(cfg, "--storage", url)
    # 1. a restart shorter than reconnect_s: the worker carries on. The server goes down while a
    # trial trains and stays down for 3 heartbeat intervals, so the worker certainly calls the
    # database during the outage (a 1 s outage at any moment could fall between two calls and go
    # unnoticed, as it once did in CI).
    _wait(lambda: len(_trials(url, name)[0]) >= 1, 180, "the first trained design", [w])
    _wait(lambda: [t for t in _owned_running(url, name) if _fresh(t)], 180, "a design in training", [w])
    pg.restart(down_s=3.0)
    _wait(lambda: len(_trials(url, name)[0]) >= 3, 180, "designs after the restart", [w])
    # 2. a server down for longer than reconnect_s: the worker stops with one clear line
    pg.stop()
    try:
        out, _ = w.communicate(timeout=120)
    finally:
        pg.resume()
    assert "retrying" in out  # it noticed the restart, and reconnected
    assert w.returncode == 2, out
    assert "lost the study database" in out and "re-run" in out and "Traceback" not in out
    before = {t.user_attrs["plan_hash"] for t in _trials(url, name)[0]}
    assert 3 <= len(before) < 6
    # 3. the re-run resumes: what was completed is kept, the budget is filled, nothing twice
    w = _search(cfg, "--storage", url)
    out, _ = w.communicate(timeout=240)
    assert w.returncode == 0, out
    hashes = [t.user_attrs["plan_hash"] for t in _trials(url, name)[0]]
    assert len(hashes) == 6 and len(set(hashes)) == 6 and before <= set(hashes)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_killing_the_parent_stops_its_workers(run_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'parent.db'}"
    cfg = _write_cfg(tmp_path / "p.yaml", run_dir, trials=20, study_name="parent")
    p = _search(cfg, "--storage", url, "--workers", "2")
    kids = _wait(lambda: (lambda k: k if len(k) >= 2 else None)(
        [c for c in _children(p.pid) if "spawn_main" in _cmdline(c)]),
        120, "two worker processes", [p])
    _wait(lambda: any(t.state.name == "RUNNING" for t in _trials(url, "parent")[1]), 120, "a running trial", [p])
    p.send_signal(signal.SIGKILL)
    p.wait()
    _wait(lambda: not any(_alive(k) for k in kids), 30, "the orphaned workers to stop")
    # they stopped cleanly: their running trials were marked FAIL at once (no grace period)
    _, all_t = _trials(url, "parent")
    assert not [t for t in all_t if t.state.name == "RUNNING"]


def test_cuda_device_without_gpu_is_one_clear_line(run_dir, tmp_path, caplog):
    import torch

    from codesign.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    cfg = _write_cfg(tmp_path / "d.yaml", run_dir)
    assert main(["search", str(cfg), "--trials-only", "--device", "cuda"]) == 2
    assert "no usable CUDA GPU" in caplog.text and "--device cpu" in caplog.text


def test_status_and_search_without_inputs_are_one_clear_line(tmp_path, caplog):
    from codesign.cli import main

    assert main(["search", "--status", str(tmp_path / "nowhere")]) == 2
    assert "no search has started" in caplog.text
    assert main(["search"]) == 2
    assert "give a run config" in caplog.text
    assert main(["search", "--status", str(tmp_path), "--storage", "postgresql://u:pw@127.0.0.1:1/x",
                 "--study-name", "s"]) == 2
    assert "cannot reach the study database" in caplog.text and "pw@" not in caplog.text  # password not shown


def test_device_names_are_checked():
    import torch

    from codesign.errors import CodesignError
    from codesign.train import TrainConfig

    assert TrainConfig(device="CPU").device == "cpu"
    with pytest.raises(CodesignError, match="not supported|unknown device"):
        TrainConfig(device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(CodesignError, match="no usable CUDA GPU"):
            TrainConfig(device="cuda:0")
