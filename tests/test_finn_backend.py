"""FINN backend: the build directory validates against FINN's documented config fields and types,
and the folding lands on FINN's node names (finn-reference §1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codesign.backends import finn
from codesign.errors import CodesignError, ToolMissingError

# DataflowBuildConfig fields (FINN v0.10 `main` / `dev`), with the JSON types they take.
FINN_CFG_FIELDS = {
    "output_dir": str, "synth_clk_period_ns": float, "generate_outputs": list, "folding_config_file": str,
    "target_fps": int, "folding_two_pass_relaxation": bool, "verify_steps": list, "verify_input_npy": str,
    "verify_expected_output_npy": str, "verify_save_full_context": bool, "verify_save_rtlsim_waveforms": bool,
    "stitched_ip_gen_dcp": bool, "signature": list, "mvau_wwidth_max": int, "standalone_thresholds": bool,
    "minimize_bit_width": bool, "board": str, "shell_flow_type": str, "fpga_part": str,
    "auto_fifo_depths": bool, "split_large_fifos": bool, "auto_fifo_strategy": str, "force_python_rtlsim": bool,
    "large_fifo_mem_style": str, "hls_clk_period_ns": float, "default_swg_exception": bool,
    "vitis_platform": str, "vitis_floorplan_file": str, "vitis_opt_strategy": str,
    "save_intermediate_models": bool, "enable_hw_debug": bool, "enable_build_pdb_debug": bool,
    "verbose": bool, "start_step": str, "stop_step": str, "max_multithreshold_bit_width": int,
    "rtlsim_batch_size": int, "rtlsim_use_vivado_comps": bool, "steps": list,
    "specialize_layers_config_file": str,
}
FINN_REQUIRED = {"output_dir", "synth_clk_period_ns", "generate_outputs"}
FINN_OUTPUT_KINDS = {"estimate_reports", "stitched_ip", "out_of_context_synth", "rtlsim_performance", "bitfile",
                     "pynq_driver", "deployment_package"}
FINN_BOARDS = {"Pynq-Z1": "xc7z020clg400-1", "Pynq-Z2": "xc7z020clg400-1", "Ultra96": "xczu3eg-sbva484-1-e",
               "Ultra96-V2": "xczu3eg-sbva484-1-i", "ZCU104": "xczu7ev-ffvc1156-2-e",
               "ZCU102": "xczu9eg-ffvb1156-2-e", "KV260_SOM": "xck26-sfvc784-2LV-c"}
FOLDING_ATTR_TYPES = {"PE": int, "SIMD": int, "ram_style": str, "resType": str, "mem_mode": str,
                      "runtime_writeable_weights": int, "parallel_window": int, "depth": int, "impl_style": str}
HW = "codesign.dataflow.ops"


def qonnx_model(path: Path) -> Path:
    """A tiny QONNX model (Quant -> MatMul with Quant weights -> Quant), as brevitas exports them."""
    def q(inp, out, scale, bits, signed, name):
        return helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                                domain="qonnx.custom_op.general", signed=signed, narrow=0,
                                rounding_mode="ROUND", name=name), [
            numpy_helper.from_array(np.float32(scale), f"{name}_s"),
            numpy_helper.from_array(np.float32(0), f"{name}_z"),
            numpy_helper.from_array(np.float32(bits), f"{name}_b")]
    n0, i0 = q("x", "xq", 1 / 255, 8, 0, "Quant_0")
    n1, i1 = q("w", "wq", 0.5, 2, 1, "Quant_1")
    n2, i2 = q("y", "out", 0.25, 2, 0, "Quant_2")
    mm = helper.make_node("MatMul", ["xq", "wq"], ["y"], name="MatMul_0")
    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "w")
    g = helper.make_graph([n0, n1, mm, n2], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], initializer=[w] + i0 + i1 + i2)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def build_with_folding(root: Path) -> Path:
    """A build folder's dataflow.onnx (HW chain of a small CNN) and folding_config.json, our names."""
    order = [("conv0_swg", "SlidingWindow", {"SIMD": 3}),
             ("conv0", "MVAU", {"PE": 16, "SIMD": 3, "ram_style": "block", "resType": "lut", "mem_mode": "internal_embedded"}),
             ("pool0", "StreamingMaxPool", {"PE": 4}),
             ("fc0", "MVAU", {"PE": 4, "SIMD": 8, "ram_style": "auto"}),
             ("fifo0", "StreamingFIFO", {"depth": 32}),
             ("top1", "LabelSelect", {"PE": 1})]
    nodes, prev = [], "x"
    for i, (name, op, _) in enumerate(order):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], domain=HW, name=name))
        prev = f"t{i}"
    g = helper.make_graph(nodes, "df", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 1])])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(g), str(root / "dataflow.onnx"))
    # Our folding file lists nodes out of graph order and carries a non-FINN key (cycles).
    folding = {"Defaults": {}}
    for name, _, attrs in reversed(order):
        folding[name] = dict(attrs, cycles_estimate=123)
    (root / "folding_config.json").write_text(json.dumps(folding))
    return root / "folding_config.json"


