"""Real FINN+ (finn-plus 1.6.1) on the project's own exports (issue 12).

FINN+ lives in its own environment (tools/setup_finn.sh). These tests run whenever that setup
succeeded (its stamp file exists) and then fail, never skip, when FINN+ misbehaves; they skip
only where the optional environment was never set up. The environment is found next to this
checkout or next to the main worktree of a git worktree ($CODESIGN_FINN_PYTHON overrides).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from dataflow_helpers import calibrate_and_randomise_bn, images  # noqa: E402
from tiny_specs import TINY_CNN_SPEC  # noqa: E402

from codesign.backends import finn  # noqa: E402
from codesign.backends.finn_plus import (FinnConfig, finn_estimate_for_build, run_jobs,  # noqa: E402
                                         STAMP_NAME)
from codesign.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    import os

    c = [Path(os.environ["CODESIGN_FINN_PYTHON"])] if os.environ.get("CODESIGN_FINN_PYTHON") else []
    c.append(REPO / ".venv-finn" / "bin" / "python")
    try:  # a git worktree: the main worktree's environment
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=REPO,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        if common:
            c.append(Path(common).parent / ".venv-finn" / "bin" / "python")
    except (OSError, subprocess.SubprocessError):
        pass
    return c


@pytest.fixture(scope="module")
def finn_cfg() -> FinnConfig:
    for py in _candidates():
        cfg = FinnConfig.from_env(py)
        if (cfg.venv / STAMP_NAME).is_file():
            assert cfg.python.is_file(), f"setup stamp {cfg.stamp} exists but {cfg.python} does not"
            return cfg
    pytest.skip("FINN+ environment not set up (bash tools/setup_finn.sh); setup stamp not found")


def _export(spec: dict, path: Path) -> Path:
    """A zoo/test spec with random weights through the project's own QAT model and export."""
    from codesign.export import export_qonnx
    from codesign.models import uniform_plan
    from codesign.models.build import build_quant

    torch.manual_seed(0)
    m = build_quant(spec, uniform_plan(spec, 2, 2))
    x = images(16, tuple(spec["input_shape"]))
    calibrate_and_randomise_bn(m, x)
    return export_qonnx(m, torch.from_numpy(x[:1]), path, check_batch=torch.from_numpy(x))


@pytest.fixture(scope="module")
def tfc_onnx(tmp_path_factory) -> Path:
    from codesign.models import make_spec

    return _export(make_spec("tfc", (1, 8, 8)), tmp_path_factory.mktemp("tfc") / "model.onnx")


def _check_comparison(cmp: dict) -> None:
    """FINN+'s figures against ours where both model the same thing: the folding landed on the
    right FINN nodes, so every MVAU's cycles (FINN+'s own formula) equal ours."""
    assert cmp["folding_names_mismatched"] == []
    mvau = [r for r in cmp["rows"] if r["op"] == "MVAU"]
    assert mvau and all(r["finn_nodes"] and r["finn_nodes"][0].startswith("MVAU_hls_") for r in mvau)
    for r in mvau:
        assert r["ours"]["cycles"] == r["finn"]["cycles"], r
    assert cmp["network"]["ours"]["max_cycles"] == cmp["network"]["finn"]["max_cycles"]
    finn_only = [r for r in cmp["rows"] if r["node"] is None]
    assert any("input quantizer" in r["why"][0] for r in finn_only)  # FINN+ puts it in HW, we keep it on the host


def _check_crosscheck(cc: dict, frames: int) -> None:
    assert cc["frames"] == frames
    assert cc["qonnx_vs_embedded"]["agree"] and cc["qonnx_vs_finn"]["agree"], cc
    # Both integer dataflow graphs then the same float output scale: identical bits.
    assert cc["embedded_vs_finn"]["bit_identical"], cc
    assert cc["embedded_vs_finn"]["argmax_agreement"] == 1.0 and cc["agree"]


