"""A run folder remembers what produced its artefacts: a changed `model:`/`dataset:`/`train:`
with the same `out:` is a clear error, never a silent reuse of the old float.pt."""

from __future__ import annotations

import pytest

from codesign.errors import CodesignError
from codesign.provenance import check_reuse, record


def test_record_and_check(tmp_path):
    art = tmp_path / "float.pt"
    art.write_bytes(b"x")
    s = {"model": "tfc", "dataset": "digits", "train": {"epochs": 1}}
    record(tmp_path, "float", art, s)
    check_reuse(tmp_path, "float", art, dict(s))
    with pytest.raises(CodesignError, match="model: 'tfc' -> 'sfc'"):
        check_reuse(tmp_path, "float", art, {**s, "model": "sfc"})
    with pytest.raises(CodesignError, match="train"):
        check_reuse(tmp_path, "float", art, {**s, "train": {"epochs": 2}})


def test_older_folder_falls_back_to_checkpoint_meta(tmp_path):
    art = tmp_path / "float.pt"
    art.write_bytes(b"x")
    s = {"model": "tfc", "dataset": "digits", "limit_train": None}
    check_reuse(tmp_path, "float", art, s, fallback={"model": "tfc", "dataset": "digits", "stage": "float"})
    with pytest.raises(CodesignError, match="dataset: 'digits' -> 'mnist'"):
        check_reuse(tmp_path, "float", art, {**s, "dataset": "mnist"}, fallback={"model": "tfc", "dataset": "digits"})


def test_prepare_refuses_a_changed_model_with_the_same_out(tmp_path):
    """The real search preparation: tfc trained in a folder, then sfc asked for it."""
    from codesign.config import RunConfig, _build
    from codesign.search.loop import ensure_float

    from codesign.data import load_dataset

    splits = load_dataset("digits", limit_train=64, limit_test=32)
    base = {"model": "tfc", "dataset": "digits", "limit_train": 64, "limit_test": 32, "out": str(tmp_path),
            "train": {"epochs": 1, "max_batches": 1, "batch_size": 16}}
    cfg = _build(RunConfig, base, "t")
    ensure_float(cfg, tmp_path, splits)
    ensure_float(_build(RunConfig, base, "t"), tmp_path, splits)  # same settings: reused
    with pytest.raises(CodesignError, match="model: 'tfc' -> 'sfc'"):
        ensure_float(_build(RunConfig, {**base, "model": "sfc"}, "t"), tmp_path, splits)
    with pytest.raises(CodesignError, match="epochs"):
        ensure_float(_build(RunConfig, {**base, "train": {**base["train"], "epochs": 2}}, "t"), tmp_path, splits)
    (tmp_path / "provenance.json").unlink()  # an older run folder: the checkpoint's meta decides
    with pytest.raises(CodesignError, match="model"):
        ensure_float(_build(RunConfig, {**base, "model": "sfc"}, "t"), tmp_path, splits)
