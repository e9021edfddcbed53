"""FIFO sizing from the ops' cycle models: a depth that throttles the chain is detected, the
sized depths restore the estimated throughput (model and Verilator rtlsim)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from codesign.dataflow.compiler import insert_fifos, insert_width_converters
from codesign.dataflow.cost import model_cost
from codesign.dataflow.fifo_sizing import (SRL_DEPTH, Stage, check_fifos, chain_stages, minimal_depths,
                                           required_depths, simulate, size_fifos)
from codesign.dataflow.folding import extract_folding_config
from codesign.dataflow.ops import make_hw_node, op_class

RNG = np.random.default_rng(7)


def _chain() -> ModelWrapper:
    """MVAU (8x8 pixels, 2 channels, NF=2) -> sliding window 3x3 -> MVAU (NF=4): the window's
    bursty input side and the second MVAU's replay make depth-2 FIFOs throttle the chain."""
    W0 = RNG.integers(-2, 2, size=(9, 2)).astype(np.float32)
    T0 = np.sort(RNG.integers(-4, 5, size=(2, 3)), axis=1).astype(np.float32)
    W1 = RNG.integers(-2, 2, size=(18, 4)).astype(np.float32)
    nodes = [
        make_hw_node("MVAU", ["x", "W0", "T0"], ["a"], "MVAU_0", MW=9, MH=2, PE=1, SIMD=1, inputDataType="UINT2",
                     weightDataType="INT2", outputDataType="UINT2", noActivation=0, numInputVectors=[1, 8, 8]),
        make_hw_node("SlidingWindow", ["a"], ["b"], "SlidingWindow_0", ConvKernelDim=[3, 3], IFMChannels=2,
                     IFMDim=[8, 8], OFMDim=[6, 6], SIMD=1, Stride=[1, 1], Dilation=[1, 1], inputDataType="UINT2",
                     outputDataType="UINT2"),
        make_hw_node("MVAU", ["b", "W1"], ["y"], "MVAU_1", MW=18, MH=4, PE=1, SIMD=1, inputDataType="UINT2",
                     weightDataType="INT2", outputDataType="INT8", noActivation=1, numInputVectors=[1, 6, 6]),
    ]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 4])])
    m = ModelWrapper(qonnx_make_model(g))
    for name, v in (("W0", W0), ("T0", T0), ("W1", W1)):
        m.set_initializer(name, v)
    m.set_tensor_datatype("x", DataType["UINT2"])
    m.set_tensor_datatype("a", DataType["UINT2"])
    m.set_tensor_datatype("b", DataType["UINT2"])
    m.set_tensor_datatype("y", DataType["INT8"])
    m.set_tensor_datatype("W0", DataType["INT2"])
    m.set_tensor_datatype("W1", DataType["INT2"])
    from qonnx.transformation.infer_shapes import InferShapes

    return m.transform(InferShapes())


def _scaled(s: Stage) -> tuple:
    """The same op on a 14x14 input map (12x12 windows): its io pattern from the op class."""
    p = {"MVAU_0": dict(MW=9, MH=2, PE=1, SIMD=1, Nv=14 * 14), "MVAU_1": dict(MW=18, MH=4, PE=1, SIMD=1, Nv=12 * 12),
         "SlidingWindow_0": dict(C=2, SIMD=1, IH=14, IW=14, OH=12, OW=12, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1)}[s.name]
    p.update(wbits=2, abits=2, obits=2, acc_bits=8, n_thr=3, ram_style="auto", resType="lut", xnor=0)
    cls = op_class(s.op_type)
    n, cons, prod = cls.io_pattern(p)
    return n, cons, prod, cls.input_buffer_words(p), int(cls.cycles(p))


def _with_fifos(fixed: int | None):
    m = insert_width_converters(_chain())
    sizing = size_fifos(m, fixed)
    m = insert_fifos(m)
    return m, check_fifos(m, sizing)


def test_io_patterns_of_the_chain_follow_the_cycle_model():
    stages, depths, _ = chain_stages(_chain())
    assert [s.op_type for s in stages] == ["MVAU", "SlidingWindow", "MVAU"] and depths == [None, None]
    mc = model_cost(_chain())
    for s in stages:
        assert s.n_steps == s.cycles == mc["nodes"][s.name]["cycles"]
        assert np.all(np.diff(s.cons) > 0) and np.all(np.diff(s.prod) > 0)  # one word per clock
    assert [len(s.prod) for s in stages[:-1]] == [len(s.cons) for s in stages[1:]]


def test_depth_two_throttles_and_is_reported(caplog):
    est = model_cost(_chain())["max_cycles"]
    with caplog.at_level(logging.WARNING):
        m, res = _with_fifos(2)
    assert res.mode == "fixed" and res.throttled
    assert res.simulated_cycles > est * 1.05, (res.simulated_cycles, est)
    assert res.shallow and "too shallow" in caplog.text
    # the FIFO nodes carry the fixed depth
    assert {getCustomOp(n).get_nodeattr("depth") for n in m.graph.node if n.op_type == "StreamingFIFO"} == {2}


