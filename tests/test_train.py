"""Training loop on real data (sklearn digits) with a tiny float MLP, and checkpoint files."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from codesign.data import load_dataset, make_loaders
from codesign.errors import CodesignError
from codesign.train import (
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
    set_seed,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1, seed=0)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_fit_digits_reaches_90_percent(digits, tmp_path):
    set_seed(0)
    model = mlp()
    steps = []
    cfg = TrainConfig(epochs=15, lr=1e-2, batch_size=64, patience=None, progress=False)
    ckpt = tmp_path / "float.pt"
    spec = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "layers": []}
    res = fit(model, digits, cfg, checkpoint_path=ckpt, meta={"dataset": "digits"},
              after_step=lambda m: steps.append(1), spec=spec)
    assert res.test_acc is not None and res.test_acc >= 0.90, res.history
    assert res.epochs_run == 15 and len(res.history) == 15
    assert set(res.history[0]) >= {"loss", "train_acc", "val_acc", "lr", "seconds"}
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.best_val_acc == max(h["val_acc"] for h in res.history)
    assert len(steps) == 15 * 21                 # after_step after every optimizer step (1293/64)

    # the model holds the best weights; evaluate agrees with the result
    _, _, test_loader = make_loaders(digits)
    acc, loss = evaluate(model, test_loader)
    assert acc == pytest.approx(res.test_acc) and loss > 0

    # checkpoint round trip (weights_only load inside load_checkpoint)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(raw) >= {"state_dict", "spec", "plan", "meta"}
    c = load_checkpoint(ckpt)
    assert c["spec"] == spec and c["plan"] is None
    assert c["meta"]["dataset"] == "digits" and c["meta"]["test_acc"] == pytest.approx(res.test_acc)
    assert c["train_state"]["done"] is True and "optimizer" not in c["train_state"]
    fresh = mlp()
    fresh.load_state_dict(c["state_dict"])
    assert evaluate(fresh, test_loader)[0] == pytest.approx(res.test_acc)

    # a finished checkpoint is not re-trained
    again = fit(mlp(), digits, cfg, checkpoint_path=ckpt, spec=spec)
    assert again.epochs_run == 15 and again.test_acc == pytest.approx(res.test_acc)


def test_early_stop(digits):
    # lr = 0: validation accuracy can never improve after the first epoch
    cfg = TrainConfig(epochs=20, lr=0.0, patience=2, progress=False, max_batches_per_epoch=3)
    res = fit(mlp(), digits, cfg)
    assert res.stopped_early and res.epochs_run == 3 and len(res.history) == 3


def test_resume_after_interrupt(digits, tmp_path):
    cfg = TrainConfig(epochs=4, lr=1e-2, batch_size=64, patience=None, progress=False,
                      max_batches_per_epoch=5)
    ckpt = tmp_path / "run.pt"

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    set_seed(0)
    straight = fit(mlp(), digits, cfg)
    set_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), digits, cfg, checkpoint_path=ckpt, on_epoch=interrupt)
    state = load_checkpoint(ckpt)["train_state"]
    assert state["epoch"] == 2 and not state["done"] and "optimizer" in state

    res = fit(mlp(), digits, cfg, checkpoint_path=ckpt)
    assert res.epochs_run == 4 and [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    # resuming restores weights, optimizer, schedule and shuffling: same result as no interrupt
    for k, v in straight.best_state_dict.items():
        assert torch.equal(v, res.best_state_dict[k]), k

    # the on_epoch callback can stop a run
    res = fit(mlp(), digits, cfg, on_epoch=lambda r: True)
    assert res.epochs_run == 1 and res.stopped_early


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CodesignError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a torch file")
    with pytest.raises(CodesignError, match="corrupt"):
        load_checkpoint(junk)

    good = tmp_path / "good.pt"
    save_checkpoint(good, mlp(), {"name": "mlp"}, None, {"epochs": 1})
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CodesignError, match="corrupt"):
        load_checkpoint(trunc)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CodesignError, match="not a codesign checkpoint"):
        load_checkpoint(foreign)

    # a pickled object is refused by weights_only, never executed
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": {}, "x": Evil()}, fh, protocol=2)
    with pytest.raises(CodesignError, match="cannot be read safely"):
        load_checkpoint(evil)

    # non-JSON-like metadata is refused before writing, naming the key
    with pytest.raises(CodesignError, match="meta.path"):
        save_checkpoint(tmp_path / "x.pt", mlp(), {}, None, {"path": tmp_path})
    assert not (tmp_path / "x.pt").exists()


def test_config_validation():
    with pytest.raises(CodesignError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(CodesignError, match="schedule"):
        TrainConfig(schedule="exp")
