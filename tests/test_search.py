"""The co-design loop: convergence under a budget, impossible budgets, resume after a kill,
two workers on one SQLite study. Real training (digits, a few batches), real optuna storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from codesign.config import RunConfig, _build
from codesign.search.feedback import InfeasibleBudgetError, RelevanceFeedback, check_achievable
from codesign.search.pareto import pareto_front
from codesign.designspace.space import Candidate, SearchSpace

ROOT = Path(__file__).resolve().parent.parent
TARGET_FPS = 1_000_000


def _cfg_dict(out: Path, **search) -> dict:
    s = {"strategy": "random", "trials": 3, "budget": {"LUT": 6000}, "heartbeat_s": 1, "grace_s": 3,
         "weight_bits": [2, 3, 4], "act_bits": [2, 3, 4], "prune_levels": [0.0, 0.25, 0.5],
         "rank": {"epochs": 1, "max_batches": 2, "val_samples": 64}, "relevance": {"samples": 32},
         "finalists": 1, "baselines": ["w2a2"]}
    s.update(search)
    return {"name": "t", "model": "tfc", "dataset": "digits", "out": str(out), "target_fps": TARGET_FPS,
            "train": {"epochs": 1, "max_batches": 5}, "qat": {"epochs": 1, "max_batches": 2}, "search": s}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A prepared run folder (float model + relevance) shared by the tests."""
    from codesign.search.loop import prepare

    out = tmp_path_factory.mktemp("search") / "run"
    cfg = _build(RunConfig, _cfg_dict(out), "test")
    return prepare(cfg, out)


def _write_cfg(path: Path, out: Path, **search) -> Path:
    path.write_text(yaml.safe_dump(_cfg_dict(out, **search)))
    return path


def _study_trials(out: Path, name: str):
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = out / "search" / "study.db"
    if not db.exists():
        return []
    from codesign.search.study import _init_lock

    url = f"sqlite:///{db}"
    try:  # under the project's schema lock: the worker may be creating the tables right now
        with _init_lock(url):
            st = optuna.load_study(study_name=name, storage=url)
    except KeyError:  # the worker has created the file but not the study yet
        return []
    return [t for t in st.get_trials(states=(TrialState.COMPLETE,)) if "plan_hash" in t.user_attrs]


def _search(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codesign.cli", "search", str(cfg), "--trials-only",
                             "--no-progress", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_candidate_hash_and_params_roundtrip(ctx):
    sp = ctx.space
    c = Candidate.make({"fc0": 3, "fc1": 2, "fc2": 4, "fc3": 4}, {"fc0": 2, "fc1": 3, "fc2": 2},
                       {"fc0": 0.25, "fc1": 0.0})
    assert sp.from_params(sp.params(c)) == c and sp.from_params(sp.params(c)).hash == c.hash
    assert Candidate.from_json(c.to_json()).hash == c.hash
    assert c.hash != c.replace(w={"fc0": 4}).hash
    assert sp.widths(c)["fc0"] == 48 and sp.pruned_spec(c)["layers"][1]["out_features"] == 48


def test_cost_model_rejects_in_milliseconds(ctx):
    est = ctx.hw.estimate(ctx.space.uniform(4, 4))
    assert not est.feasible and "LUT" in est.reason  # w4a4 needs more than 6000 LUT at 1M FPS
    assert est.ms < 2000  # milliseconds (generous for a loaded CI machine)


def test_relevance_walk_converges_within_budget(ctx):
    fb = RelevanceFeedback(ctx.space, ctx.hw, ctx.rel.layer_scores(), {n: ctx.rel.units(n) for n in ctx.space.prunable})
    c, path = fb.to_boundary(ctx.space.largest())
    est = ctx.hw.estimate(c)
    assert est.feasible and est.totals["LUT"] <= 6000
    assert fb.grow(c) is None  # converged: no growing move fits any more
    assert len(path) > 1


def test_loop_trains_only_fitting_designs_and_stops(ctx, tmp_path):
    from codesign.search.loop import run_trials

    ctx.cfg.search.trials = 2
    info = run_trials(ctx, strategy="relevance", storage_url=f"sqlite:///{tmp_path / 's.db'}")
    recs = info["records"]
    assert 1 <= len(recs) <= 2
    assert all(r["LUT"] <= 6000 for r in recs)
    assert len({r["plan_hash"] for r in recs}) == len(recs)
    assert info["stop_reason"]
    assert pareto_front(recs)


def test_impossible_budget_reports_smallest_design(ctx):
    from codesign.designspace.estimate import HwEstimator

    hw = HwEstimator(ctx.space, "Pynq-Z2", TARGET_FPS, 10.0, limits={"LUT": 500})
    with pytest.raises(InfeasibleBudgetError) as ei:
        check_achievable(ctx.space, hw)
    msg = str(ei.value)
    assert "impossible budget" in msg and "Smallest achievable design" in msg
    assert ei.value.smallest["estimate"]["totals"]["LUT"] > 500


def test_interrupt_and_resume_loses_nothing(ctx, tmp_path):
    cfg = _write_cfg(tmp_path / "c.yaml", ctx.out, trials=3, study_name="resume")
    p = _search(cfg)
    deadline = time.time() + 120
    while time.time() < deadline and len(_study_trials(ctx.out, "resume")) < 1:
        time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = {t.user_attrs["plan_hash"] for t in _study_trials(ctx.out, "resume")}
    assert len(before) >= 1
    p = _search(cfg)
    out, _ = p.communicate(timeout=180)
    assert p.returncode == 0, out
    after = [t.user_attrs["plan_hash"] for t in _study_trials(ctx.out, "resume")]
    assert len(after) == 3 and len(set(after)) == 3  # budget met, no design trained twice
    assert before <= set(after)  # nothing completed before the kill was lost


def test_two_workers_share_one_study_without_duplicates(ctx, tmp_path):
    # both workers draw the *same* seeded random sequence: only the study keeps them apart
    cfg = _write_cfg(tmp_path / "w.yaml", ctx.out, trials=3, study_name="workers")
    p = _search(cfg, "--workers", "2")
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    hashes = [t.user_attrs["plan_hash"] for t in _study_trials(ctx.out, "workers")]
    assert len(hashes) >= 3 and len(set(hashes)) == len(hashes)
