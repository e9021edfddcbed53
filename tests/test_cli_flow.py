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

    # compile with RTL, Verilator on real digits test images, and Yosys (issue 5's CLI)
    build = tmp_path / "BUILD"
    assert main(["compile", str(run / "model.onnx"), "--board", "Pynq-Z2", "--target-fps", "2000",
                 "--out", str(build), "--rtlsim", "12", "--dataset", "digits", "--synth"]) == 0
    out = capsys.readouterr().out
    assert "frames bit-exact" in out and "yosys (xc7)" in out
    perf = json.loads((build / "report" / "rtlsim_performance.json").read_text())
    assert perf["N"] == 12 and perf["bit_exact_frames"] == 12
    est = json.loads((build / "report" / "estimate_network_performance.json").read_text())
    assert abs(perf["stable_cycles_per_frame"] - est["max_cycles"]) <= 0.05 * est["max_cycles"]
    synth = json.loads((build / "report" / "ooc_synth_and_timing.json").read_text())
    assert synth["LUT"] > 0 and synth["family"] == "xc7"
    assert (build / "rtl" / "codesign_top.v").is_file()


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["qat", str(tmp_path / "missing.pt"), "--bits", "w4a4", "--out", str(tmp_path)]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    assert main(["info", str(tmp_path / "bad.onnx")]) == 2


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "codesign.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "qat", "export", "info", "run"):
        assert cmd in out.stdout
