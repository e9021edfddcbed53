"""The product checks itself against the source model: `compile --verify`, `rtlsim` against
BUILD/source.onnx, exact golden execution above 2^24, verdicts with exit codes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

import codesign.dataflow.transforms.quant as quant
from codesign.cli import main
from codesign.dataflow.ops import DOMAIN, make_hw_node
from test_rounding_ties import export, po2_mlp, set_tie_weights


@pytest.fixture(scope="module")
def tie_model(tmp_path_factory) -> str:
    """A Brevitas MLP with power-of-two scales whose pre-activations hit ties often."""
    d = tmp_path_factory.mktemp("tie")
    model = po2_mlp()
    xs0 = np.random.default_rng(0).random((8, 1, 4, 4)).astype(np.float32)
    set_tie_weights(model, xs0, d / "scales.onnx")
    export(model, xs0, d / "model.onnx")
    return str(d / "model.onnx")


def _round_half_up(qmin, qmax, mode, where=""):
    """The lowering bug this project had: every step non-strict (round half up)."""
    ks = np.arange(qmin + 1, qmax + 1, dtype=np.float64)
    return ks - 0.5, np.zeros(ks.shape, dtype=bool)


def test_compile_verifies_against_source(tie_model, tmp_path, capsys):
    out = tmp_path / "BUILD"
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "8"]) == 0
    rep = json.loads((out / "report" / "verify.json").read_text())
    assert rep["ok"] and rep["inputs_checked"] == 8 and rep["mismatching_output_elements"] == 0
    assert rep["compared"] == "every activation layer and the output" and len(rep["layers"]) == 3
    assert (out / "source.onnx").read_bytes() == open(tie_model, "rb").read()
    assert "verified: compiled graph == source model on 8 inputs" in capsys.readouterr().out


def test_compile_fails_on_a_lowering_bug(tie_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(quant, "rounding_steps", _round_half_up)
    out = tmp_path / "BUILD"
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "16"]) == 1
    rep = json.loads((out / "report" / "verify.json").read_text())
    assert not rep["ok"] and rep["mismatching_output_elements"] > 0
    assert rep["first_differing_node"].startswith("MVAU_")  # the first activation layer that differs
    assert "differs from the source model" in caplog.text


def test_rtlsim_checks_against_the_source(tie_model, tmp_path, monkeypatch):
    monkeypatch.setattr(quant, "rounding_steps", _round_half_up)
    out = tmp_path / "BUILD"
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "0"]) == 0
    monkeypatch.undo()
    # the RTL equals the (wrong) dataflow.onnx; only the source comparison can catch it
    xs = (np.random.default_rng(1).integers(0, 16, size=(16, 1, 4, 4)) / 16).astype(np.float32)
    np.save(tmp_path / "x.npy", xs)
    assert main(["rtlsim", str(out), "--frames", "16", "--input", str(tmp_path / "x.npy")]) == 2
    rep = json.loads((out / "report" / "verify_rtlsim.json").read_text())
    assert not rep["ok"]
    assert not (out / "report" / "rtlsim_performance.json").exists()


def test_golden_execution_exact_above_2_24():
    """MVAU -> MVAU -> FIFO with a second accumulator of 16,953,103 (> 2^24, odd, so float32
    cannot hold it): the HW chain's execution stays exact (hand-computed value)."""
    n1 = make_hw_node("MVAU", ["x", "W"], ["a"], "MVAU_0", MW=4, MH=1, inputDataType="UINT8",
                      weightDataType="INT8", outputDataType="INT20", accDataType="INT20", noActivation=1,
                      numInputVectors=[1])
    n2 = make_hw_node("MVAU", ["a", "W2"], ["b"], "MVAU_1", MW=1, MH=1, inputDataType="INT20",
                      weightDataType="INT9", outputDataType="INT32", accDataType="INT32", noActivation=1,
                      numInputVectors=[1])
    n3 = make_hw_node("StreamingFIFO", ["b"], ["y"], "StreamingFIFO_0", depth=2, folded_shape=[1, 1],
                      dataType="INT32")
    g = oh.make_graph([n1, n2, n3], "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                      [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1])])
    m = ModelWrapper(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13), oh.make_opsetid(DOMAIN, 1)]))
    m.set_initializer("W", np.full((4, 1), 127.0, dtype=np.float32))
    m.set_initializer("W2", np.array([[131.0]], dtype=np.float32))
    m.set_tensor_datatype("x", DataType["UINT8"])
    m = m.transform(InferShapes())
    y = execute_onnx(m, {"x": np.array([[255, 255, 255, 254]], dtype=np.float32)})["y"]
    want = (255 * 3 + 254) * 127 * 131
    assert want == 16_953_103 and want > 2 ** 24 and int(np.float32(want)) != want
    assert int(y.reshape(-1)[0]) == want and float(y.reshape(-1)[0]) == want


def test_not_fit_is_visible_and_exit_1(tie_model, tmp_path, caplog, monkeypatch):
    from codesign.dataflow import boards

    real = boards.Board.resources

    def tiny(self):  # a board with room for almost nothing
        return {k: 1 for k in real(self)}

    monkeypatch.setattr(boards.Board, "resources", tiny)
    out = tmp_path / "B"
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "0"]) == 1
    err = caplog.text
    assert "does NOT fit" in err and "over" in err and "--max-fps" in err
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "0",
                 "--allow-overfit"]) == 0


def test_infeasible_target_returns_best_design_and_binding_constraint(tie_model, tmp_path, caplog):
    out = tmp_path / "B"
    assert main(["compile", tie_model, "--target-fps", "1e12", "--out", str(out), "--verify", "0"]) == 1
    err = caplog.text
    assert "not reachable" in err and "Binding constraint" in err
    assert (out / "dataflow.onnx").is_file()


@pytest.mark.parametrize("extra", [["--target-fps", "nan"], ["--target-fps", "1000", "--clock-ns", "nan"],
                                   ["--target-fps", "1000", "--clock-ns", "0"],
                                   ["--target-fps", "1000", "--mvau-wwidth-max", "0"],
                                   ["--target-fps", "1000", "--label-select", "0"],
                                   ["--target-fps", "-5"], ["--max-fps", "--util", "nan"]])
def test_bad_compile_numbers_exit_2(tie_model, tmp_path, extra, caplog):
    assert main(["compile", tie_model, "--out", str(tmp_path / "B"), *extra]) == 2
    assert "must be" in caplog.text


def test_compile_out_is_a_file_exit_2(tie_model, tmp_path, caplog):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(f)]) == 2
    assert "existing file" in caplog.text


def test_unknown_mem_mode_in_folding_is_refused(tie_model, tmp_path, caplog):
    out = tmp_path / "B"
    assert main(["compile", tie_model, "--target-fps", "1000", "--out", str(out), "--verify", "0"]) == 0
    fold = json.loads((out / "folding_config.json").read_text())
    name = next(k for k in fold if k.startswith("MVAU"))
    fold[name]["mem_mode"] = "in_the_cloud"
    (tmp_path / "f.json").write_text(json.dumps(fold))
    assert main(["compile", tie_model, "--folding", str(tmp_path / "f.json"), "--out", str(tmp_path / "C"),
                 "--verify", "0"]) == 2
    assert "mem_mode" in caplog.text and "in_the_cloud" in caplog.text
    fold[name]["mem_mode"] = "internal_decoupled"  # a FINN value is accepted
    (tmp_path / "f.json").write_text(json.dumps(fold))
    assert main(["compile", tie_model, "--folding", str(tmp_path / "f.json"), "--out", str(tmp_path / "C"),
                 "--verify", "0"]) == 0
