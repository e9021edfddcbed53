"""Layer patterns of the issue-13 zoo nets (ResNet-8, MobileNet-v1 0.25, DS-CNN) through the
embedded compiler: each as a small Brevitas module, exported to QONNX, compiled and checked
bit-exact against the QONNX model's integer outputs on real Fashion-MNIST images; the
patterns with new RTL paths also stitched and simulated in Verilator under backpressure at
the estimated cycles per frame."""

from __future__ import annotations

import logging

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from dataflow_helpers import calibrate_and_randomise_bn, export, images, run
from qonnx.custom_op.registry import getCustomOp
from test_dataflow_lowering import _act, _compile_and_check, _inp, _wq
from test_residual import _join_quant
from torch import nn

from codesign.dataflow.compiler import hw_nodes, lower_to_hw
from codesign.errors import UnsupportedError

log = logging.getLogger(__name__)


def _conv(cin: int, cout: int, k, stride=1, padding=0, groups: int = 1, wbits: int = 4) -> nn.Module:
    return qnn.QuantConv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False, **_wq(wbits))


class DsCnnHead(nn.Module):
    """DS-CNN's first layer: conv kernel [10, 4], stride 2, padding [5, 1] on 28x28 -> 15x14,
    then a depthwise-separable block on the non-square map, global average pool, fc."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = _conv(1, c, (10, 4), 2, (5, 1)), nn.BatchNorm2d(c), _act(4)
        self.dw, self.bn1, self.a1 = _conv(c, c, 3, 1, 1, groups=c), nn.BatchNorm2d(c), _act(4)
        self.pw, self.bn2, self.a2 = _conv(c, c, 1), nn.BatchNorm2d(c), _act(4)
        self.gap, self.flat = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = qnn.QuantLinear(c, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.c0(self.inp(x))))
        x = self.a1(self.bn1(self.dw(x)))
        x = self.a2(self.bn2(self.pw(x)))
        return self.fc(self.flat(self.gap(x)))


class ResNetStage(nn.Module):
    """conv0 -> [3x3 s2 p1 - BN - ReLU - 3x3 p1 - BN] + [1x1 s2 - BN] -> join -> ReLU
    [-> [3x3 p1 - BN - ReLU - 3x3 p1 - BN] + identity -> join -> ReLU] -> GAP -> fc."""

    def __init__(self, c: int = 2, identity: bool = True):
        super().__init__()
        c2 = 2 * c
        self.identity = identity
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = _conv(1, c, 3, 1, 1), nn.BatchNorm2d(c), _act(4)
        self.b1, self.bb1, self.ab1 = _conv(c, c2, 3, 2, 1), nn.BatchNorm2d(c2), _act(4)
        self.b2, self.bb2 = _conv(c2, c2, 3, 1, 1), nn.BatchNorm2d(c2)
        self.sc, self.bsc = _conv(c, c2, 1, 2, 0), nn.BatchNorm2d(c2)
        self.j1, self.a1 = _join_quant(), _act(4)
        self.b3, self.bb3, self.ab3 = _conv(c2, c2, 3, 1, 1), nn.BatchNorm2d(c2), _act(4)
        self.b4, self.bb4 = _conv(c2, c2, 3, 1, 1), nn.BatchNorm2d(c2)
        self.j2, self.a2 = _join_quant(), _act(4)
        self.gap, self.flat = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = qnn.QuantLinear(c2, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.c0(self.inp(x))))
        y = self.bb2(self.b2(self.ab1(self.bb1(self.b1(x)))))
        x = self.a1(self.j1(y) + self.j1(self.bsc(self.sc(x))))
        if self.identity:
            y = self.bb4(self.b4(self.ab3(self.bb3(self.b3(x)))))
            x = self.a2(self.j2(y) + self.j2(x))
        return self.fc(self.flat(self.gap(x)))


class MobileNetTail(nn.Module):
    """conv 3x3 s2 p1 -> dw 3x3 s2 p1 (4x4 -> 2x2) - pw -> dw 3x3 p1 on 2x2 - pw -> dw s2 p1
    (2x2 -> 1x1) - pw -> dw 3x3 p1 on 1x1 - pw -> GAP -> fc (8x8 input)."""

    def __init__(self, c: int = 2):
        super().__init__()
        self.inp = _inp()
        layers: list[nn.Module] = [_conv(1, c, 3, 2, 1), nn.BatchNorm2d(c), _act(4)]
        for s in (2, 1, 2, 1):
            layers += [_conv(c, c, 3, s, 1, groups=c), nn.BatchNorm2d(c), _act(4),
                       _conv(c, c, 1), nn.BatchNorm2d(c), _act(4)]
        self.body = nn.Sequential(*layers)
        self.gap, self.flat = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = qnn.QuantLinear(c, 10, bias=False, **_wq(4))

    def forward(self, x):
        return self.fc(self.flat(self.gap(self.body(self.inp(x)))))


class PaddedMaxPool(nn.Module):
    """conv 3x3 p1 - BN - ReLU -> MaxPool2d(3, stride 2, padding 1) -> fc."""

    def __init__(self, c: int = 3, side: int = 10, signed: bool = False):
        super().__init__()
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = _conv(1, c, 3, 1, 1), nn.BatchNorm2d(c), _act(4, signed)
        self.pool, self.flat = nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten()
        o = (side + 2 - 3) // 2 + 1
        self.fc = qnn.QuantLinear(c * o * o, 10, bias=False, **_wq(4))

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.a0(self.bn0(self.c0(self.inp(x)))))))


def _ops(m) -> list[str]:
    return [n.op_type for n in hw_nodes(m)]


def _nodes(m, op: str) -> list:
    return [getCustomOp(n) for n in hw_nodes(m) if n.op_type == op]


def _check(make, tmp_path, shape, seed: int):
    """Build the model from a seeded RNG, compile it exactly (every image's integer accumulator
    equals the QONNX model's) and make sure the images do not all give one output (a dead
    network would make exactness vacuous)."""
    torch.manual_seed(seed)
    _, m = _compile_and_check(make(), tmp_path, n=4, shape=shape, seed=seed)
    outs = np.stack([run(m, images(1, shape, offset=100 + i)).reshape(-1) for i in range(4)])
    assert np.ptp(outs, axis=0).max() > 0, "every image gives the same output"
    return m


def test_dscnn_nonsquare_kernel_stride_padding(tmp_path):
    """(a) conv kernel [10, 4], stride 2, padding [5, 1] on 28x28 -> 15x14; a depthwise 3x3 pad 1
    and a pointwise conv on the 15x14 map; global average pool over 15x14."""
    m = _check(DsCnnHead, tmp_path, (1, 28, 28), seed=0)
    pad, swg = _nodes(m, "FMPadding")[0], _nodes(m, "SlidingWindow")[0]
    assert pad.get_nodeattr("Padding") == [5, 1, 5, 1] and pad.get_nodeattr("ImgDim") == [28, 28]
    assert swg.get_nodeattr("ConvKernelDim") == [10, 4] and swg.get_nodeattr("Stride") == [2, 2]
    assert swg.get_nodeattr("IFMDim") == [38, 30] and swg.get_nodeattr("OFMDim") == [15, 14]
    vv = _nodes(m, "VVAU")
    assert len(vv) == 2 and vv[1].get_nodeattr("Kernel") == [15, 14]  # the depthwise conv, the GAP's sum


def test_resnet_conv_shortcut_and_identity_then_gap(tmp_path):
    """(b, c) a residual block with a 3x3 stride-2 padded body and a 1x1 stride-2 + BN shortcut
    (one shared join quantizer, AddStreams, ReLU), then an identity residual block, then the
    global average pool over 4x4 (8x8 input; the 7x7 one: the rtlsim test below)."""
    side = 8
    m = _check(ResNetStage, tmp_path, (1, side, side), seed=1)
    assert len(_nodes(m, "AddStreams")) == 2 and len(_nodes(m, "DuplicateStreams")) == 2
    o = side // 2
    sc = [w for w in _nodes(m, "SlidingWindow") if w.get_nodeattr("ConvKernelDim") == [1, 1]
          and w.get_nodeattr("Stride") == [2, 2]]
    assert len(sc) == 1 and sc[0].get_nodeattr("OFMDim") == [o, o]  # the shortcut's downsampling
    assert _nodes(m, "VVAU")[-1].get_nodeattr("Kernel") == [o, o]


def test_mobilenet_tail_small_maps(tmp_path):
    """(d) depthwise 3x3 stride 2 pad 1 (4x4 -> 2x2, 2x2 -> 1x1) and depthwise 3x3 pad 1 on the 2x2
    and the 1x1 map, a pointwise conv after each, global average pool."""
    m = _check(lambda: MobileNetTail(c=4), tmp_path, (1, 8, 8), seed=2)
    dims = [(p.get_nodeattr("ImgDim"), p.get_nodeattr("Padding")) for p in _nodes(m, "FMPadding")]
    assert dims == [([8, 8], [1] * 4), ([4, 4], [1] * 4), ([2, 2], [1] * 4), ([2, 2], [1] * 4), ([1, 1], [1] * 4)]
    assert len(_nodes(m, "VVAU")) == 5  # four depthwise convs and the GAP's sum


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
def test_padded_maxpool(tmp_path, signed):
    """(e) MaxPool2d(3, stride 2, padding 1) after a ReLU (unsigned) or a signed activation: the
    border is the datatype's minimum, never chosen."""
    m = _check(lambda: PaddedMaxPool(signed=signed), tmp_path, (1, 10, 10), seed=3)
    pad = _nodes(m, "FMPadding")[-1]
    assert pad.get_nodeattr("PadValue") == "min" and pad.get_nodeattr("ImgDim") == [10, 10]
    wm = _nodes(m, "WindowMax")
    assert len(wm) == 1 and wm[0].get_nodeattr("numInputVectors") == [1, 5, 5]
    assert "StreamingMaxPool" not in _ops(m)


