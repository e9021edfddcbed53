"""Whole-network RTL simulation: Brevitas model -> QONNX -> compiled dataflow graph -> Verilog ->
Verilator, bit-exact against execute_onnx of the compiled graph on real Fashion-MNIST images,
and the measured steady-state cycles per frame against the analytical estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codesign.dataflow.build import BuildConfig, build_dataflow
from codesign.hw.rtlsim import rtlsim_build
from dataflow_helpers import calibrate_and_randomise_bn, export, images
from test_dataflow_lowering import cnn, mlp


def _compile(model, tmp_path, shape, target_fps):
    x = images(64, shape)
    calibrate_and_randomise_bn(model, x)
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, target_fps=target_fps))
    return build


def _check(build, n, **kw):
    perf = rtlsim_build(build, images(n, (1, 28, 28), offset=100), **kw)
    rep = json.loads((build / "report" / "rtlsim_performance.json").read_text())
    for key in ("cycles", "runtime[ms]", "throughput[images/s]", "fclk[mhz]", "N", "latency_cycles",
                "stable_throughput[images/s]"):
        assert key in rep
    assert rep["N"] == n and perf["bit_exact_frames"] == n
    return perf


@pytest.mark.slow
def test_tfc_mixed_bits_100_images(tmp_path):
    """TFC-size MLP (784-64-64-64-10), weights 2/3/4/2 bits, activations 2/3/4 bits."""
    build = _compile(mlp([2, 3, 4, 2], [2, 3, 4], hidden=64), tmp_path, (1, 28, 28), target_fps=20000)
    perf = _check(build, 100)
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.02, perf


@pytest.mark.slow
def test_cnn_mixed_bits_100_images(tmp_path):
    """Small CNV-style CNN (pad, conv, pool, strided conv, FCs; SWG/FMPadding/MaxPool/DWC/FIFO)."""
    build = _compile(cnn([4, 2, 3, 2], [3, 2, 4]), tmp_path, (1, 28, 28), target_fps=3000)
    perf = _check(build, 100)
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.02, perf


def test_mlp_backpressure_and_mismatch_report(tmp_path):
    """Random bubbles/backpressure keep the network bit-exact; a corrupted weight file is
    reported with the first mismatching frame and element."""
    build = _compile(mlp([2, 2], [2], hidden=16), tmp_path, (1, 28, 28), target_fps=50000)
    _check(build, 12, backpressure=True, seed=5)
    # corrupt the last MVAU's weights in a copy of the graph, simulate that RTL, and compare
    # against the golden of the intact graph: the report must name the first differing element
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.dataflow.compiler import hw_input_tensor, hw_output_tensor
    from codesign.hw.rtl import render_model
    from codesign.hw.rtlsim import _golden_context, first_mismatch, run_frames

    m = ModelWrapper(str(build / "dataflow.onnx"))
    last = [n for n in m.graph.node if n.op_type == "MVAU"][-1]
    W = m.get_initializer(last.input[1]).copy()
    W[:, [3, 4]] = W[:, [4, 3]]  # swap two output channels: same value ranges, different outputs
    bad = ModelWrapper(str(build / "dataflow.onnx"))
    bad.set_initializer(last.input[1], W)
    design = render_model(bad, tmp_path / "rtl_bad")
    xs = images(4, (1, 28, 28))
    x_int, y = _golden_context(m, xs, hw_input_tensor(m), hw_output_tensor(m))
    got = run_frames(design, x_int).outputs
    exp = y.reshape(4, -1)
    msg = first_mismatch(exp, got)
    f, i = np.argwhere(exp != got)[0]
    assert msg is not None and f"first at frame {f}, index {i}: expected {exp[f, i]}, got {got[f, i]}" in msg, msg
    assert i in (3, 4)


@pytest.mark.slow
def test_per_node_mode(tmp_path):
    """Every HW node alone, fed its execute_onnx input, matches its execute_onnx output, and
    sustains the estimated cycles per frame."""
    from codesign.hw.rtlsim import rtlsim_nodes

    build = _compile(mlp([3, 2], [2], hidden=16), tmp_path, (1, 28, 28), target_fps=50000)
    res = rtlsim_nodes(build, images(6, (1, 28, 28)), backpressure=False)
    assert {r["op_type"] for r in res.values()} >= {"MVAU"}
    for name, r in res.items():
        assert r["cycles_per_frame"] == r["exp_cycles"], (name, r)


def test_simd_not_dividing_window_channels_bit_exact(tmp_path):
    """FINN's SetFolding lets an MVAU's SIMD divide only MW: MVAU_1 (MW 72 = 9 x 8 channels) at
    SIMD 12 is fed by its sliding window at SIMD 8 through a width converter (8 -> 12 elements
    per word), and the max pool takes all 8 channels per word (FINN's 2-D pool). The whole network
    stays bit-exact in Verilator, at the estimated cycles per frame."""
    model = cnn([4, 2, 3, 2], [3, 2, 4])
    x = images(64, (1, 28, 28))
    calibrate_and_randomise_bn(model, x)
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    folding = {"MVAU_0": {"PE": 8, "SIMD": 9}, "SlidingWindow_1": {"SIMD": 8}, "FMPadding_1": {"SIMD": 8},
               "MVAU_1": {"PE": 4, "SIMD": 12}, "MVAU_2": {"PE": 4, "SIMD": 12}}
    res = build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, folding=folding))
    ops = [n.op_type for n in res.model.graph.node]
    i = ops.index("MVAU", ops.index("SlidingWindow", ops.index("StreamingMaxPool")))
    assert "StreamingDataWidthConverter" in ops[i - 2:i]  # window (8) -> converter -> MVAU_1 (12)
    perf = _check(build, 6)
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.05, perf
