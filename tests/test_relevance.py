"""Relevance on real trained models (sklearn digits, a small CNN): DeepLIFT's summation-to-delta
on float and Brevitas models, the relevance file and its model check, the method error."""

from __future__ import annotations

import pytest
import torch

from codesign.data import load_dataset, sample_batch
from codesign.errors import CodesignError
from codesign.models import build_float, quant_from_float, uniform_plan, validate_spec, with_widths
from codesign.models.quantizers import QUANT_ACT_TYPES
from codesign.relevance import (METHODS, compute_relevance, load_relevance, plot_relevance,
                                weight_relevance)
from codesign.train import TrainConfig, fit

from tiny_specs import TINY_CNN_SPEC

SPEC = TINY_CNN_SPEC


@pytest.fixture(scope="module")
def trained():
    validate_spec(SPEC)
    splits = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = build_float(SPEC)
    res = fit(model, splits, TrainConfig(epochs=3, lr=1e-2, patience=None, progress=False))
    assert res.test_acc > 0.8
    x, y = sample_batch(splits, 128, "train")
    return model.eval(), splits, x, y


def test_deeplift_delta_small_on_float_and_quant(trained):
    model, _, x, y = trained
    rel = compute_relevance(model, SPEC, x, y, method="deeplift", progress=False)
    assert rel.convergence["relative"] < 1e-4, rel.convergence
    assert set(rel.layers) == {"conv0", "conv1", "fc0", "fc1"}
    assert len(rel.layers["conv1"]["units"]) == 12 and len(rel.layers["fc0"]["in_act"]) == 12 * 4 * 4
    assert sum(rel.layer_scores().values()) == pytest.approx(1.0)

    q = quant_from_float(SPEC, uniform_plan(SPEC, 4, 4), model.state_dict()).eval()
    rq = compute_relevance(q, SPEC, x, y, method="deeplift", baseline="mean", progress=False)
    assert rq.convergence["relative"] < 1e-4, rq.convergence

    # Without the registration of Brevitas activations summation-to-delta breaks (toolchain.md).
    from captum.attr._core import deep_lift

    saved = {t: deep_lift.SUPPORTED_NON_LINEAR.pop(t) for t in QUANT_ACT_TYPES}
    try:
        broken = compute_relevance(q, SPEC, x[:32], y[:32], method="deeplift", progress=False,
                                   check_delta=False)
        assert broken.convergence["relative"] > 1e-2
        with pytest.raises(CodesignError, match="summation-to-delta"):
            compute_relevance(q, SPEC, x[:32], y[:32], method="deeplift", progress=False)
    finally:
        deep_lift.SUPPORTED_NON_LINEAR.update(saved)


@pytest.mark.parametrize("method", ["magnitude", "taylor", "random", "lrp", "ig"])
def test_other_criteria_give_scores_per_unit(trained, method):
    model, _, x, y = trained
    rel = compute_relevance(model, SPEC, x[:32], y[:32], method=method, progress=False)
    for name, width in (("conv0", 8), ("conv1", 12), ("fc0", 24)):
        u = rel.units(name)
        assert u.shape == (width,) and (u >= 0).all() and u.sum() > 0


def test_relevance_file_plot_and_model_check(trained, tmp_path):
    model, _, x, y = trained
    rel = compute_relevance(model, SPEC, x[:64], y[:64], progress=False)
    rel.save(tmp_path / "relevance.json")
    plot_relevance(rel, tmp_path / "relevance.png")
    assert (tmp_path / "relevance.png").stat().st_size > 1000
    back = load_relevance(tmp_path / "relevance.json", SPEC)
    assert back.units("fc0").tolist() == pytest.approx(rel.units("fc0").tolist())
    w = model.layer("fc0").weight
    wr = weight_relevance(back, "fc0", w)
    assert wr.shape == w.shape
    assert wr.sum(1).tolist() == pytest.approx(rel.units("fc0").tolist(), rel=1e-4)  # units split over weights
    other = with_widths(SPEC, {"conv1": 6})
    with pytest.raises(CodesignError, match="layer shapes differ"):
        load_relevance(tmp_path / "relevance.json", other)
    with pytest.raises(CodesignError, match="for model 'tinycnn' but the checkpoint is 'tfc'"):
        back.check_matches(dict(SPEC, name="tfc"))


def test_unknown_method_lists_methods(trained):
    model, _, x, y = trained
    with pytest.raises(CodesignError) as err:
        compute_relevance(model, SPEC, x, y, method="shapley-magic")
    for m in METHODS:
        assert m in str(err.value)
    with pytest.raises(CodesignError, match="baseline"):
        compute_relevance(model, SPEC, x, y, baseline="blurred")
