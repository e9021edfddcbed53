"""Nothing overwritten by mistake: outputs that are inputs, the RTL folder swap, file modes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from codesign.atomic import write_text
from codesign.cli import main


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path, caplog):
    ck = tmp_path / "qat.pt"
    ck.write_bytes(b"checkpoint bytes")
    assert main(["export", str(ck), "--out", str(ck)]) == 2
    assert ck.read_bytes() == b"checkpoint bytes"
    assert "would be overwritten" in caplog.text
    assert main(["export", str(ck), "--out", str(tmp_path / "model.pt")]) == 2
    assert "expected a .onnx" in caplog.text


def test_relevance_refuses_to_overwrite_its_checkpoint(tmp_path, caplog):
    ck = tmp_path / "float.pt"
    ck.write_bytes(b"checkpoint bytes")
    assert main(["relevance", str(ck), "--out", str(ck)]) == 2
    assert ck.read_bytes() == b"checkpoint bytes"
    assert main(["relevance", str(ck), "--out", str(tmp_path / "rel.json"), "--plot", str(ck)]) == 2
    assert ck.read_bytes() == b"checkpoint bytes"


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_write_honours_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        p = write_text(tmp_path / f"f{mask}.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_failed_render_keeps_the_old_rtl(tmp_path):
    from codesign.errors import UnsupportedError
    from codesign.hw.rtl import HWNodeSpec, hw_node_specs, render_nodes
    from test_driver import mvau_graph

    mw, _ = mvau_graph()
    specs = hw_node_specs(mw)
    out = tmp_path / "rtl"
    render_nodes(specs, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UnsupportedError):
        render_nodes(specs + [HWNodeSpec("bogus", "NoSuchOp", {}, {})], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["rtl"]  # no temporary folder left behind
    d = render_nodes(specs, out)
    assert d.out_dir == out and (out / "design.json").is_file()


def test_info_on_an_empty_file_exit_2(tmp_path, caplog):
    f = tmp_path / "empty.onnx"
    f.write_bytes(b"")
    assert main(["info", str(f)]) == 2
    assert "no ONNX graph" in caplog.text or "not a readable" in caplog.text


@pytest.mark.parametrize("bad", ["shape", "nan", "object"])
def test_rtlsim_bad_inputs_exit_2(tmp_path, caplog, bad):
    import onnx
    import onnx.helper as oh

    build = tmp_path / "B"
    build.mkdir()
    g = oh.make_graph([oh.make_node("Identity", ["x"], ["y"])], "g",
                      [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                      [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    onnx.save(oh.make_model(g), str(build / "dataflow.onnx"))
    x = {"shape": np.zeros((2, 5), np.float32), "nan": np.full((2, 4), np.nan, np.float32),
         "object": np.array([{"a": 1}, None], dtype=object)}[bad]
    np.save(tmp_path / "x.npy", x, allow_pickle=True)
    assert main(["rtlsim", str(build), "--input", str(tmp_path / "x.npy"), "--frames", "2"]) == 2
    assert str(tmp_path / "x.npy") in caplog.text


@pytest.mark.parametrize("cmd", [
    ["train", "--model", "tfc", "--dataset", "digits", "--epochs", "1"],
    ["qat", "CKPT", "--bits", "w4a4"],
])
def test_out_pointing_to_a_file_exit_2(tmp_path, caplog, cmd):
    f = tmp_path / "afile"
    f.write_text("keep me")
    argv = [str(tmp_path / "float.pt") if a == "CKPT" else a for a in cmd] + ["--out", str(f)]
    assert main(argv) == 2
    assert "existing file" in caplog.text and f.read_text() == "keep me"


def test_run_out_pointing_to_a_file_exit_2(tmp_path, caplog):
    f = tmp_path / "afile"
    f.write_text("keep me")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: tfc\ndataset: digits\nout: {f}\n")
    assert main(["run", str(cfg)]) == 2
    assert "existing file" in caplog.text
