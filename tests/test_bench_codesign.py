"""The headline benchmark's report arithmetic (2-D hypervolume, per-strategy Pareto fronts, the
equal-accuracy LUT fraction) against hand-computed values, and one tiny end-to-end run of
benchmarks/bench_codesign.py (TFC on digits, every strategy, no synthesis) that must resume from
its cell cache without training again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.search.pareto import hypervolume_2d, pareto_front

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_codesign as bench  # noqa: E402


def test_hypervolume_2d_hand_computed():
    # three front points (LUT, acc) up to ref (4, 0): strips [1,2]x.5 + [2,3]x.8 + [3,4]x.9 = 2.2
    pts = [(1, 0.5), (2, 0.8), (3, 0.9)]
    assert hypervolume_2d(pts, (4, 0)) == pytest.approx(2.2)
    # a dominated point, one beyond the reference LUT and one below the reference accuracy add nothing
    assert hypervolume_2d(pts + [(2.5, 0.6), (5, 1.0), (0.5, -0.1)], (4, 0)) == pytest.approx(2.2)
    # a single point is its box; order does not matter; an empty front has no volume
    assert hypervolume_2d([(3, 0.25)], (7, 0.05)) == pytest.approx(4 * 0.2)
    assert hypervolume_2d(pts[::-1], (4, 0)) == pytest.approx(2.2)
    assert hypervolume_2d([], (4, 0)) == 0.0


def test_hypervolume_2d_matches_a_grid_count():
    """Independent check: count the unit cells of an integer grid that some point dominates."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = [(int(c), int(v)) for c, v in zip(rng.integers(0, 30, 6), rng.integers(0, 30, 6))]
        ref = (30, 0)
        grid = np.zeros((30, 30), dtype=bool)  # cell (x, y) = [x, x+1] x [y, y+1]
        for c, v in pts:
            grid[c:, :v] = True
        assert hypervolume_2d(pts, ref) == pytest.approx(float(grid.sum()))


def test_pareto_front_accuracy_vs_lut():
    recs = [{"accuracy": 0.8, "LUT": 100}, {"accuracy": 0.9, "LUT": 200}, {"accuracy": 0.85, "LUT": 250},
            {"accuracy": 0.7, "LUT": 100}]
    front = pareto_front(recs, (("accuracy", 1), ("LUT", -1)))
    assert [(r["accuracy"], r["LUT"]) for r in front] == [(0.8, 100), (0.9, 200)]


def _cell(seed, strategy, designs, chosen=0):
    ds = []
    for i, (acc, lut_est, lut_syn) in enumerate(designs):
        ds.append({"plan_hash": f"{strategy}{seed}{i}", "describe": f"d{i}", "test_acc": acc, "LUT": lut_est,
                   "feasible": lut_est <= 1000, "synth": {"LUT": lut_syn, "FF": 10, "BRAM_18K": 1, "DSP": 0}})
    return {"seed": seed, "strategy": strategy, "designs": ds, "chosen": ds[chosen]["plan_hash"],
            "seconds_to_final": 5.0}


def test_summary_fronts_hypervolume_and_equal_accuracy_by_hand():
    cells = [_cell(0, "relevance", [(0.86, 900, 700), (0.80, 600, 500)]), _cell(1, "relevance", [(0.84, 950, 800)]),
             _cell(0, "uniform w4a4", [(0.87, 1500, 1200)]), _cell(1, "uniform w4a4", [(0.85, 1500, 1000)])]
    names = ["relevance", "uniform w4a4"]
    s = bench.summarize(cells, names, synth=True, lut_limit=1000)
    assert s["lut_source"] == "yosys"
    rel, w4 = s["strategies"]["relevance"], s["strategies"]["uniform w4a4"]
    assert rel["test_acc_mean"] == pytest.approx(0.85) and rel["test_acc_std"] == pytest.approx(0.01)
    assert rel["LUT_yosys_mean"] == pytest.approx(750) and rel["fits_yosys"] and not w4["fits_yosys"]
    # fronts on the Yosys axis: relevance (500, .80), (700, .86); the seed-1 design (800, .84) is dominated
    assert [(p["LUT"], p["accuracy"]) for p in rel["front"]] == [(500, 0.80), (700, 0.86)]
    assert [(p["LUT"], p["accuracy"]) for p in w4["front"]] == [(1000, 0.85), (1200, 0.87)]
    ref = 1.1 * 1200
    assert s["reference_point"] == {"LUT": pytest.approx(ref), "accuracy": 0.0}
    assert rel["hypervolume"] == pytest.approx((700 - 500) * 0.80 + (ref - 700) * 0.86)
    assert w4["hypervolume"] == pytest.approx((1200 - 1000) * 0.85 + (ref - 1200) * 0.87)
    # equal accuracy: w4a4 mean .86 minus the larger std (.01) = .85 -> relevance's (700, .86) qualifies,
    # as a fraction of w4a4's mean Yosys LUT 1100
    e = s["equal_accuracy"]["per_strategy"]["relevance"]
    assert e["threshold"] == pytest.approx(0.85)
    assert e["design"]["LUT"] == 700 and e["LUT_fraction"] == pytest.approx(700 / 1100)
    # without --synth the same cells are judged on the estimates
    s2 = bench.summarize(cells, names, synth=False, lut_limit=1000)
    assert s2["lut_source"] == "estimate"
    assert s2["equal_accuracy"]["per_strategy"]["relevance"]["LUT_fraction"] == pytest.approx(900 / 1500)
    md = bench.markdown({"command": "x", "total_seconds": 1, "cell_seconds": 2, "config": "c", "model": "tfc", "dataset": "d",
                         "board": "Pynq-Z2", "target_fps": 1, "budget": {"LUT": 1000}, "seeds": [0, 1],
                         "cells": "c"}, s, cells)
    assert "LUT Yosys" in md and "0.64" in md and "**Headline**" in md