class GroupedConvs(nn.Module):
    """conv -> grouped conv (4 -> 6, groups 2, 3x3 pad 1) -> conv with depth multiplier 2
    (6 -> 12, groups 6, 3x3 stride 2) -> flatten -> fc."""

    def __init__(self):
        super().__init__()
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = _conv(1, 4, 3, 1, 1), nn.BatchNorm2d(4), _act(4)
        self.g1, self.bn1, self.a1 = _conv(4, 6, 3, 1, 1, groups=2), nn.BatchNorm2d(6), _act(4)
        self.g2, self.bn2, self.a2 = _conv(6, 12, 3, 2, 0, groups=6), nn.BatchNorm2d(12), _act(4)
        self.flat, self.fc = nn.Flatten(), qnn.QuantLinear(12 * 3 * 3, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.c0(self.inp(x))))
        x = self.a1(self.bn1(self.g1(x)))
        return self.fc(self.flat(self.a2(self.bn2(self.g2(x)))))


def test_grouped_conv(tmp_path):
    """(f) 1 < groups < channels, and a depth multiplier of 2: the matrix unit with a
    block-diagonal weight (zeros between the groups), exact."""
    m = _check(GroupedConvs, tmp_path, (1, 8, 8), seed=7)
    assert _ops(m).count("MVAU") == 4 and "VVAU" not in _ops(m)


