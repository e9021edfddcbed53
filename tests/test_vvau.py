"""The VVAU (depthwise conv unit): golden against torch's grouped conv, RTL in Verilator with
random backpressure at several foldings, the cycle model against rtlsim, and Yosys synthesis."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from codesign.dataflow import golden
from codesign.dataflow.ops.vvau import VVAU, folding_errors, vvau
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.rtlsim import first_mismatch, run_frames


def _rand(rng, dt, shape):
    bits = int(dt.lstrip("UINT"))
    if dt.startswith("U"):
        return rng.integers(0, 1 << bits, size=shape)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)


def test_golden_matches_torch_depthwise_conv():
    """vvau(sliding_window(x)) equals torch's conv2d with groups = channels (independent)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    C, kh, kw, s = 3, 3, 2, 2
    x = rng.integers(-4, 4, size=(2, 7, 6, C))
    w = rng.integers(-3, 3, size=(C, 1, kh, kw))
    win = golden.sliding_window(x, (kh, kw), (s, s))
    W = w[:, 0].transpose(1, 2, 0).reshape(kh * kw, C)  # (k, c), k in (kh, kw) order
    ours = vvau(win, W)
    ref = torch.nn.functional.conv2d(torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64),
                                     torch.tensor(w, dtype=torch.float64), stride=s, groups=C)
    assert np.array_equal(ours, ref.numpy().transpose(0, 2, 3, 1).round().astype(np.int64))


def test_folding_rules_name_the_problem():
    assert folding_errors(9, 4, 2, 1) == []
    assert folding_errors(9, 4, 4, 3) == []
    assert any("PE = Channels" in m for m in folding_errors(9, 4, 2, 3))
    assert any("SIMD=2" in m for m in folding_errors(9, 4, 4, 2))
    assert any("PE=3" in m for m in folding_errors(9, 4, 3, 1))


