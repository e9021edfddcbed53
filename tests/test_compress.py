"""Compression on a real trained CNN (sklearn digits): structured pruning equals masking and
exports, bit allocation keeps budgets and bounds, shared weights export as <= K integers,
masks survive QAT, and bad inputs give clear errors."""

from __future__ import annotations

import pytest
import torch

from codesign.compress.bits import Budget, allocate_bits, uniform_allocation, weight_memory_bits
from codesign.compress.pipeline import CompressConfig, compress
from codesign.compress.prune import apply_structured, mask_structured, prune_structured, select_units
from codesign.data import load_dataset, sample_batch
from codesign.errors import CodesignError
from codesign.export import export_qonnx
from codesign.models import build_float, quant_from_float, uniform_plan, validate_spec
from codesign.models.plan import average_weight_bits
from codesign.relevance import compute_relevance
from codesign.train import TrainConfig, fit, save_checkpoint

from tiny_specs import TINY_CNN_SPEC

SPEC = TINY_CNN_SPEC


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    validate_spec(SPEC)
    splits = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = build_float(SPEC)
    res = fit(model, splits, TrainConfig(epochs=3, lr=1e-2, patience=None, progress=False))
    folder = tmp_path_factory.mktemp("run")
    save_checkpoint(folder / "float.pt", model, SPEC, None,
                    {"dataset": "digits", "split_seed": 0, "test_acc": res.test_acc})
    x, y = sample_batch(splits, 96, "train")
    rel = compute_relevance(model.eval(), SPEC, x, y, progress=False)
    return model.eval(), splits, folder, rel