def test_cells_key_ignores_seed_and_output_names_not_settings(tmp_path):
    cfg = bench.bench_config(ROOT / "examples" / "tfc_fashionmnist_pynqz2.yaml", quick=False)
    quick = bench.bench_config(ROOT / "examples" / "tfc_fashionmnist_pynqz2.yaml", quick=True)
    k = bench.cells_key(cfg)
    cfg.seed, cfg.name, cfg.out = 5, "other", "elsewhere"
    assert bench.cells_key(cfg) == k and bench.cells_key(quick) != k
    assert bench.output_stem(ROOT / "examples" / "tfc_fashionmnist_pynqz2.yaml", True) == "codesign_quick"
    assert bench.output_stem(ROOT / "examples" / "lenet_fashionmnist_pynqz2.yaml", False) \
        == "codesign_lenet_fashionmnist_pynqz2"


def test_tiny_benchmark_end_to_end_and_resume(tmp_path, caplog):
    cfg = {"name": "tiny", "model": "tfc", "dataset": "digits", "out": str(tmp_path / "unused"),
           "target_fps": 300000, "train": {"epochs": 1, "max_batches": 5}, "qat": {"epochs": 1, "max_batches": 2},
           "search": {"trials": 2, "budget": {"LUT": 4000}, "heartbeat_s": 1, "grace_s": 3, "weight_bits": [2, 3],
                      "act_bits": [2, 3], "prune_levels": [0.0, 0.25, 0.5],
                      "rank": {"epochs": 1, "max_batches": 2, "val_samples": 64}, "relevance": {"samples": 32},
                      "finalists": 1, "baselines": ["w4a4", "w2a2"]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = ["--config", str(path), "--seeds", "0", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "out" / "codesign_tiny.json").read_text())
    strat = res["summary"]["strategies"]
    assert list(strat) == ["relevance", "optuna", "ilp", "hessian", "uniform w4a4", "uniform w2a2"]
    for n in ("relevance", "optuna", "ilp", "hessian", "uniform w2a2"):   # all within the 4,000-LUT budget
        assert strat[n]["fits_estimate"] and strat[n]["LUT_est_mean"] <= 4000, n
    assert not strat["uniform w4a4"]["fits_estimate"]
    for n, a in strat.items():   # the reported volume is the front's, against the stated point
        ref = res["summary"]["reference_point"]
        assert a["hypervolume"] == pytest.approx(hypervolume_2d([(p["LUT"], p["accuracy"]) for p in a["front"]],
                                                                (ref["LUT"], 0.0)))
    cells = sorted((tmp_path / "out" / "codesign_cells").glob("tiny-*/s0-*.json"))
    assert [c.name for c in cells] == sorted(f"s0-{bench.slug(n)}.json" for n in strat)
    # the ILP designs are real trained, exported designs in their own folders
    ilp = json.loads(next(c for c in cells if c.name == "s0-ilp.json").read_text())["designs"][0]
    assert (Path(ilp["dir"]) / "model.onnx").is_file() and ilp["test_acc"] is not None
    md = (tmp_path / "out" / "codesign_tiny.md").read_text()
    assert "estimated LUT" in md and "ILP, HAWQ-V2 Hessian table" in md
    # a second run reads every cell from the cache: nothing is rewritten
    stamps = {c: c.stat().st_mtime_ns for c in cells}
    assert bench.main(argv) == 0
    assert {c: c.stat().st_mtime_ns for c in cells} == stamps
    again = json.loads((tmp_path / "out" / "codesign_tiny.json").read_text())
    assert again["summary"]["strategies"]["ilp"]["test_acc_mean"] == strat["ilp"]["test_acc_mean"]
    # --synth on a cached cell whose design folder is gone: one clear line, exit 2, no traceback
    rel = json.loads(next(c for c in cells if c.name == "s0-relevance.json").read_text())["designs"][0]
    (Path(rel["dir"]) / "model.onnx").unlink()
    assert bench.main(argv + ["--synth"]) == 2
    assert "model.onnx is missing" in caplog.text and "delete its cell file" in caplog.text


def test_budget_text_and_plan_candidate_round_trip():
    """The helpers the benchmark and scripts/hw_budget_allocation.py share: the --bits text of a
    search's budget parses back to the same limits, and a plan maps to the candidate whose plan
    it is (so the allocations are costed and keyed like the search's designs)."""
    from codesign.compress.ilp import hw_budget_text, parse_hw_budget
    from codesign.designspace.space import Candidate, SearchSpace
    from codesign.models.zoo import make_spec

    text = hw_budget_text("ilp", {"LUT": 1234567, "BRAM_18K": 100}, 1e5, "Pynq-Z2", 2.5)
    o = parse_hw_budget(text)
    assert o["kind"] == "ilp" and o["limits"] == {"LUT": 1234567.0, "BRAM_18K": 100.0}
    assert (o["fps"], o["clock"], o["act"], o["board"]) == (1e5, 2.5, "free", "Pynq-Z2")
    with pytest.raises(Exception, match="choose ilp or greedy"):
        hw_budget_text("uniform", {"LUT": 1}, 1.0)
    spec = make_spec("tfc", (1, 8, 8), 10)
    sp = SearchSpace(spec, weight_bits=(2, 3, 4), act_bits=(2, 3), prune_levels=(0.0,))
    cand = Candidate.make({"fc0": 2, "fc1": 4, "fc2": 3, "fc3": 4}, {"fc0": 3, "fc1": 2, "fc2": 3})
    assert Candidate.from_plan(sp.plan(cand)) == cand
