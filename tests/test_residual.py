"""Branching graphs (issue 13, first slice): the fork (DuplicateStreams) and the residual join
(AddStreams) through the whole flow. Brevitas residual blocks (FC and convolutional, a shared
QuantIdentity before the add as in FINN's residual examples) compile bit-exactly after every
lowering step; the fork/join RTL is bit-exact under random backpressure; the stitched network
is bit-exact in Verilator on real Fashion-MNIST images at the estimated cycles per frame; the
bypass FIFO is sized from the cycle models, and one too shallow to let the branches reconverge
is refused before any simulation, naming the FIFO and the depth it needs."""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import onnx.helper as oh
import pytest
import torch
from brevitas.quant import Int8ActPerTensorFloat
from onnx import TensorProto
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model
from torch import nn

from codesign.dataflow.build import BuildConfig, build_dataflow
from codesign.dataflow.compiler import hw_nodes, lower_to_hw
from codesign.dataflow.fast import FastNet
from codesign.dataflow.fifo_sizing import (Edge, FifoDeadlockError, Stage, check_deadlock, find_deadlock,
                                           required_depths, simulate)
from codesign.errors import UnsupportedError
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.rtlsim import first_mismatch, rtlsim_build, run_frames
from dataflow_helpers import calibrate_and_randomise_bn, export, images
from test_dataflow_lowering import _act, _compile_and_check, _inp, _wq


def _join_quant() -> nn.Module:
    """The one quantizer both branches pass through right before the add (common scale)."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=6, return_quant_tensor=False)


class FcResidual(nn.Module):
    """fc0-BN-ReLU -> [fc1-BN-ReLU-fc2-BN] + identity -> ReLU -> fc3 (784-h-h-h-10)."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.inp, self.flat = _inp(), nn.Flatten()
        self.fc0, self.bn0, self.a0 = qnn.QuantLinear(784, h, bias=False, **_wq(4)), nn.BatchNorm1d(h), _act(4)
        self.fc1, self.bn1, self.a1 = qnn.QuantLinear(h, h, bias=False, **_wq(4)), nn.BatchNorm1d(h), _act(4)
        self.fc2, self.bn2 = qnn.QuantLinear(h, h, bias=False, **_wq(4)), nn.BatchNorm1d(h)
        self.join, self.a2 = _join_quant(), _act(4)
        self.fc3 = qnn.QuantLinear(h, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.fc0(self.flat(self.inp(x)))))
        y = self.bn2(self.fc2(self.a1(self.bn1(self.fc1(x)))))
        return self.fc3(self.a2(self.join(y) + self.join(x)))


class ConvResidual(nn.Module):
    """conv0-BN-ReLU -> [conv1-BN-ReLU-conv2-BN] + identity -> ReLU -> flatten -> fc (3x3, pad 1)."""

    def __init__(self, c: int = 4, side: int = 8):
        super().__init__()
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = qnn.QuantConv2d(1, c, 3, padding=1, bias=False, **_wq(4)), nn.BatchNorm2d(c), _act(4)
        self.c1, self.bn1, self.a1 = qnn.QuantConv2d(c, c, 3, padding=1, bias=False, **_wq(4)), nn.BatchNorm2d(c), _act(4)
        self.c2, self.bn2 = qnn.QuantConv2d(c, c, 3, padding=1, bias=False, **_wq(3)), nn.BatchNorm2d(c)
        self.join, self.a2, self.flat = _join_quant(), _act(3), nn.Flatten()
        self.fc = qnn.QuantLinear(c * side * side, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.c0(self.inp(x))))
        y = self.bn2(self.c2(self.a1(self.bn1(self.c1(x)))))
        return self.fc(self.flat(self.a2(self.join(y) + self.join(x))))


def _branch_nodes(m: ModelWrapper):
    hw = hw_nodes(m)
    forks = [n for n in hw if n.op_type == "DuplicateStreams"]
    joins = [n for n in hw if n.op_type == "AddStreams"]
    return hw, forks, joins