def validate_finn_cfg(cfg: dict) -> None:
    unknown = set(cfg) - set(FINN_CFG_FIELDS)
    assert not unknown, f"fields FINN does not know: {unknown}"
    assert FINN_REQUIRED <= set(cfg)
    for k, v in cfg.items():
        assert isinstance(v, FINN_CFG_FIELDS[k]) and not (FINN_CFG_FIELDS[k] is int and isinstance(v, bool)), (k, v)
    assert set(cfg["generate_outputs"]) <= FINN_OUTPUT_KINDS
    assert cfg["shell_flow_type"] in ("vivado_zynq", "vitis_alveo")
    assert FINN_BOARDS[cfg["board"]] == cfg["fpga_part"]


def validate_finn_folding(folding: dict) -> None:
    assert isinstance(folding.get("Defaults"), dict)
    for name, attrs in folding.items():
        if name == "Defaults":
            continue
        assert re.match(r"^(MVAU|Thresholding|ConvolutionInputGenerator|StreamingMaxPool|Pool|FMPadding|LabelSelect|"
                        r"StreamingDataWidthConverter|StreamingFIFO)(_hls|_rtl)?_\d+$", name), name
        for k, v in attrs.items():
            assert isinstance(v, FOLDING_ATTR_TYPES[k]), (name, k, v)


def test_finn_build_dir_validates(tmp_path):
    model = qonnx_model(tmp_path / "model.onnx")
    fold = build_with_folding(tmp_path / "build")
    out = finn.write_finn_build_dir(model, tmp_path / "finn_build", "Pynq-Z2", 10.0, target_fps=100000, folding=fold)
    assert onnx.load(str(out / "model.onnx")) == onnx.load(str(model))
    cfg = json.loads((out / "dataflow_build_config.json").read_text())
    validate_finn_cfg(cfg)
    assert cfg["board"] == "Pynq-Z2" and cfg["fpga_part"] == "xc7z020clg400-1"
    assert cfg["synth_clk_period_ns"] == 10.0 and cfg["target_fps"] == 100000
    assert cfg["generate_outputs"] == ["estimate_reports", "stitched_ip", "rtlsim_performance", "bitfile",
                                       "pynq_driver", "deployment_package"]
    assert cfg["mvau_wwidth_max"] == 36 and cfg["auto_fifo_depths"] is True and cfg["save_intermediate_models"] is True
    assert (out / cfg["folding_config_file"]).is_file()
    folding = json.loads((out / "folding_config.json").read_text())
    validate_finn_folding(folding)
    # Graph order decides FINN's numbering, per FINN op type; non-FINN keys are dropped.
    assert folding["MVAU_0"] == {"PE": 16, "SIMD": 3, "ram_style": "block", "resType": "lut",
                                 "mem_mode": "internal_embedded"}
    assert folding["MVAU_hls_1"] == folding["MVAU_rtl_1"] == folding["MVAU_1"] == {"PE": 4, "SIMD": 8, "ram_style": "auto"}
    assert folding["ConvolutionInputGenerator_rtl_0"] == {"SIMD": 3}
    # FINN+ lowers a max pool to a sliding window (SIMD = our PE) + Pool: both take a number in order.
    assert folding["ConvolutionInputGenerator_rtl_1"] == {"SIMD": 4} and folding["Pool_hls_0"] == {"PE": 4}
    assert not any(k.startswith("StreamingMaxPool") for k in folding)
    assert folding["LabelSelect_hls_0"] == {"PE": 1}
    assert not any(k.startswith("StreamingFIFO") for k in folding)  # FINN sizes its own FIFOs
    name_map = json.loads((out / "folding_name_map.json").read_text())
    assert name_map["fc0"] == ["MVAU_1", "MVAU_hls_1", "MVAU_rtl_1"] and "fifo0" not in name_map
    build_py = (out / "build.py").read_text()
    compile(build_py, "build.py", "exec")
    assert "import build_dataflow_cfg" in build_py and "import build_dataflow_directory" not in build_py  # FINN+ 1.6.1


