"""The one sensitivity model and the exact hardware-budget allocation, on real small models:
DeepLIFT on the quantized Brevitas model (summation-to-delta asserted), the measured table is
monotone in the bits, the ILP equals brute force over the full cost model and respects the
budget, and compress and search both decide from the same table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from codesign.compress.bits import Budget, allocate_bits
from codesign.compress.ilp import (_candidate, brute_force, ilp_allocate, item_damage, layer_items,
                                   parse_hw_budget, solve_chain)
from codesign.compress.pipeline import CompressConfig, compress, make_plan
from codesign.compress.sensitivity import (SensitivityTable, find_table, hessian_table, load_table,
                                           relevance_table, table_path_for)
from codesign.data import load_dataset, sample_batch
from codesign.errors import CodesignError
from codesign.models import build_float, quant_from_float, uniform_plan, validate_spec
from codesign.relevance import compute_relevance
from codesign.train import TrainConfig, fit, save_checkpoint

from tiny_specs import TINY_CNN_SPEC

SPEC = TINY_CNN_SPEC
MLP3 = {"name": "mlp3", "input_shape": [1, 8, 8], "num_classes": 10, "layers": [
    {"type": "flatten"},
    {"type": "fc", "name": "fc0", "out_features": 16, "bn": True, "act": True},
    {"type": "fc", "name": "fc1", "out_features": 12, "bn": True, "act": True},
    {"type": "fc", "name": "fc2", "out_features": 10, "bn": False, "act": False}]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    validate_spec(SPEC)
    splits = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = build_float(SPEC)
    res = fit(model, splits, TrainConfig(epochs=3, lr=1e-2, patience=None, progress=False))
    folder = tmp_path_factory.mktemp("sens")
    save_checkpoint(folder / "float.pt", model, SPEC, None,
                    {"dataset": "digits", "split_seed": 0, "test_acc": res.test_acc})
    x, y = sample_batch(splits, 96, "train")
    return model.eval(), splits, folder, x, y


def _monotone(table: SensitivityTable, lo: int = 2) -> None:
    for part in (table.weight, table.act):
        for n, row in part.items():
            bits = sorted(b for b in row if b >= lo)
            vals = [row[b] for b in bits]
            assert all(a >= b for a, b in zip(vals, vals[1:])), (table.method, n, row)
            assert vals[-1] < 0.2 * vals[0], (table.method, n, row)       # 8 bits lose far less than 2


def test_table_of_the_quantized_model_is_measured_and_monotone(trained, tmp_path):
    model, _, _, x, y = trained
    q = quant_from_float(SPEC, uniform_plan(SPEC, 4, 4), model.state_dict()).eval()
    rq = compute_relevance(q, SPEC, x, y, method="deeplift", progress=False)   # zero baseline: delta raises
    assert rq.convergence["relative"] < 1e-4, rq.convergence
    tq = relevance_table(q, SPEC, rq, x)
    assert tq.meta["plan"] == uniform_plan(SPEC, 4, 4)
    # What holds on this real model: from 2 bits up, more bits never lose more relevance (weights
    # and activations). 1 -> 2 bits need not: Brevitas' 2-bit narrow grid is ternary with a
    # max-abs scale, so most small weights round to 0 (measured worse than the sign, binary).
    _monotone(tq)
    rf = compute_relevance(model, SPEC, x, y, method="deeplift", progress=False)
    tf = relevance_table(model, SPEC, rf, x)
    _monotone(tf)
    # the table follows the relevance: scaling one layer's units does not change its own row's
    # shape, but the layer share does; a magnitude table differs from the DeepLIFT one
    tm = relevance_table(model, SPEC, compute_relevance(model, SPEC, x, y, method="magnitude", progress=False), x)
    assert any(abs(tm.w(n, 3) - tf.w(n, 3)) > 1e-4 for n in tf.layers)
    # the Hessian (HAWQ-V2) table in the same format
    th = hessian_table(model, SPEC, x[:48], y[:48], bits=(2, 3, 4, 6, 8), iters=2)
    assert set(th.weight) == set(tf.weight) and set(th.act) == set(tf.act)
    _monotone(th)
    # the file next to relevance.json round-trips
    p = table_path_for(tmp_path / "relevance.json")
    assert p.name == "sensitivity.json"
    tq.save(p)
    back = find_table(tmp_path / "relevance.json")
    assert back is not None and back.w("fc0", 3) == pytest.approx(tq.w("fc0", 3))
    with pytest.raises(CodesignError, match="no 9-bit"):
        back.w("fc0", 9)
    with pytest.raises(CodesignError, match="not a codesign sensitivity"):
        rf.save(tmp_path / "r.json")
        load_table(tmp_path / "r.json")


def test_solve_chain_equals_brute_force_on_random_problems():
    rng = np.random.default_rng(0)
    for trial in range(12):
        K = [int(k) for k in rng.integers(2, 5, size=3)]
        damage = [rng.random(k) for k in K]
        costs = [{"LUT": rng.integers(10, 100, size=(1, K[0])).astype(float)}]
        costs += [{"LUT": rng.integers(10, 100, size=(K[l - 1], K[l])).astype(float)} for l in (1, 2)]
        if trial % 3 == 0:
            costs[1]["LUT"][0, 0] = np.inf
        lim = {"LUT": float(rng.integers(60, 250))}
        ref, ref_d = brute_force(damage, costs, lim)
        got = solve_chain(damage, costs, lim)
        if ref is None:
            assert got is None
            continue
        got_d = sum(damage[l][k] for l, k in enumerate(got))
        assert got_d == pytest.approx(ref_d), (trial, got, ref)


def _mlp_table() -> SensitivityTable:
    rng = np.random.default_rng(1)
    bits = range(1, 9)
    w = {n: dict(zip(bits, np.sort(rng.random(8))[::-1] * s)) for n, s in (("fc0", .5), ("fc1", .3), ("fc2", .2))}
    a = {n: dict(zip(bits, np.sort(rng.random(8))[::-1] * .1)) for n in ("fc0", "fc1")}
    return SensitivityTable("deeplift", "mlp3", w, a)


def test_ilp_is_optimal_against_brute_force_over_the_full_cost_model():
    from codesign.designspace.estimate import HwEstimator
    from codesign.designspace.space import SearchSpace

    table = _mlp_table()
    sp = SearchSpace(MLP3, weight_bits=(2, 4, 8), act_bits=(2, 4), prune_levels=(0.0,))
    hw = HwEstimator(sp, "Pynq-Z2", 200000, 10.0, limits={"LUT": 2000})
    res = ilp_allocate(sp, hw, table, act="free", k_best=2)
    items = layer_items(sp, "free")
    feas = []
    for combo in itertools.product(*[items[n] for n in sp.layers]):
        ch = dict(zip(sp.layers, combo))
        est = hw.estimate(_candidate(sp, sp.layers, ch))
        if est.feasible:
            feas.append((sum(item_damage(table, n, ch[n], None, None, 1.0) for n in sp.layers),
                         _candidate(sp, sp.layers, ch).hash))
    feas.sort()
    assert len(feas) >= 2 and len(feas) < 3 * 6 * 6                  # the budget binds
    assert res.damage[0] == pytest.approx(feas[0][0])                # optimal
    assert res.damage[1] == pytest.approx(feas[1][0])                # and the second best
    for c, est in zip(res.candidates, res.estimates):                # full-model check
        assert est.feasible and est.totals["LUT"] <= 2000
    # the pair decomposition predicts the full cost model here (no tightening was needed)
    h = res.history[0]
    assert h["predicted"]["LUT"] == pytest.approx(h["full"]["LUT"]) and res.rounds == 2
    with pytest.raises(CodesignError, match="no design"):
        ilp_allocate(sp, HwEstimator(sp, "Pynq-Z2", 200000, 10.0, limits={"LUT": 50}), table, act="free")
    with pytest.raises(CodesignError, match="target FPS"):
        parse_hw_budget("ilp:LUT=100")
    assert parse_hw_budget("ilp:LUT=8000,BRAM=100,fps=1e4")["limits"] == {"LUT": 8000.0, "BRAM_18K": 100.0}


def _skewed(hot: str, names, act_names) -> SensitivityTable:
    """A table where `hot` is 100x more sensitive per bit than every other layer."""
    w = {n: {b: (100.0 if n == hot else 1.0) * 4.0 ** -b for b in range(1, 9)} for n in names}
    a = {n: {b: 0.01 * 4.0 ** -b for b in range(1, 9)} for n in act_names}
    return SensitivityTable("deeplift", SPEC["name"], w, a)


def test_compress_and_search_decide_from_the_same_table(trained):
    from codesign.search.feedback import RelevanceFeedback
    from codesign.designspace.estimate import HwEstimator
    from codesign.designspace.space import SearchSpace

    names = ["conv0", "conv1", "fc0", "fc1"]
    t_fc0, t_conv1 = _skewed("fc0", names, names[:3]), _skewed("conv1", names, names[:3])
    # compress: the avg-bit greedy and the hardware-budget ILP both follow the table
    p0 = make_plan(SPEC, CompressConfig(bits="avg:4", sensitivity=t_fc0), None, table=t_fc0)
    p1 = make_plan(SPEC, CompressConfig(bits="avg:4", sensitivity=t_conv1), None, table=t_conv1)
    assert p0["layers"]["fc0"]["weight_bits"] > p1["layers"]["fc0"]["weight_bits"]
    assert p1["layers"]["conv1"]["weight_bits"] > p0["layers"]["conv1"]["weight_bits"]
    # a budget between uniform w2a4 (> 2,000 LUT) and w6a4 (< 3,000 LUT) under the cost model v2
    # (was 3,850 for the v1 formulas: 3,663 and 4,331)
    hw_text = "ilp:LUT=2500,fps=20000,act=4"
    cfg = dict(bits=hw_text, bit_bounds=(2, 6))
    q0 = make_plan(SPEC, CompressConfig(sensitivity=t_fc0, **cfg), None, table=t_fc0)
    q1 = make_plan(SPEC, CompressConfig(sensitivity=t_conv1, **cfg), None, table=t_conv1)
    assert q0["layers"]["fc0"]["weight_bits"] > q1["layers"]["fc0"]["weight_bits"]
    assert q1["layers"]["conv1"]["weight_bits"] > q0["layers"]["conv1"]["weight_bits"]
    # the greedy walk at the same hardware budget stays within it
    g = make_plan(SPEC, CompressConfig(sensitivity=t_fc0, bits="greedy:LUT=2500,fps=20000", act_bits=4,
                                       bit_bounds=(2, 6)), None, table=t_fc0)
    assert g["layers"]["fc0"]["weight_bits"] >= g["layers"]["conv1"]["weight_bits"]
    # search: the feedback's damage and its grow move follow the same table
    sp = SearchSpace(SPEC, weight_bits=(2, 3, 4), act_bits=(4,), prune_levels=(0.0,))
    hw = HwEstimator(sp, "Pynq-Z2", 20000, 10.0)
    scores = {n: 0.25 for n in names}
    start = sp.uniform(2, 4)
    moves = {}
    for key, t in (("fc0", t_fc0), ("conv1", t_conv1)):
        fb = RelevanceFeedback(sp, hw, scores, table=t)
        up_fc0, up_conv1 = start.replace(w={"fc0": 3}), start.replace(w={"conv1": 3})
        assert fb.damage(start, up_fc0) == pytest.approx(t.w("fc0", 3) - t.w("fc0", 2))
        nxt = fb.grow(start)
        moves[key] = [n for n in names if nxt.wd[n] != start.wd[n]]
        assert (fb.damage(start, up_fc0) < fb.damage(start, up_conv1)) == (key == "fc0")
    assert moves["fc0"] == ["fc0"] and moves["conv1"] == ["conv1"]
    # without a table the documented 2^-b fallback of the scores applies
    fb = RelevanceFeedback(sp, hw, scores)
    assert fb.damage(start, start.replace(w={"fc0": 3})) == pytest.approx(0.25 * (2 ** -3 - 2 ** -2), rel=1e-3)
    # a table for another model is refused
    with pytest.raises(CodesignError, match="lacks layers"):
        allocate_bits(SPEC, _skewed("x", ["a"], []), Budget("avg", 4))


def test_iterative_bits_on_the_quantized_model(trained, tmp_path):
    _, splits, folder, x, y = trained
    model = trained[0]
    rel = compute_relevance(model, SPEC, x, y, progress=False)
    qc = TrainConfig(epochs=1, lr=2e-3, patience=None, progress=False, max_batches_per_epoch=3)
    s = compress(folder / "float.pt", rel, tmp_path / "it", CompressConfig(
        bits="avg:4", iterative=2, finetune_epochs=1, relevance_samples=32, qat=qc, export=False), splits=splits)
    sched = s["bit_schedule"]
    assert [b["budget"] for b in sched] == ["avg:6"]
    assert sched[0]["relevance_delta"] < 1e-3                        # DeepLIFT on the quantized model
    assert s["avg_weight_bits"] <= 4 + 1e-9
    t = load_table(tmp_path / "it" / "sensitivity.json")
    assert t.meta["plan"] == sched[0]["plan"]                        # the table of the 6-bit model
    assert s["sensitivity"]["damage"] == pytest.approx(t.damage(
        {n: e["weight_bits"] for n, e in s["plan"]["layers"].items()},
        {n: e["act_bits"] for n, e in s["plan"]["layers"].items() if "act_bits" in e}))


def test_cli_relevance_sensitivity_then_compress_under_a_lut_budget(trained, tmp_path):
    from codesign.cli import main
    from codesign.models.plan import load_plan
    from codesign.designspace.estimate import HwEstimator
    from codesign.designspace.space import Candidate, SearchSpace

    _, _, folder, _, _ = trained
    rel_path = tmp_path / "relevance.json"
    assert main(["relevance", str(folder / "float.pt"), "--samples", "48", "--no-progress", "--sensitivity",
                 "--sensitivity-bits", "2-6", "--out", str(rel_path)]) == 0
    table = load_table(tmp_path / "sensitivity.json")
    assert sorted(table.weight["fc0"]) == [2, 3, 4, 5, 6] and table.method == "deeplift"
    out = tmp_path / "c"
    assert main(["compress", str(folder / "float.pt"), "--relevance", str(rel_path), "--bits",
                 "ilp:LUT=3850,fps=20000", "--act-bits", "4", "--max-bits", "6", "--qat-epochs", "1",
                 "--max-batches", "2", "--no-export", "--no-progress", "--out", str(out)]) == 0
    plan = load_plan(out / "plan.json")
    used = load_table(out / "sensitivity.json")                      # compress read the file beside relevance.json
    assert used.to_json() == table.to_json()
    sp = SearchSpace(SPEC, weight_bits=(2, 3, 4, 5, 6), act_bits=(4,), prune_levels=(0.0,))
    est = HwEstimator(sp, "Pynq-Z2", 20000, 10.0).estimate(Candidate.make(
        {n: e["weight_bits"] for n, e in plan["layers"].items()},
        {n: e["act_bits"] for n, e in plan["layers"].items() if "act_bits" in e}))
    assert est.feasible and est.totals["LUT"] <= 3850
    assert any(e["weight_bits"] > 2 for e in plan["layers"].values())   # the slack was spent
    assert main(["compress", str(folder / "float.pt"), "--relevance", str(rel_path), "--bits", "ilp:LUT=3850",
                 "--out", str(tmp_path / "bad")]) == 2