CASES = [
    # id, K, C, PE, SIMD, idt, wdt, odt, n_thr, act_val, resType, nv
    ("u2xi2_thr_p1s1", 9, 4, 1, 1, "UINT2", "INT2", "UINT2", 3, 0, "lut", [1, 2, 3]),
    ("i4xi4_noact_pe2", 6, 4, 2, 1, "INT4", "INT4", "INT10", 0, 0, "lut", [1, 3, 2]),
    ("u4xi3_signedact_simd3_dsp", 9, 2, 2, 3, "UINT4", "INT4", "INT3", 7, -4, "dsp", [1, 2, 2]),
    ("u2xi2_thr_cf1_simd1", 4, 3, 3, 1, "UINT2", "INT2", "UINT2", 3, 0, "lut", [1, 4, 1]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_vvau_rtl(tmp_path, case):
    cid, K, C, PE, SIMD, idt, wdt, odt, nthr, act, res, nv = case
    rng = np.random.default_rng(zlib.crc32(cid.encode()))
    x = _rand(rng, idt, (4, *nv[1:], K * C))
    W = _rand(rng, wdt, (K, C))
    acc = vvau(x, W)
    inits = {"W": W}
    exp = acc
    if nthr:
        T = np.sort(rng.integers(int(acc.min()) - 2, int(acc.max()) + 2, size=(C, nthr)), axis=1) - 0.5
        inits["T"] = T
        exp = vvau(x, W, T, act)
    attrs = dict(Channels=C, Kernel=[K, 1], KernelSize=K, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt,
                 outputDataType=odt, ActVal=act, noActivation=int(nthr == 0), numInputVectors=nv, resType=res)
    design = render_nodes([HWNodeSpec(f"dw {cid}", "VVAU", attrs, inits)], tmp_path / "rtl")
    out = run_frames(design, x, seed=3, p_bubble=0.3, p_stall=0.35)
    mism = first_mismatch(np.asarray(exp).reshape(x.shape[0], -1), out.outputs)
    assert mism is None, mism
    # no backpressure: the steady state is the cycle model's figure
    free = run_frames(design, x, seed=1, p_bubble=0.0, p_stall=0.0)
    assert first_mismatch(np.asarray(exp).reshape(x.shape[0], -1), free.outputs) is None
    p = VVAU.params_from_attrs({**VVAU.declared_defaults(), **attrs}, inits)
    assert free.performance(100.0)["stable_cycles_per_frame"] == int(VVAU.cycles(p)) == \
        int(np.prod(nv)) * (K // SIMD) * (C // PE)
    # the first output word leaves exactly the pipeline depth after the input word that
    # completes its sum, the latency after the first: x1, x2, [DSP product], the levels of the
    # product tree over SIMD * (WBITS shift-and-add leaves, or 1 DSP product), the dot register,
    # the sum, [compares + clog2(NT) popcount levels], the output register
    sim = free.sim
    leaves = SIMD * (1 if res == "dsp" else int(wdt.lstrip("UINT")))
    depth = 5 + (res == "dsp") + int(np.ceil(np.log2(leaves))) + (1 + int(np.ceil(np.log2(nthr))) if nthr else 0)
    completing = (K // SIMD - 1) * (C // PE)
    assert int(sim.out_cycles[0] - sim.in_cycles[completing]) == int(VVAU.pipeline_depth(p)) == depth
    assert int(sim.out_cycles[0] - sim.in_cycles[0]) == VVAU.latency(p)


# ------------------------------------------------------------------ lowering: Brevitas -> QONNX -> compiled, exact

def _dw_net(global_pool: bool):
    """conv, depthwise 3x3 stride 2 (or 3x1 non-square), pointwise, average pool, act, fc."""
    import brevitas.nn as qnn
    from torch import nn

    from test_dataflow_lowering import _act, _inp, _wq

    c = 4
    dw_k, dw_pad = ((3, 3), 1) if not global_pool else ((3, 1), (1, 0))
    layers = [_inp(), qnn.QuantConv2d(1, c, 3, stride=2, bias=False, **_wq(4)), nn.BatchNorm2d(c), _act(4),
              qnn.QuantConv2d(c, c, dw_k, stride=2, padding=dw_pad, groups=c, bias=False, **_wq(4)),
              nn.BatchNorm2d(c), _act(3),
              qnn.QuantConv2d(c, 8, 1, bias=False, **_wq(4)), nn.BatchNorm2d(8), _act(4)]
    layers += [nn.AdaptiveAvgPool2d(1)] if global_pool else [nn.AvgPool2d(2)]
    side = 1 if global_pool else 3
    layers += [_act(4), nn.Flatten(), qnn.QuantLinear(8 * side * side, 10, bias=False, **_wq(4))]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("global_pool", [False, True], ids=["dw3x3s2_avgpool2", "dw3x1s2_globalavg"])
def test_depthwise_and_avgpool_lowering_exact(tmp_path, global_pool):
    """Brevitas depthwise conv (stride 2, square or non-square) + average / global average
    pool: every step bit-exact against the QONNX model (float64 reference), VVAU nodes made."""
    import torch

    from test_dataflow_lowering import _compile_and_check

    torch.manual_seed(11)  # weights whose avg-pool sums hit exact rounding ties (half-to-even)
    _, compiled = _compile_and_check(_dw_net(global_pool), tmp_path, n=6)
    ops = [n.op_type for n in compiled.graph.node]
    assert ops.count("VVAU") == 2, ops  # the depthwise conv and the pool's exact sum
    assert "AveragePool" not in ops and "GlobalAveragePool" not in ops


def test_activation_thresholds_round_half_to_even():
    """Ties (x exactly k + 1/2 steps) go to the even code, as qonnx's ROUND (np.round) does,
    also after an affine map and the integer ceil the streamlining applies."""
    from codesign.dataflow.transforms.quant import quant_thresholds

    T, _strict = quant_thresholds(-4, 3, 0.25)
    x = np.arange(-24, 25) / 16.0  # many exact ties at 0.125 + k*0.25
    codes = -4 + (x[:, None] >= T).sum(axis=1)
    assert np.array_equal(codes, np.clip(np.round(x / 0.25), -4, 3))
    acc = np.arange(-24, 25)  # x = acc / 16 on an integer accumulator: thresholds 16*T, ceil
    codes_int = -4 + (acc[:, None] >= np.ceil(T * 16)).sum(axis=1)
    assert np.array_equal(codes_int, np.clip(np.round(acc / 16 / 0.25), -4, 3))


def test_vvau_synthesises_with_yosys(tmp_path):
    """Yosys synth_xilinx of the template: the DSP count is the model's (PE*SIMD with resType
    dsp at 4+4 bits, none with lut), the LUT variant maps its multiplies to LUTs."""
    from codesign.hw.synth import synth_design

    rng = np.random.default_rng(5)
    W = rng.integers(-8, 8, size=(9, 4))
    T = np.sort(rng.integers(-40, 40, size=(4, 3)), axis=1)
    specs = []
    for res, pe, simd in (("dsp", 4, 3), ("lut", 2, 1)):
        attrs = dict(Channels=4, Kernel=[3, 3], KernelSize=9, PE=pe, SIMD=simd, inputDataType="UINT4", weightDataType="INT4",
                     outputDataType="UINT2", ActVal=0, noActivation=0, numInputVectors=[1, 2, 2], resType=res)
        specs.append(HWNodeSpec(f"dw {res}", "VVAU", attrs, {"W": W, "T": T}))
    design = render_nodes(specs, tmp_path / "rtl")
    rep = synth_design(design, "xc7z020clg400-1", tmp_path / "ooc.json")
    for s in specs:
        p = VVAU.params_from_attrs({**VVAU.declared_defaults(), **s.attrs}, s.inits)
        assert rep["nodes"][s.name]["DSP"] == int(VVAU.resources(p)["DSP"]), (s.name, rep["nodes"][s.name])
        assert rep["nodes"][s.name]["LUT"] > 0 and rep["nodes"][s.name]["FF"] > 0
    assert rep["nodes"]["dw dsp"]["DSP"] == 12 and rep["nodes"]["dw lut"]["DSP"] == 0


def test_residual_add_error_names_the_add(tmp_path):
    """A residual block whose branches reach the add at different scales (no shared quantizer
    before the add) is refused with one line naming the Add (not a neighbouring MatMul)."""
    import brevitas.nn as qnn
    from torch import nn

    from codesign.dataflow.compiler import lower_to_hw
    from codesign.errors import UnsupportedError
    from dataflow_helpers import export, images
    from test_dataflow_lowering import _act, _inp, _wq

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.c1, self.a1 = _inp(), qnn.QuantConv2d(1, 4, 3, padding=1, bias=False, **_wq(4)), _act(4)
            self.c2, self.a2 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, **_wq(4)), _act(4)

        def forward(self, x):
            y = self.a1(self.c1(self.inp(x)))
            return self.a2(self.c2(y) + y)

    model = export(Res(), images(2), tmp_path / "res.onnx")
    adds = [n.name for n in model.graph.node if n.op_type == "Add"]
    with pytest.raises(UnsupportedError, match=r"node '([^']*)' \(op Add\): the two branches reach the join at different scales") as e:
        lower_to_hw(model)
    assert str(e.value).split("'")[1] in adds and "\n" not in str(e.value)


@pytest.mark.parametrize("global_pool", [False, True], ids=["avgpool2", "globalavg"])
def test_depthwise_network_rtlsim(tmp_path, global_pool):
    """The depthwise/avg-pool net through the whole build (folding, FIFOs, Verilog) and Verilator:
    bit-exact on real images, steady-state cycles within 5% of the estimate."""
    from test_rtlsim_network import _check, _compile

    build = _compile(_dw_net(global_pool), tmp_path, (1, 28, 28), target_fps=20000)
    perf = _check(build, 8)
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.05, perf


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_padded_pool_is_refused_by_name(tmp_path, pool):
    """A ceil-mode max pool and a padded average pool fail with one line naming the pool node
    (a padded max pool in floor mode compiles: tests/test_graph_ops.py)."""
    import brevitas.nn as qnn
    from torch import nn

    from codesign.dataflow.compiler import lower_to_hw
    from codesign.errors import UnsupportedError
    from dataflow_helpers import export, images
    from test_dataflow_lowering import _act, _inp, _wq

    p = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True) if pool == "max" else nn.AvgPool2d(3, stride=2, padding=1)
    net = nn.Sequential(_inp(), qnn.QuantConv2d(1, 4, 3, bias=False, **_wq(4)), _act(4), p, _act(4))
    model = export(net, images(2), tmp_path / "pool.onnx")
    op = "MaxPool" if pool == "max" else "AveragePool"
    with pytest.raises(UnsupportedError, match=rf"node '[^']+' \(op {op}\): .*(pad|floor mode)") as e:
        lower_to_hw(model)
    assert "\n" not in str(e.value)


def test_vvau_node_executes_through_qonnx():
    """A VVAU node in an ONNX graph runs its golden through qonnx's execute_onnx; shapes, widths
    and the cycle figure of the node view agree with the class models."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    from codesign.dataflow.ops import make_hw_node
    from test_dataflow_ops import _single

    rng = np.random.default_rng(3)
    K, C = 9, 4
    W = rng.integers(-2, 2, size=(K, C))
    T = np.sort(rng.integers(-10, 10, size=(C, 3)), axis=1)
    n = make_hw_node("VVAU", ["x", "W", "T"], ["y"], "VVAU_0", Channels=C, Kernel=[3, 3], KernelSize=K, PE=2,
                     SIMD=1, inputDataType="UINT4", weightDataType="INT2", outputDataType="UINT2",
                     accDataType="INT10", noActivation=0, ActVal=0, numInputVectors=[1, 2, 2])
    m = _single(n, (1, 2, 2, K * C), (1, 2, 2, C), {"W": W, "T": T}, idt="UINT4")
    x = rng.integers(0, 16, size=(1, 2, 2, K * C))
    y = execute_onnx(m, {"x": x.astype(np.float32)})["y"]
    np.testing.assert_array_equal(y, vvau(x, W, T))
    op = getCustomOp(m.graph.node[0])
    assert op.verify_node() == ["ok"]
    assert op.get_folded_input_shape() == (1, 2, 2, K * C // 2, 2) and op.get_instream_width() == 8
    assert op.get_exp_cycles() == 4 * K * C // 2