def test_finn_ultrascale_and_dict_folding(tmp_path):
    model = qonnx_model(tmp_path / "model.onnx")
    out = finn.write_finn_build_dir(model, tmp_path / "f", "KV260", 5.0,
                                    folding={"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 4}, "MVAU_1": {"PE": 1, "SIMD": 2}})
    cfg = json.loads((out / "dataflow_build_config.json").read_text())
    validate_finn_cfg(cfg)
    assert cfg["board"] == "KV260_SOM" and cfg["fpga_part"] == "xck26-sfvc784-2LV-c" and "target_fps" not in cfg
    folding = json.loads((out / "folding_config.json").read_text())
    validate_finn_folding(folding)
    assert folding["MVAU_1"] == {"PE": 1, "SIMD": 2}


def test_finn_target_fps_only(tmp_path):
    model = qonnx_model(tmp_path / "model.onnx")
    out = finn.write_finn_build_dir(model, tmp_path / "f", "ZCU104", 5.0, target_fps=5000)
    cfg = json.loads((out / "dataflow_build_config.json").read_text())
    validate_finn_cfg(cfg)
    assert "folding_config_file" not in cfg and not (out / "folding_config.json").exists()


def test_finn_bad_inputs(tmp_path):
    model = qonnx_model(tmp_path / "model.onnx")
    with pytest.raises(CodesignError, match="known boards"):
        finn.write_finn_build_dir(model, tmp_path / "f", "Arty", 10.0, target_fps=1)
    with pytest.raises(CodesignError, match="codesign export"):
        finn.write_finn_build_dir(tmp_path / "none.onnx", tmp_path / "f", "Pynq-Z2", 10.0, target_fps=1)
    with pytest.raises(CodesignError, match="folding .* or a target FPS"):
        finn.write_finn_build_dir(model, tmp_path / "f", "Pynq-Z2", 10.0)
    with pytest.raises(CodesignError, match="out of range"):
        finn.write_finn_build_dir(model, tmp_path / "f", "Pynq-Z2", 0.0, target_fps=1)


def test_finn_run_without_finn_env_says_setup(tmp_path):
    from codesign.backends.finn_plus import FinnConfig

    model = qonnx_model(tmp_path / "model.onnx")
    out = finn.write_finn_build_dir(model, tmp_path / "f", "Pynq-Z2", 10.0, target_fps=1000)
    with pytest.raises(ToolMissingError, match=r"FINN\+ environment not found .*setup_finn.sh"):
        finn.run_finn_build(out, config=FinnConfig.from_env(tmp_path / "no-venv" / "bin" / "python"))
    assert "finn build dataflow_build_config.json model.onnx" in finn.finn_command_hint(out)


def test_collect_reports_and_check_applied_folding(tmp_path):
    rep = tmp_path / "out" / "report"
    rep.mkdir(parents=True)
    (rep / "estimate_layer_cycles.json").write_text(json.dumps({"MVAU_hls_0": 64}))
    copied = finn.collect_reports(tmp_path / "out", tmp_path / "build" / "report" / "finn")
    assert [p.name for p in copied] == ["estimate_layer_cycles.json"]
    # FINN's folded model names: MVAU_hls_0 exists, our second MVAU has no counterpart.
    g = helper.make_graph([helper.make_node("MVAU_hls", ["a"], ["b"], name="MVAU_hls_0")], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "folded.onnx"))
    folding, _ = finn.translate_folding({"MVAU_0": {"PE": 1}, "MVAU_1": {"PE": 2}})
    assert finn.check_applied_folding(tmp_path / "folded.onnx", folding) == ["MVAU_1"]


def test_cli_finn(tmp_path, caplog):
    import argparse

    from codesign.commands import deploy

    model = qonnx_model(tmp_path / "model.onnx")
    parser = argparse.ArgumentParser()
    deploy.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finn", str(model), "--board", "Pynq-Z2", "--out", str(tmp_path / "fb"),
                              "--target-fps", "1000"])
    with caplog.at_level("INFO"):
        assert args.func(args) == 0
    assert "finn build dataflow_build_config.json model.onnx" in caplog.text
