"""Checkpoints and training that a user can get wrong: one clear line, never a traceback or a
silent reuse (mismatched weights/spec, BatchNorm batches of one, resuming with new settings)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from codesign.cli import main
from codesign.errors import CodesignError
from codesign.models import build_float, make_spec
from codesign.train import TrainConfig, fit, save_checkpoint


def _float_ckpt(tmp_path, mutate=None, spec_mutate=None):
    spec = make_spec("tfc", (1, 8, 8))
    sd = build_float(spec).state_dict()
    if mutate:
        mutate(sd)
    if spec_mutate:
        spec = spec_mutate(spec)
    p = tmp_path / "float.pt"
    save_checkpoint(p, sd, spec, None, {"dataset": "digits"})
    return p


def _wrong_shape(sd):
    k = next(k for k, v in sd.items() if v.ndim == 2)
    sd[k] = torch.zeros(sd[k].shape[0] + 3, sd[k].shape[1])


@pytest.mark.parametrize("cmd", ["qat", "relevance", "export"])
def test_mismatched_weights_are_one_line(tmp_path, caplog, cmd):
    p = _float_ckpt(tmp_path, mutate=_wrong_shape)
    argv = {"qat": ["qat", str(p), "--bits", "w4a4", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "q")],
            "relevance": ["relevance", str(p), "--samples", "4", "--no-progress", "--out", str(tmp_path / "r.json")],
            "export": ["export", str(p), "--out", str(tmp_path / "m.onnx")]}[cmd]
    if cmd == "export":  # a QAT checkpoint with a plan whose weights do not fit
        from codesign.models import uniform_plan

        spec = make_spec("tfc", (1, 8, 8))
        sd = build_float(spec).state_dict()
        _wrong_shape(sd)
        save_checkpoint(p, sd, spec, uniform_plan(spec, 4, 4), {"dataset": "digits"})
    assert main(argv) == 2
    assert "do not match its model spec" in caplog.text


def test_malformed_spec_is_one_line(tmp_path, caplog):
    p = _float_ckpt(tmp_path, spec_mutate=lambda s: {**s, "layers": "oops"})
    assert main(["qat", str(p), "--bits", "w4a4", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "q")]) == 2
    assert str(p) in caplog.text


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _loaders(n: int, bs: int):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=bs, shuffle=True, generator=g), DataLoader(ds, batch_size=bs)


def test_batch_size_one_with_batchnorm_is_refused():
    with pytest.raises(CodesignError, match="BatchNorm needs at least 2"):
        fit(_bn_model(), _loaders(8, 1), TrainConfig(epochs=1, batch_size=1, progress=False))


def test_last_batch_of_one_is_dropped_not_a_crash():
    res = fit(_bn_model(), _loaders(9, 4), TrainConfig(epochs=2, batch_size=4, progress=False, patience=None))
    assert res.epochs_run == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    ck = tmp_path / "run.pt.partial"
    fit(_bn_model(), _loaders(8, 4), TrainConfig(epochs=1, batch_size=4, lr=1e-3, progress=False), checkpoint_path=ck)
    with pytest.raises(CodesignError, match=r"lr 0\.001 -> 0\.01"):
        fit(_bn_model(), _loaders(8, 4), TrainConfig(epochs=2, batch_size=4, lr=1e-2, progress=False),
            checkpoint_path=ck)
    with pytest.raises(CodesignError, match="batch_size 4 -> 2"):
        fit(_bn_model(), _loaders(8, 2), TrainConfig(epochs=2, batch_size=2, lr=1e-3, progress=False),
            checkpoint_path=ck)
    res = fit(_bn_model(), _loaders(8, 4), TrainConfig(epochs=2, batch_size=4, lr=1e-3, progress=False),
              checkpoint_path=ck)  # same settings, more epochs: resumes
    assert res.epochs_run >= 1
