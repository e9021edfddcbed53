"""The foundation CLI end to end on real data: train -> qat -> export -> info (issue 2, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys

from codesign.cli import main


def test_train_qat_export_info(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "tfc", "--dataset", "digits", "--epochs", "3", "--lr", "3e-3",
                 "--no-progress", "--out", str(run)]) == 0
    assert (run / "float.pt").is_file() and (run / "float.json").is_file()
    plan = tmp_path / "plan.json"
    from codesign.models import make_spec, uniform_plan

    p = uniform_plan(make_spec("tfc", (1, 8, 8)), 4, 4)
    p["layers"]["fc0"] = {"weight_bits": 8, "act_bits": 1}
    plan.write_text(json.dumps(p))
    assert main(["qat", str(run / "float.pt"), "--plan", str(plan), "--epochs", "1", "--no-progress",
                 "--out", str(run)]) == 0
    assert json.loads((run / "plan.json").read_text()) == p
    assert main(["export", str(run / "qat.pt"), "--out", str(run / "model.onnx"), "--check-samples", "32"]) == 0
    check = json.loads((run / "model.check.json").read_text())
    assert check["ok"] and check["samples"] == 32
    capsys.readouterr()
    assert main(["info", str(run / "model.onnx"), "--json", str(run / "info.json")]) == 0
    out = capsys.readouterr().out
    assert "MatMul_0" in out and "total" in out
    info = json.loads((run / "info.json").read_text())
    assert [r["weight_bits"] for r in info["rows"]] == ["8", "4", "4", "4"]
    assert info["totals"]["macs"] == 64 * 64 + 64 * 64 * 2 + 64 * 10


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["qat", str(tmp_path / "missing.pt"), "--bits", "w4a4", "--out", str(tmp_path)]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    assert main(["info", str(tmp_path / "bad.onnx")]) == 2


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "codesign.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "qat", "export", "info", "run"):
        assert cmd in out.stdout