def test_sized_depths_reach_the_estimate_and_land_in_nodes_json_and_cost():
    est = model_cost(_chain())["max_cycles"]
    m, res = _with_fifos(None)
    assert res.mode == "analytic" and not res.throttled
    assert res.simulated_cycles == pytest.approx(est, rel=0.005)
    fifo_depths = [getCustomOp(n).get_nodeattr("depth") for n in m.graph.node if n.op_type == "StreamingFIFO"]
    assert max(fifo_depths) > 2 and fifo_depths == [res.required[k] for k in ("MVAU_0", "SlidingWindow_0")]
    cfg = extract_folding_config(m)  # FINN's names, on the compute nodes; the FIFOs themselves left out
    assert cfg["MVAU_0"]["outFIFODepths"] == [fifo_depths[0]] and cfg["SlidingWindow_0"]["inFIFODepths"] == [fifo_depths[0]]
    assert cfg["MVAU_1"]["inFIFODepths"] == [fifo_depths[1]] and not any("FIFO" in k for k in cfg)
    # deeper FIFOs cost more: the FIFO op's resource model sees the depth
    shallow, _ = _with_fifos(2)
    f_sized = sum(c["FF"] + c["LUT"] for k, c in model_cost(m)["nodes"].items() if "FIFO" in k)
    f_shallow = sum(c["FF"] + c["LUT"] for k, c in model_cost(shallow)["nodes"].items() if "FIFO" in k)
    assert f_sized > f_shallow


def test_sizing_is_sufficient_and_minimal_on_op_patterns():
    """The as-late-as-possible occupancy always sustains the bottleneck; a FIFO that would need
    block RAM is shrunk until one word less would slow the chain."""
    stages, _, _ = chain_stages(insert_width_converters(_chain()))
    need, free = required_depths(stages)
    assert simulate(stages, need).period == pytest.approx(free.period)
    assert simulate(stages, [2] * len(need)).period > free.period * 1.05  # the shallow design is slower
    # a longer frame (14x14 map) needs more than one SRL32 in front of the window
    big = [Stage(s.name, s.op_type, *_scaled(s), out_width=1024) for s in stages]  # wide: BRAM FIFOs
    need_b, free_b = required_depths(big)
    best = minimal_depths(big)
    assert max(need_b) > SRL_DEPTH and simulate(big, best).period <= free_b.period * 1.005
    assert best != need_b  # something was shrunk
    for i, d in enumerate(best):
        if d > SRL_DEPTH and d * 1024 > 16384:
            smaller = best[:i] + [d - 1] + best[i + 1:]
            assert simulate(big, smaller).period > free_b.period * 1.005
        assert d <= need_b[i]


def test_word_count_mismatch_is_one_clear_error():
    from codesign.errors import CodesignError

    a = Stage("a", "X", 4, np.arange(4), np.arange(4))
    b = Stage("b", "Y", 2, np.arange(2), np.arange(2))
    with pytest.raises(CodesignError, match="width converters"):
        simulate([a, b], [2])


def test_build_reports_fifo_fields(tmp_path):
    from codesign.dataflow.build import BuildConfig, build_dataflow

    cfg = {"MVAU_0": {"PE": 1, "SIMD": 1}, "SlidingWindow_0": {"SIMD": 1}, "MVAU_1": {"PE": 1, "SIMD": 1}}
    res = build_dataflow(_chain(), BuildConfig(tmp_path / "B", folding=cfg, fifo_depth=2))
    perf = json.loads((tmp_path / "B/report/estimate_network_performance.json").read_text())
    assert perf["fifo_sizing"] == "fixed" and perf["fifo_throttled"] is True
    assert perf["fifo_simulated_cycles"] > perf["max_cycles"]
    res = build_dataflow(_chain(), BuildConfig(tmp_path / "C", folding=cfg))
    perf = json.loads((tmp_path / "C/report/estimate_network_performance.json").read_text())
    assert perf["fifo_sizing"] == "analytic" and perf["fifo_throttled"] is False
    assert perf["fifo_simulated_cycles"] == pytest.approx(perf["max_cycles"], rel=0.005)
    assert res.fifo["fifo_depths"] == perf["fifo_depths"]
    # first frame out after at least the slowest node's frame, at most the sum of all nodes' frames
    assert perf["max_cycles"] <= perf["fifo_simulated_latency_cycles"] <= perf["critical_path_cycles"]


@pytest.mark.slow
def test_rtlsim_steady_state_matches_the_estimate_with_sized_fifos(tmp_path):
    """Verilator: the sized design runs within 2% of the estimated cycles per frame, the
    depth-2 design measurably slower, as the model says (the model is conservative: the RTL's
    output registers add a little slack it does not count)."""
    from codesign.hw.rtl import render_model
    from codesign.hw.rtlsim import run_frames

    est = model_cost(_chain())["max_cycles"]
    x = RNG.integers(0, 4, size=(8, 8 * 8 * 9))
    measured = {}
    for label, fixed in (("sized", None), ("d2", 2)):
        m, res = _with_fifos(fixed)
        design = render_model(m, tmp_path / label)
        run = run_frames(design, x)
        measured[label] = (run.performance(100.0)["stable_cycles_per_frame"], res.simulated_cycles)
    sized, d2 = measured["sized"][0], measured["d2"][0]
    assert abs(sized / est - 1) <= 0.02, measured      # measured: 2592 = the estimate exactly
    assert d2 > sized * 1.01, measured                   # measured: 2641 (+1.9%)
    assert measured["d2"][1] >= d2, measured             # the model never promises more than the RTL does