def _check_join(m: ModelWrapper) -> None:
    """One fork, one join; the join's output datatype is exactly the range of the sum."""
    _, forks, joins = _branch_nodes(m)
    assert len(forks) == 1 and len(joins) == 1
    j = getCustomOp(joins[0])
    da, db = (m.get_tensor_datatype(t) for t in joins[0].input)
    odt = j.get_output_datatype()
    assert [da.name, db.name] == list(j.get_nodeattr("inputDataTypes"))
    lo, hi = da.min() + db.min(), da.max() + db.max()
    assert odt.min() <= lo and hi <= odt.max()
    assert not (odt.signed() and odt.bitwidth() > 1 and DataType[f"INT{odt.bitwidth() - 1}"].allowed(lo)
                and DataType[f"INT{odt.bitwidth() - 1}"].allowed(hi)), "the sum's datatype is not the smallest"
    fork_in = forks[0].input[0]
    assert m.get_tensor_datatype(fork_in) == getCustomOp(forks[0]).get_input_datatype()


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_residual_block_bit_exact_every_step(tmp_path, kind):
    """The QONNX model's integer outputs exactly, after every lowering step, on real images."""
    torch.manual_seed(1)
    model, shape = (FcResidual(), (1, 28, 28)) if kind == "fc" else (ConvResidual(), (1, 8, 8))
    _, compiled = _compile_and_check(model, tmp_path, n=16, shape=shape, per_step=True)
    _check_join(compiled)


def test_joins_without_a_common_scale_or_of_other_ops_are_refused(tmp_path):
    """Branches at different scales (a separate quantizer per branch) are refused naming the Add
    and both scales; a Mul of two streams is refused naming the Mul (one line each)."""

    class TwoScales(FcResidual):
        def __init__(self):
            super().__init__()
            self.join_b = _join_quant()

        def forward(self, x):
            x = self.a0(self.bn0(self.fc0(self.flat(self.inp(x)))))
            y = self.bn2(self.fc2(self.a1(self.bn1(self.fc1(x)))))
            return self.fc3(self.a2(self.join(y) + self.join_b(x)))

    torch.manual_seed(0)
    m = TwoScales()
    x = images(32)
    calibrate_and_randomise_bn(m, x)
    with torch.no_grad():  # make the two quantizers' scales differ for sure
        m(torch.from_numpy(x))
    q = export(m, x, tmp_path / "two.onnx")
    with pytest.raises(UnsupportedError, match=r"node '[^']*' \(op Add\): the two branches reach the join at "
                                               r"different scales \(\S+ and \S+\)") as e:
        lower_to_hw(q)
    assert "\n" not in str(e.value) and "shared QuantIdentity" in str(e.value)

    scale = oh.make_tensor("s", TensorProto.FLOAT, [], [1 / 255])
    zero = oh.make_tensor("z", TensorProto.FLOAT, [], [0.0])
    bits = oh.make_tensor("b", TensorProto.FLOAT, [], [8.0])
    nodes = [oh.make_node("Quant", ["x", "s", "z", "b"], ["q"], name="inq", domain="qonnx.custom_op.general",
                          signed=0, narrow=0, rounding_mode="ROUND"),
             oh.make_node("Relu", ["q"], ["r"], name="relu"),
             oh.make_node("Mul", ["q", "r"], ["y"], name="gate")]
    g = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                      [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[scale, zero, bits])
    with pytest.raises(UnsupportedError, match=r"node 'gate' \(op Mul\): an elementwise Mul of two streams"):
        lower_to_hw(ModelWrapper(qonnx_make_model(g)))


