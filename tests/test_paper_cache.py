"""The paper study's cell cache: one JSON per cell, resume after a kill, shards partition the
cells, and paired differences carry a Student-t interval (checked against the closed form)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pe():
    spec = importlib.util.spec_from_file_location("paper_experiments", ROOT / "scripts" / "paper_experiments.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cells_resume_after_a_kill_and_shards_partition(pe, tmp_path):
    st = pe.settings(quick=False)
    cells = pe.enumerate_cells(st, ["sfc", "lenet"])
    keys = [pe.cell_key(c) for c in cells]
    assert len(keys) == len(set(keys))                                   # one file per cell
    assert {c["ft"] for c in cells} == {0, 1, 5} and {c["seed"] for c in cells} == {0, 1, 2}
    assert not any(c["study"] == "bits" and c["ft"] == 0 for c in cells)
    shards = [pe.select_cells(cells, f"{i}/3") for i in range(3)]
    assert sorted(pe.cell_key(c) for s in shards for c in s) == sorted(keys)
    assert pe.settings(quick=False, full_data=True)["limit_train"] is None

    few = cells[:7]
    calls: list[str] = []

    def runner(c):
        calls.append(pe.cell_key(c))
        if len(calls) == 4:
            raise KeyboardInterrupt                                       # killed mid-study
        return {"acc": 0.5 + 0.01 * len(calls)}

    with pytest.raises(KeyboardInterrupt):
        pe.run_cells(few, runner, tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 3                       # finished cells were kept
    calls.clear()
    rows, ran = pe.run_cells(few, lambda c: (calls.append(pe.cell_key(c)), {"acc": 0.9})[1], tmp_path)
    assert ran == 4 and calls == [pe.cell_key(c) for c in few[3:]]       # only the missing ones re-run
    assert [r["acc"] for r in rows[:3]] == [0.51, 0.52, 0.53]
    assert json.loads((tmp_path / f"{pe.cell_key(few[0])}.json").read_text())["study"] == few[0]["study"]
    rows2, ran2 = pe.run_cells(few, lambda c: pytest.fail("cached cell re-run"), tmp_path)
    assert ran2 == 0 and rows2 == rows
    with pytest.raises(SystemExit, match="shard"):
        pe.select_cells(cells, "3/3")
    assert pe.select_cells(cells, None, keys[:2]) == cells[:2]


def test_paired_differences_with_t_interval(pe):
    m, lo, hi = pe.t_interval([0.01, 0.02, 0.03])
    half = 4.302652729911275 * 0.01 / 3 ** 0.5                          # t_{0.975, 2} * s / sqrt(n)
    assert m == pytest.approx(0.02) and lo == pytest.approx(0.02 - half) and hi == pytest.approx(0.02 + half)
    rows = []
    for seed, (d, mg) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.72)]):
        base = {"model": "sfc", "study": "prune_structured", "x": 0.5, "ft": 1, "seed": seed}
        rows += [{**base, "method": "deeplift", "acc": d}, {**base, "method": "magnitude", "acc": mg}]
    (p,) = pe.paired(rows)
    assert p["other"] == "magnitude" and p["n"] == 3 and p["verdict"] == "wins"
    assert p["diff_mean"] == pytest.approx(0.1)
    md = pe.table(pe.aggregate(rows), [p], pe.settings(True), "cmd", 1.0, 5)
    assert "95% CI" in md and "5 cells not yet run" in md


def test_resnet8_cells_prune_by_residual_groups_and_cluster_inside_blocks(pe, tmp_path, monkeypatch):
    """The study takes a residual net (ResNet-8, the CNN of the topology issue): structured
    pruning goes through DepGraph groups and clustering reaches the convs inside the blocks."""
    import torch

    st = pe.settings(quick=True)
    st.update(limit_train=300, limit_test=100, float_epochs=1, samples=16)
    ctx = pe.ModelContext("resnet8", 0, st, tmp_path, False)
    full = sum(int(v.numel()) for k, v in ctx.state.items() if k.endswith(".weight") and v.dim() > 1)
    base = {"model": "resnet8", "seed": 0}
    pruned = pe.run_cell({**base, "study": "prune_structured", "method": "deeplift", "x": 0.5, "ft": 1}, ctx)
    assert 0.0 <= pruned["acc"] <= 1.0 and pruned["weights"] < 0.5 * full    # filters really removed
    seen: dict[str, torch.Tensor] = {}
    real_eval = pe._eval_state

    def spy(spec, state, splits):
        seen.update(state)
        return real_eval(spec, state, splits)

    monkeypatch.setattr(pe, "_eval_state", spy)
    row = pe.run_cell({**base, "study": "cluster", "method": "relevance-weighted", "x": 2, "ft": 0}, ctx)
    assert row["acc"] == row["acc_no_ft"]
    inner = [k for k in seen if ".body.conv" in k and k.endswith(".weight") and "_bn" not in k]
    assert inner and all(torch.unique(seen[k]).numel() <= 2 for k in inner)  # 2 shared values per conv
