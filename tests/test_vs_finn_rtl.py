"""FINN's own RTL next to ours on one tiny layer (issue 16): FINN+'s code generation, the
adapted finn-rtllib copy, Verilator on both against the same golden numpy output, Yosys counts.

Skips only where the optional FINN+ environment was never set up (tools/setup_finn.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codesign.errors import ToolMissingError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def finn_python():
    from finn_rtl import finn_python as locate

    try:
        return locate()
    except ToolMissingError as exc:
        pytest.skip(f"FINN+ environment not set up (bash tools/setup_finn.sh): {exc}")


def test_adaptations_apply_once_and_change_the_source(finn_python):
    from finn_rtl import ADAPTATIONS, LIB_FILES, finn_rtllib

    lib = finn_rtllib(finn_python)
    where = {name: sub for sub, name in LIB_FILES}
    for name, patch in ADAPTATIONS.items():
        orig = (lib / where[name] / name).read_text()
        new = patch(orig)
        assert new != orig, name
        assert len(new.splitlines()) >= len(orig.splitlines()), name


def test_tiny_layer_both_rtls(finn_python, tmp_path):
    import bench_vs_finn_rtl as bench

    tiny = next(c for c in bench.CONFIGS if c[0] == "tiny")
    res = bench.run_config(tiny, tmp_path, do_timing=False, use_cache=False)
    assert set(res["ours_variants"]) == {"dsp", "lut"}
    assert res["ours"]["synth"]["LUT_eq"] == min(v["synth"]["LUT_eq"] for v in res["ours_variants"].values())
    assert res["ours_variants"]["lut"]["synth"]["DSP"] == 0
    for side in ("ours", "finn"):
        sim = res[side]["sim"]
        assert sim["bit_exact"], (side, sim["mismatch"])
        assert sim["latency_cycles"] > 0 and sim["cycles_per_frame"] == 8.0  # NF*SF = 2*4
    f, o = res["finn"]["synth"], res["ours"]["synth"]
    assert f["cells"].get("DSP48E1", 0) == f["DSP"] > 0  # FINN's packed DSP path was synthesised
    assert f["LUT"] > 0 and f["FF"] > 0 and o["LUT"] > 0
    rate = res["lut_per_dsp"]["lut_per_dsp"]
    assert rate > 0 and f["LUT_eq"] == f["LUT"] + rate * f["DSP"]
    assert res["ratios_ours_over_finn"]["LUT_eq"] == round(o["LUT_eq"] / f["LUT_eq"], 3)