def test_compile_backend_finn_mlp_with_crosscheck(tmp_path, tfc_onnx, finn_cfg, capsys):
    build = tmp_path / "BUILD"
    assert main(["compile", str(tfc_onnx), "--board", "Pynq-Z2", "--target-fps", "20000", "--out", str(build),
                 "--backend", "finn", "--finn-crosscheck", "4", "--finn-python", str(finn_cfg.python)]) == 0
    out = capsys.readouterr().out
    assert "embedded vs FINN+" in out and "three-way cross-check on 4 frames" in out and ": agree" in out
    rep = build / "finn" / "report"
    for name in ("estimate_layer_cycles", "estimate_layer_resources", "estimate_network_performance"):
        assert (rep / f"{name}.json").is_file()
    assert json.loads((rep / "metadata_builder.json").read_text())["status"] == "ok"
    cmp = json.loads((build / "report" / "finn_vs_embedded.json").read_text())
    _check_comparison(cmp)
    _check_crosscheck(json.loads((build / "report" / "finn_crosscheck.json").read_text()), 4)


def test_crosscheck_cnn(tmp_path, finn_cfg):
    from codesign.dataflow.build import BuildConfig, build_dataflow

    qonnx = _export(TINY_CNN_SPEC, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    build_dataflow(qonnx, BuildConfig(output_dir=build, board="Pynq-Z2", target_fps=20000))
    res = finn_estimate_for_build(build, qonnx, "Pynq-Z2", 10.0, finn_cfg, crosscheck_frames=3)
    _check_comparison(res["comparison"])
    pool = [r for r in res["comparison"]["rows"] if r["op"] == "StreamingMaxPool"]
    assert [n.rsplit("_", 1)[0] for n in pool[0]["finn_nodes"]] == ["ConvolutionInputGenerator_rtl", "Pool_hls"]
    cc = res["crosscheck"]
    _check_crosscheck(cc, 3)
    assert "Pool_hls" in cc["finn_execution"]["hw_op_types"]


def test_build_directory_round_trip_and_workarounds(tmp_path, tfc_onnx, finn_cfg):
    """What `codesign finn` writes is what FINN+ consumes: its config and folding load, the estimate
    steps finish (rc 0), and every folding entry lands on a node of FINN's folded model. The same
    subprocess proves each FINN+ 1.6.1 workaround is still needed and still works."""
    build = tmp_path / "BUILD"
    assert main(["compile", str(tfc_onnx), "--board", "Pynq-Z2", "--target-fps", "5000", "--out", str(build)]) == 0
    fdir = tmp_path / "finn_dir"
    assert main(["finn", str(tfc_onnx), "--board", "Pynq-Z2", "--out", str(fdir),
                 "--folding", str(build / "folding_config.json")]) == 0
    doc = run_jobs([{"kind": "workarounds"}, {"kind": "estimate", "build_dir": str(fdir)}], finn_cfg, tmp_path / "w")
    wk, est = doc["results"]
    assert wk["ok"], wk["problems"]
    assert wk["xsi_stub_needed"] and wk["vivado_root_placeholder_needed"] and wk["builder_imports_with_workarounds"]
    assert est["ok"] and est["rc"] == 0, est.get("error")
    assert est["builder_took_over_io"] and est["io_restored"]  # the stdout/logging workaround: needed, working
    out = Path(est["output_dir"])
    folding = json.loads((fdir / "folding_config.json").read_text())
    assert finn.check_applied_folding(out / "intermediate_models" / "step_apply_folding_config.onnx", folding) == []
    applied = est["reports"]["applied_folding_config"]
    ours = json.loads((build / "folding_config.json").read_text())
    name_map = json.loads((fdir / "folding_name_map.json").read_text())
    for our_name, names in name_map.items():
        hit = [n for n in names if n in applied]
        assert len(hit) == 1, (our_name, names)
        for k in ("PE", "SIMD"):
            if k in ours[our_name]:
                assert applied[hit[0]][k] == ours[our_name][k], (our_name, k)
    perf = est["reports"]["estimate_network_performance"]
    ours_perf = json.loads((build / "report" / "estimate_network_performance.json").read_text())
    assert perf["max_cycles"] == ours_perf["max_cycles"]
    assert np.isclose(perf["estimated_throughput_fps"], ours_perf["estimated_throughput_fps"])


def test_finn_rerank_of_finalists(tmp_path, tfc_onnx, finn_cfg):
    """search/finn_rerank: FINN+'s estimates for finalists in one subprocess, feasibility against the
    run's limits with FINN's figures, rows re-sorted (feasible, val accuracy)."""
    import shutil
    from types import SimpleNamespace

    from codesign.dataflow.boards import get_board
    from codesign.search.finn_rerank import rerank

    rows = []
    for h, acc in (("aaaa", 0.80), ("bbbb", 0.90)):
        d = tmp_path / "final" / f"{h}-k"
        d.mkdir(parents=True)
        shutil.copyfile(tfc_onnx, d / "model.onnx")
        rows.append({"plan_hash": h, "val_acc": acc, "feasible": True, "LUT": 1})
    ctx = SimpleNamespace(out=tmp_path, cfg=SimpleNamespace(search=SimpleNamespace(util=1.0)),
                          hw=SimpleNamespace(board=get_board("Pynq-Z2"), clock_ns=10.0, target_fps=5000.0,
                                             limits={"LUT": 100.0, "BRAM_18K": 280.0, "DSP": 220.0}))
    out = rerank(ctx, rows, "k", finn_cfg)
    assert [r["plan_hash"] for r in out] == ["bbbb", "aaaa"]
    ours = json.loads((tmp_path / "search_finn" / "aaaa" / "report" / "estimate_network_performance.json").read_text())
    for r in out:
        f = r["finn"]
        assert f["ok"] and f["max_cycles"] == ours["max_cycles"] and f["LUT"] > 100
        assert not f["feasible"] and "LUT" in f["reason"] and r["feasible_embedded"] and not r["feasible"]


def test_finn_examples_cnv_folding_through_finn_plus(tmp_path, finn_cfg):
    """FINN's published cnv_1w1a folding (finn-examples' file, FINN names) compiled here, then the
    folding JSON this project writes for FINN+ (`--backend finn`): FINN+ applies every entry and
    its own estimate equals ours and FINN's published figure (32,768 cycles, 3,052 FPS)."""
    from test_dataflow_folding import FINN_CNV_W1A1

    from codesign.export import export_qonnx
    from codesign.models import make_spec, uniform_plan
    from codesign.models.build import build_quant

    spec = make_spec("cnv", (3, 32, 32))
    torch.manual_seed(0)
    m = build_quant(spec, uniform_plan(spec, 1, 1, input_bits=8)).eval()
    qonnx = export_qonnx(m, torch.rand(1, 3, 32, 32), tmp_path / "cnv_w1a1.onnx")
    fold = tmp_path / "cnv-w1a1_folding_config.json"
    fold.write_text(json.dumps(FINN_CNV_W1A1))
    build = tmp_path / "BUILD"
    assert main(["compile", str(qonnx), "--board", "Pynq-Z2", "--clock-ns", "10", "--folding", str(fold),
                 "--label-select", "1", "--out", str(build), "--verify", "0", "--backend", "finn",
                 "--finn-python", str(finn_cfg.python)]) == 0
    cmp = json.loads((build / "report" / "finn_vs_embedded.json").read_text())
    assert cmp["folding_names_mismatched"] == []
    assert cmp["network"]["ours"]["max_cycles"] == cmp["network"]["finn"]["max_cycles"] == 32768
    assert round(cmp["network"]["finn"]["estimated_throughput_fps"]) == 3052
    out = Path(cmp["finn_output"])
    written = json.loads((build / "finn" / "folding_config.json").read_text())
    # every entry lands on a node of FINN+'s folded model, except the top-k node --label-select adds
    # here (the QONNX export has no TopK for FINN+ to turn into its LabelSelect)
    missing = finn.check_applied_folding(out / "intermediate_models" / "step_apply_folding_config.onnx", written)
    assert len(missing) == 1 and missing[0].startswith("LabelSelect"), missing