def test_fork_join_rtl_backpressure(tmp_path):
    """A fork whose two streams reconverge in a join (one branch through a threshold node, the
    other through a FIFO), INT4 + UINT2 -> INT5: bit-exact against numpy (x + thr(x)) under
    random input bubbles and output stalls, and under long output stalls."""
    rng = np.random.default_rng(5)
    C, PE, nv = 8, 2, 6
    T = np.sort(rng.integers(-8, 8, size=(C, 3)), axis=1).astype(np.float64)
    x = rng.integers(-8, 8, size=(5, nv, C))
    thr = (x[..., None] >= T[None, None]).sum(-1)
    specs = [
        HWNodeSpec("dup", "DuplicateStreams", dict(NumChannels=C, PE=PE, NumOutputStreams=2, inputDataType="INT4",
                                                    numInputVectors=[nv]), inputs=["x"], outputs=["a", "b"]),
        HWNodeSpec("thr", "Thresholding", dict(NumChannels=C, PE=PE, numSteps=3, inputDataType="INT4",
                                               outputDataType="UINT2", ActVal=0, numInputVectors=[nv]), {"T": T},
                   inputs=["a"], outputs=["t"]),
        HWNodeSpec("bypass", "StreamingFIFO", dict(depth=12, folded_shape=[nv, C // PE, PE], dataType="INT4"),
                   inputs=["b"], outputs=["c"]),
        HWNodeSpec("sum", "AddStreams", dict(NumChannels=C, PE=PE, inputDataTypes=["UINT2", "INT4"],
                                              outputDataType="INT5", numInputVectors=[nv]),
                   inputs=["t", "c"], outputs=["y"]),
    ]
    design = render_nodes(specs, tmp_path / "rtl")
    for seed, bp in ((1, dict(p_bubble=0.3, p_stall=0.4)), (2, dict(p_bubble=0.0, p_stall=0.85))):
        res = run_frames(design, x, seed=seed, **bp)
        assert first_mismatch((x + thr).reshape(5, -1), res.outputs) is None
    top = (tmp_path / "rtl" / "codesign_top.v").read_text()
    assert ".out1_V_TDATA(dup_out1_tdata)" in top and ".in1_V_TDATA(bypass_out_tdata)" in top


def _burst_stage(name: str, n: int) -> Stage:
    """Takes its n input words, then emits n words (like an MVAU that needs the whole vector)."""
    return Stage(name, "burst", 2 * n, np.arange(n), n + np.arange(n), cycles=2 * n)


def _flow_stage(name: str, n: int) -> Stage:
    return Stage(name, "flow", n, np.arange(n), np.arange(n), cycles=n)


def test_dag_fifo_model_deadlock_threshold():
    """Hand-reasoned fork/join: the long branch needs all n words before its first output, so
    the join can take word 0 only after the fork emitted word n-1; the bypass must hold n words
    (the join takes no word early). n-1 deadlocks, n runs, and the sized depths reach the
    bottleneck period (2n per frame, the burst stage)."""
    n = 8
    stages = [_flow_stage("fork", n), _burst_stage("branch", n), _flow_stage("join", n)]
    edges = [Edge(0, 1, 0, 0), Edge(0, 2, 1, 1), Edge(1, 2, 0, 0)]
    assert find_deadlock(stages, [2, n - 1, 2], edges=edges) is not None
    assert find_deadlock(stages, [2, n, 2], edges=edges) is None
    need, free = required_depths(stages, edges=edges)
    assert need[1] >= n and free.period == 2 * n
    assert simulate(stages, need, edges=edges).period == free.period


@pytest.fixture(scope="module")
def fc_source(tmp_path_factory):
    d = tmp_path_factory.mktemp("fc_res")
    torch.manual_seed(2)
    m = FcResidual()
    x = images(64)
    calibrate_and_randomise_bn(m, x)
    export(m, x, d / "model.onnx")
    return d / "model.onnx"


def _bypass_fifo(m: ModelWrapper):
    """The FIFO on the fork's output that feeds the short (bypass) branch: the deeper one."""
    _, forks, _ = _branch_nodes(m)
    fifos = [m.find_consumer(t) for t in forks[0].output]
    assert all(f.op_type == "StreamingFIFO" for f in fifos)
    return max(fifos, key=lambda f: getCustomOp(f).get_nodeattr("depth"))


def test_shallow_bypass_fifo_detected_before_simulation(tmp_path, fc_source):
    """--fifo-depth 2 on a residual block deadlocks it: the build refuses in one line naming
    the FIFO and the depth it needs. One word less than that on the analytically sized design
    is refused the same way (by rtlsim before any Verilator build); at exactly that depth the
    RTL runs bit-exact under backpressure (the model's minimum is safe in the hardware)."""
    with pytest.raises(FifoDeadlockError, match=r"FIFO (StreamingFIFO_\d+) \(DuplicateStreams_0 -> \S+\) holds 2 "
                                                r"words, .* set its depth >= (\d+)") as e:
        build_dataflow(str(fc_source), BuildConfig(output_dir=tmp_path / "shallow", folding={}, fifo_depth=2))
    msg = str(e.value)
    assert "\n" not in msg
    need = int(msg.split("set its depth >= ")[1].split()[0])
    assert need > 2

    build = tmp_path / "BUILD"
    res = build_dataflow(str(fc_source), BuildConfig(output_dir=build, target_fps=50000))
    m = res.model
    fifo = _bypass_fifo(m)
    sized = getCustomOp(fifo).get_nodeattr("depth")
    assert sized >= need and fifo.name in msg
    assert res.fifo["fifo_required_depths"]["DuplicateStreams_0:out1"] == sized or \
        res.fifo["fifo_required_depths"]["DuplicateStreams_0"] == sized
    getCustomOp(fifo).set_nodeattr("depth", need - 1)
    with pytest.raises(FifoDeadlockError, match=rf"FIFO {fifo.name} .* holds {need - 1} words, .* >= {need}"):
        check_deadlock(m)
    m.save(str(build / "dataflow.onnx"))
    with pytest.raises(FifoDeadlockError):
        rtlsim_build(build, images(2))
    assert not (build / "rtl").exists()  # refused before rendering or building anything
    getCustomOp(fifo).set_nodeattr("depth", need)
    check_deadlock(m)
    m.save(str(build / "dataflow.onnx"))
    perf = rtlsim_build(build, images(6, offset=60), backpressure=True)
    assert perf["bit_exact_frames"] == 6 and perf["checked_against"] == ["dataflow.onnx", "source.onnx"]


def _longest_path(m: ModelWrapper, cost: dict) -> int:
    """Independent longest path: enumerate every input-to-output path of the HW graph."""
    hw = hw_nodes(m)
    readers = {}
    for n in hw:
        for t in n.input:
            readers.setdefault(t, []).append(n)

    def walk(n) -> int:
        c = cost["nodes"][n.name]
        nxt = [r for t in n.output for r in readers.get(t, [])]
        return c["cycles"] + c["pipeline_depth"] + max((walk(r) for r in nxt), default=0)

    return walk(hw[0])


def test_conv_residual_rtlsim_bit_exact_at_estimate(tmp_path):
    """The convolutional residual block, folded for a target rate, stitched and simulated in
    Verilator under random backpressure: bit-exact against the compiled graph and the source
    QONNX model on real images; steady-state cycles per frame within 2% of the estimate (the
    slowest node); the bypass FIFO holds more than the chain default (sized from the models);
    the critical path is the longer branch, not the sum over both."""
    torch.manual_seed(3)
    model = ConvResidual()
    x = images(64, (1, 8, 8))
    calibrate_and_randomise_bn(model, x)
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    res = build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, target_fps=20000))
    m = res.model
    assert getCustomOp(_bypass_fifo(m)).get_nodeattr("depth") > 2
    assert not res.fifo["fifo_throttled"] and res.fifo["fifo_simulated_cycles"] == res.performance["max_cycles"]
    cp = _longest_path(m, res.cost)
    assert res.performance["critical_path_cycles"] == cp
    assert cp < sum(c["cycles"] + c["pipeline_depth"] for c in res.cost["nodes"].values())
    fast = FastNet.from_model(m).evaluate()  # the vectorised search path agrees
    assert int(np.asarray(fast["critical_path_cycles"]).reshape(-1)[0]) == cp
    assert int(np.asarray(fast["max_cycles"]).reshape(-1)[0]) == res.performance["max_cycles"]
    perf = rtlsim_build(build, images(8, (1, 8, 8), offset=30), backpressure=True)
    assert perf["bit_exact_frames"] == 8 and perf["checked_against"] == ["dataflow.onnx", "source.onnx"]
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.02, perf


