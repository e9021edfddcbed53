"""Layer patterns of the issue-13 zoo nets (ResNet-8, MobileNet-v1 0.25, DS-CNN) through the
embedded compiler: each as a small Brevitas module, exported to QONNX, compiled and checked
bit-exact against the QONNX model's integer outputs on real Fashion-MNIST images; the
patterns with new RTL paths also stitched and simulated in Verilator under backpressure at
the estimated cycles per frame."""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from qonnx.custom_op.registry import getCustomOp
from torch import nn

from codesign.dataflow.compiler import hw_nodes, lower_to_hw
from dataflow_helpers import calibrate_and_randomise_bn, export, images
from test_dataflow_lowering import _act, _compile_and_check, _inp, _wq
from test_residual import _check_join, _join_quant


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
    -> [3x3 p1 - BN - ReLU - 3x3 p1 - BN] + identity -> join -> ReLU -> GAP -> fc."""

    def __init__(self, c: int = 2, side: int = 14):
        super().__init__()
        c2 = 2 * c
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


def test_dscnn_nonsquare_kernel_stride_padding(tmp_path):
    torch.manual_seed(0)
    _, m = _compile_and_check(DsCnnHead(), tmp_path, n=6, shape=(1, 28, 28))
    print(_ops(m))


def test_resnet_conv_shortcut_and_identity_then_gap(tmp_path):
    torch.manual_seed(1)
    _, m = _compile_and_check(ResNetStage(), tmp_path, n=6, shape=(1, 14, 14))
    print(_ops(m))


def test_mobilenet_tail_small_maps(tmp_path):
    torch.manual_seed(2)
    _, m = _compile_and_check(MobileNetTail(), tmp_path, n=6, shape=(1, 8, 8))
    print(_ops(m))


@pytest.mark.parametrize("signed", [False, True])
def test_padded_maxpool(tmp_path, signed):
    torch.manual_seed(3)
    _, m = _compile_and_check(PaddedMaxPool(signed=signed), tmp_path, n=6, shape=(1, 10, 10))
    print(_ops(m))


def _rtlsim_at_estimate(model: nn.Module, tmp_path, shape, target_fps: int, n: int = 6) -> dict:
    """Build (folding for ``target_fps``, sized FIFOs, Verilog) and simulate in Verilator under
    random backpressure: bit-exact against the compiled graph and the source QONNX model on real
    images; steady-state cycles per frame equal to the estimate (the slowest node) within 2%."""
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.hw.rtlsim import rtlsim_build

    x = images(64, shape)
    calibrate_and_randomise_bn(model, x)
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    res = build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, target_fps=target_fps))
    assert not res.fifo["fifo_throttled"]
    perf = rtlsim_build(build, images(n, shape, offset=30), backpressure=True)
    assert perf["bit_exact_frames"] == n and perf["checked_against"] == ["dataflow.onnx", "source.onnx"]
    assert abs(perf["stable_cycles_vs_estimate"] - 1.0) <= 0.02, perf
    perf["ops"] = _ops(res.model)
    perf["max_cycles"] = res.performance["max_cycles"]
    return perf


def test_dscnn_head_rtlsim_bit_exact_at_estimate(tmp_path):
    torch.manual_seed(4)
    perf = _rtlsim_at_estimate(DsCnnHead(), tmp_path, (1, 28, 28), target_fps=5000)
    print(perf)


def test_resnet_stage_rtlsim_bit_exact_at_estimate(tmp_path):
    torch.manual_seed(5)
    perf = _rtlsim_at_estimate(ResNetStage(), tmp_path, (1, 14, 14), target_fps=20000)
    print(perf)


def test_padded_maxpool_rtlsim_bit_exact_at_estimate(tmp_path):
    torch.manual_seed(6)
    perf = _rtlsim_at_estimate(PaddedMaxPool(c=4, side=12, signed=True), tmp_path, (1, 12, 12), target_fps=50000)
    assert "WindowMax" in perf["ops"]
    print(perf)