def _randomise_bn(model):
    """Non-trivial BN statistics, so a wrongly sliced BN entry would show in the outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_structured_prune_equals_masked_model_and_exports(setup, tmp_path):
    model, splits, _, rel = setup
    x, _ = sample_batch(splits, 64, "test")
    res = prune_structured(SPEC, model.state_dict(), rel, {"conv0": 0.5, "conv1": 0.5, "fc0": 0.25})
    assert [l.get("out_channels", l.get("out_features")) for l in res.spec["layers"] if "name" in l] == [4, 6, 18, 10]
    assert res.state_dict["body.fc0.weight"].shape == (18, 6 * 4 * 4)   # NCHW flatten: 16 inputs per channel
    small = build_float(res.spec)
    small.load_state_dict(res.state_dict)
    masked = build_float(SPEC)
    masked.load_state_dict(model.state_dict())
    mask_structured(masked, SPEC, res.keep)
    small.eval(), masked.eval()
    with torch.no_grad():
        a, b = small(x), masked(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert torch.equal(a.argmax(1), b.argmax(1))

    # the same holds when BN statistics are not the trained ones (catches BN slicing errors)
    m2 = build_float(SPEC)
    m2.load_state_dict(model.state_dict())
    _randomise_bn(m2)
    r2 = apply_structured(SPEC, m2.state_dict(), res.keep)
    s2 = build_float(r2.spec)
    s2.load_state_dict(r2.state_dict)
    mask_structured(m2, SPEC, res.keep)
    with torch.no_grad():
        assert torch.allclose(s2.eval()(x), m2.eval()(x), atol=1e-5)

    q = quant_from_float(res.spec, uniform_plan(res.spec, 4, 4), res.state_dict).eval()
    path = export_qonnx(q, x[:1], tmp_path / "pruned.onnx", check_batch=x[:16])
    assert path.is_file()


def test_global_scope_and_ratio_errors(setup):
    _, _, _, rel = setup
    scores = {n: rel.units(n) for n in ("conv0", "conv1", "fc0")}
    keep = select_units(SPEC, scores, 0.5, scope="global")
    assert sum(len(k) for k in keep.values()) == round(0.5 * (8 + 12 + 24))
    assert all(len(k) >= 1 for k in keep.values())
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(CodesignError, match=r"ratio must be in \[0, 1\)"):
            select_units(SPEC, scores, bad)
    with pytest.raises(CodesignError, match="logits layer is never pruned"):
        select_units(SPEC, scores, {"fc1": 0.5})
    with pytest.raises(CodesignError, match="ratio must be in"):
        CompressConfig(prune_weights=2.0)


def test_bit_allocation_respects_budget_and_bounds(setup):
    _, _, _, rel = setup
    sens = rel.layer_scores()
    for limit in (3.0, 4.0, 5.5):
        plan = allocate_bits(SPEC, sens, Budget("avg", limit))
        assert average_weight_bits(SPEC, plan) <= limit + 1e-9
        assert all(2 <= e["weight_bits"] <= 8 for e in plan["layers"].values())
    bounds = {"conv0": (4, 6), "fc1": (8, 8)}
    plan = allocate_bits(SPEC, sens, Budget("avg", 4.0), weight_bounds=bounds)
    assert 4 <= plan["layers"]["conv0"]["weight_bits"] <= 6 and plan["layers"]["fc1"]["weight_bits"] == 8
    mem = 20000                                   # 5784 weights: 2 bits each = 11568
    plan = allocate_bits(SPEC, sens, Budget("mem", mem))
    assert weight_memory_bits(SPEC, plan) <= mem
    # more relevance -> more bits: swap the sensitivities of two equal-sized layers' rule inputs
    skew = {n: (10.0 if n == "fc0" else 0.01) for n in sens}
    hi = allocate_bits(SPEC, skew, Budget("avg", 4.0))
    lo = allocate_bits(SPEC, {n: (0.01 if n == "fc0" else 10.0) for n in sens}, Budget("avg", 4.0))
    assert hi["layers"]["fc0"]["weight_bits"] > lo["layers"]["fc0"]["weight_bits"]
    # cost callback: allocates activation bits too and stays under the limit
    cost = lambda p: sum(e["weight_bits"] + e.get("act_bits", 0) for e in p["layers"].values())  # noqa: E731
    plan = allocate_bits(SPEC, sens, Budget("cost", 20, cost))
    assert cost(plan) <= 20
    u = uniform_allocation(SPEC, Budget("avg", 4.5))
    assert {e["weight_bits"] for e in u["layers"].values()} == {4}
    with pytest.raises(CodesignError, match="infeasible"):
        allocate_bits(SPEC, sens, Budget("avg", 1.5))


def test_compress_pipeline_clusters_export_with_at_most_k_integers(setup, tmp_path):
    _, splits, folder, rel = setup
    k = 4
    cfg = CompressConfig(prune_filters=0.25, prune_weights=0.5, bits="avg:5", cluster=k,
                         qat=TrainConfig(epochs=1, lr=2e-3, patience=None, progress=False,
                                         max_batches_per_epoch=6))
    s = compress(folder / "float.pt", rel, tmp_path / "out", cfg, splits=splits)
    for f in ("qat.pt", "plan.json", "model.onnx", "compress.json"):
        assert (tmp_path / "out" / f).is_file(), f
    levels = s["onnx"]["weight_levels"]
    assert set(levels) == {"conv0", "conv1", "fc0", "fc1"}
    for name, lv in levels.items():
        assert lv["distinct"] <= k, (name, lv)
    # unstructured masks survived QAT: half of every fc weight matrix is an exported zero
    for name in ("fc0", "fc1"):
        assert levels[name]["zeros"] >= levels[name]["size"] // 2
    assert s["avg_weight_bits"] <= 5 and s["spec"]["layers"][0]["out_channels"] == 6
    assert s["test_acc"] > 0.3


def test_relevance_for_another_model_is_rejected(setup, tmp_path):
    _, splits, folder, _ = setup
    other = dict(SPEC, layers=[dict(l) for l in SPEC["layers"]])
    other["layers"][2]["out_channels"] = 5
    m = build_float(other)
    x, y = sample_batch(splits, 16, "train")
    rel_other = compute_relevance(m.eval(), other, x, y, method="magnitude", progress=False)
    with pytest.raises(CodesignError, match="layer shapes differ"):
        compress(folder / "float.pt", rel_other, tmp_path / "x", CompressConfig(prune_filters=0.5), splits=splits)
    rel_other.save(tmp_path / "relevance.json")
    from codesign.cli import main

    rc = main(["compress", str(folder / "float.pt"), "--relevance", str(tmp_path / "relevance.json"),
               "--prune-filters", "0.5", "--out", str(tmp_path / "y")])
    assert rc == 2
    assert main(["relevance", str(folder / "float.pt"), "--method", "nope", "--out", str(tmp_path / "r.json")]) == 2


def test_iterative_prune_schedule_in_float(setup, tmp_path):
    _, splits, folder, rel = setup
    ft = TrainConfig(epochs=1, lr=1e-3, patience=None, progress=False, max_batches_per_epoch=3)
    s = compress(folder / "float.pt", rel, tmp_path / "it", CompressConfig(
        prune_filters=0.5, prune_steps=2, finetune_epochs=1, relevance_samples=32, qat=ft, quantize=False),
        splits=splits)
    widths = s["prune_filters"]["widths"]
    assert widths == {"conv0": [8, 4], "conv1": [12, 6], "fc0": [24, 12]}
    keep = s["prune_filters"]["keep"]["conv1"]
    assert len(keep) == 6 and len(set(keep)) == 6 and max(keep) < 12      # indices into the original layer
    assert (tmp_path / "it" / "compressed_float.pt").is_file() and 0.0 <= s["test_acc"] <= 1.0


def test_per_unit_weight_pruning_keeps_every_unit_alive(setup):
    """Ranked across the layer, weight relevance (unit relevance x share) strips whole units of
    low relevance at high ratios; per unit, every unit loses exactly the ratio of its own weights,
    its lowest-scored ones, and the layer's total sparsity is the same."""
    from codesign.compress.prune import weight_masks
    from codesign.relevance import weight_relevance

    import copy

    model, _, _, rel = setup
    rel = copy.deepcopy(rel)  # the fixture's relevance is shared by the module's other tests
    fc = [l["name"] for l in SPEC["layers"] if l["type"] == "fc"]
    layer = fc[-1]
    # a unit of near-zero relevance: ranked layer-wide it loses every weight at 90%
    rel.layers[layer]["units"] = [1e-6] + [1.0] * (len(rel.layers[layer]["units"]) - 1)
    wide = weight_masks(model, SPEC, rel, 0.9, layers=[layer])[layer]
    assert not wide[0].any()
    m = weight_masks(model, SPEC, rel, 0.9, layers=[layer], per_unit=True)[layer]
    n_in = m.shape[1]
    k = round(0.9 * n_in)
    assert (m.sum(1) == n_in - k).all() and abs(m.float().mean().item() - wide.float().mean().item()) < 1.0 / n_in
    s = weight_relevance(rel, layer, model.layer(layer).weight)
    for i in range(m.shape[0]):  # the kept weights of each unit are its top-scored ones
        assert s[i][m[i]].min() >= s[i][~m[i]].max()
    with pytest.raises(CodesignError, match="per-unit weight pruning.*scope 'layer'"):
        weight_masks(model, SPEC, rel, 0.9, scope="global", per_unit=True)