def test_fork_and_join_golden_in_an_onnx_graph():
    """The two ops' golden execution inside a qonnx graph built with onnx.helper (shape and
    datatype inference through the two-output fork included): y = x + x, exactly."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    from codesign.dataflow.ops import make_hw_node

    nodes = [make_hw_node("DuplicateStreams", ["x"], ["a", "b"], "fork", NumChannels=6, PE=3, NumOutputStreams=2,
                          inputDataType="INT3", numInputVectors=[1, 2, 2]),
             make_hw_node("AddStreams", ["a", "b"], ["y"], "join", NumChannels=6, PE=3,
                          inputDataTypes=["INT3", "INT3"], outputDataType="INT4", numInputVectors=[1, 2, 2])]
    g = oh.make_graph(nodes, "fj", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 6])],
                      [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 6])])
    m = ModelWrapper(qonnx_make_model(g))
    m.set_tensor_datatype("x", DataType["INT3"])
    m = m.transform(InferShapes()).transform(InferDataTypes())
    assert m.get_tensor_shape("b") == [1, 2, 2, 6] and m.get_tensor_datatype("b") == DataType["INT3"]
    assert m.get_tensor_datatype("y") == DataType["INT4"]
    x = np.random.default_rng(0).integers(-4, 4, size=(1, 2, 2, 6)).astype(np.float32)
    y = execute_onnx(m, {"x": x})["y"]
    np.testing.assert_array_equal(y, 2 * x)
    assert getCustomOp(nodes[0]).get_exp_cycles() == getCustomOp(nodes[1]).get_exp_cycles() == 8