def test_ceil_mode_max_pool_is_refused_by_name(tmp_path):
    net = nn.Sequential(_inp(), _conv(1, 2, 3), _act(4), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))
    with pytest.raises(UnsupportedError, match=r"node '[^']+' \(op MaxPool\): only 2-D max-pooling in floor mode") as e:
        lower_to_hw(export(net, images(2, (1, 10, 10)), tmp_path / "ceil.onnx"))
    assert "\n" not in str(e.value)


def _rtlsim_at_estimate(make, tmp_path, shape, target_fps: int, seed: int, n: int = 6) -> dict:
    """Build (folding for ``target_fps``, sized FIFOs, Verilog) and simulate in Verilator under
    random backpressure: bit-exact against the compiled graph and the source QONNX model on real
    images; steady-state cycles per frame equal to the estimate (the slowest node) within 2%; the
    vectorised search path's estimate equal to the per-node one."""
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.hw.rtlsim import rtlsim_build

    torch.manual_seed(seed)
    model = make()
    x = images(64, shape)
    calibrate_and_randomise_bn(model, x, seed)
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    res = build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, target_fps=target_fps))
    assert not res.fifo["fifo_throttled"]
    perf = rtlsim_build(build, images(n, shape, offset=30), backpressure=True)
    assert perf["bit_exact_frames"] == n and perf["checked_against"] == ["dataflow.onnx", "source.onnx"]
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.02, perf
    from codesign.dataflow.fast import FastNet

    fast = FastNet.from_model(res.model).evaluate()  # the vectorised search path agrees
    assert int(np.asarray(fast["max_cycles"]).reshape(-1)[0]) == res.performance["max_cycles"]
    perf["ops"] = _ops(res.model)
    perf["max_cycles"] = res.performance["max_cycles"]
    return perf


def test_dscnn_head_rtlsim_bit_exact_at_estimate(tmp_path):
    """(a) in Verilator: the [10, 4] stride-2 window over the asymmetrically padded 38x30 map,
    the depthwise / pointwise convs and the GAP on 15x14."""
    perf = _rtlsim_at_estimate(DsCnnHead, tmp_path, (1, 28, 28), target_fps=5000, seed=4)
    assert perf["ops"][:3] == ["FMPadding", "StreamingFIFO", "SlidingWindow"]
    log.info("DS-CNN head rtlsim: %s", perf)


def test_resnet_stage_rtlsim_bit_exact_at_estimate(tmp_path):
    """(b, c) in Verilator: the conv-shortcut block (fork, 3x3 s2 body, 1x1 s2 shortcut, join), GAP
    7x7 (the identity block's RTL: tests/test_residual.py)."""
    perf = _rtlsim_at_estimate(lambda: ResNetStage(identity=False), tmp_path, (1, 14, 14), target_fps=20000, seed=5)
    assert perf["ops"].count("AddStreams") == 1 and perf["ops"].count("DuplicateStreams") == 1
    log.info("ResNet stage rtlsim: %s", perf)


def test_padded_maxpool_rtlsim_bit_exact_at_estimate(tmp_path):
    """(e) in Verilator: a signed map padded with its minimum, 3x3 stride-2 windows, WindowMax."""
    perf = _rtlsim_at_estimate(lambda: PaddedMaxPool(c=4, side=12, signed=True), tmp_path, (1, 12, 12),
                               target_fps=50000, seed=6)
    assert "WindowMax" in perf["ops"] and "StreamingMaxPool" not in perf["ops"]
    log.info("padded max pool rtlsim: %s", perf)
