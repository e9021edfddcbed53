"""Run configs: every field typed and ranged (pydantic), names checked before the first step;
a bad config is one clear line and exit 2 from `codesign run`, without training anything."""

from __future__ import annotations

import time

import pytest
import yaml

from codesign.cli import main
from codesign.config import load_config

BASE = {"model": "tfc", "dataset": "digits"}


@pytest.mark.parametrize("patch,needle", [
    ({"train": {"epochs": "ten"}}, "train.epochs"),
    ({"target_fps": "fast"}, "target_fps"),
    ({"target_fps": float("nan")}, "target_fps"),
    ({"clock_ns": 0}, "clock_ns"),
    ({"search": {"weight_bits": 4}}, "search.weight_bits"),
    ({"search": {"weight_bits": {"fc0": 4}}}, "search.weight_bits"),
    ({"search": {"act_bits": [2, 9]}}, "search.act_bits"),
    ({"train": 5}, "train"),
    ({"train": None}, "train"),
    ({"search": {"rank": "x"}}, "search.rank"),
    ({"search": {"budget": {"LUT": "lots"}}}, "search.budget.LUT"),
    ({"search": {"budget": {"LUTS": 100}}}, "search.budget"),
    ({"search": {"baselines": ["w9a9"]}}, "search.baselines"),
    ({"search": {"baselines": ["uniform"]}}, "search.baselines"),
    ({"board": "Pynq-Z9"}, "board"),
    ({"search": {"strategy": "genetic"}}, "search.strategy"),
    ({"model": "resnet"}, "model"),
    ({"train": {"batch_size": 1}}, "train.batch_size"),
    ({"hw": {"rtl": "maybe"}}, "hw.rtl"),
    ({"typo_key": 1}, "typo_key"),
])
def test_bad_config_is_one_line_exit_2_before_any_step(tmp_path, caplog, patch, needle):
    cfg = {**BASE, "out": str(tmp_path / "run"), **patch}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    assert main(["run", str(p)]) == 2
    assert time.time() - t0 < 30  # nothing was trained
    assert needle in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "run" / "float.pt").exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "dataset: digits\n", "[1, 2]\n"])
def test_empty_or_modelless_config_is_an_error(tmp_path, text, caplog):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert main(["run", str(p)]) == 2
    assert "model" in caplog.text or "mapping" in caplog.text


def test_hw_rtl_no_means_false(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text('model: tfc\nhw: {rtl: "no", synth: "false"}\n')
    cfg = load_config(p)
    assert cfg.hw.rtl is False and cfg.hw.synth is False
    p.write_text('model: tfc\ntrain: {epochs: "10"}\nsearch: {budget: {LUT: 8000}}\n')
    cfg = load_config(p)
    assert cfg.train.epochs == 10 and cfg.search.budget == {"LUT": 8000}


def test_examples_validate():
    from pathlib import Path

    for f in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml")):
        load_config(f)


def test_examples_are_achievable():
    """Every shipped example's search space holds at least one design that meets its budget at its
    target FPS (an example that exits "impossible budget" on first use is a broken example)."""
    from pathlib import Path

    from codesign.models.zoo import make_spec
    from codesign.search.feedback import check_achievable
    from codesign.search.loop import build_hw, build_space

    shapes = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
    for f in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml")):
        cfg = load_config(f)
        spec = make_spec(cfg.model, shapes[cfg.dataset], 10)
        space = build_space(cfg, spec)
        est = check_achievable(space, build_hw(cfg, space))
        assert est.feasible, f.name
