"""Channel concat of two branches (issue 13 item 1): StreamingConcat through the whole flow.

The op's golden execution against numpy; Brevitas networks whose two branches (convolutions of
one feature map, FC layers of one vector) meet in a ``torch.cat`` on the channels behind one
shared QuantIdentity compile bit-exactly after every lowering step; different scales are
refused in one line; the concat RTL is bit-exact in Verilator under random bubbles and stalls
(inputs of different widths and channel counts); the stitched network is bit-exact at the
estimated cycles per frame with analytically sized FIFOs, one FIFO too shallow for the
reconvergent branches is refused before simulation; the cost model against Yosys."""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.quant import Int8ActPerTensorFloat
from qonnx.custom_op.registry import getCustomOp
from torch import nn

from codesign.dataflow.compiler import hw_nodes, lower_to_hw
from codesign.errors import UnsupportedError
from dataflow_helpers import calibrate_and_randomise_bn, export, images
from test_dataflow_lowering import _act, _compile_and_check, _inp, _wq


def _join_quant() -> nn.Module:
    """The one quantizer both branches pass through right before the concat (common scale)."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=5, return_quant_tensor=False)


class ConvConcat(nn.Module):
    """conv0-BN-ReLU -> [convA 3x3 (4 ch)] ++ [convB 1x1 (2 ch)], each BN, one shared quantizer,
    torch.cat on the channels -> conv 3x3 -> BN-ReLU -> flatten -> fc."""

    def __init__(self, c: int = 4, ca: int = 4, cb: int = 2, side: int = 6):
        super().__init__()
        self.inp = _inp()
        self.c0, self.bn0, self.a0 = qnn.QuantConv2d(1, c, 3, padding=1, bias=False, **_wq(4)), nn.BatchNorm2d(c), _act(4)
        self.ca, self.bna = qnn.QuantConv2d(c, ca, 3, padding=1, bias=False, **_wq(4)), nn.BatchNorm2d(ca)
        self.cb, self.bnb = qnn.QuantConv2d(c, cb, 1, bias=False, **_wq(3)), nn.BatchNorm2d(cb)
        self.join = _join_quant()
        self.c1, self.bn1, self.a1 = (qnn.QuantConv2d(ca + cb, 4, 3, padding=1, bias=False, **_wq(4)),
                                      nn.BatchNorm2d(4), _act(3))
        self.flat = nn.Flatten()
        self.fc = qnn.QuantLinear(4 * side * side, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.c0(self.inp(x))))
        y = torch.cat([self.join(self.bna(self.ca(x))), self.join(self.bnb(self.cb(x)))], dim=1)
        return self.fc(self.flat(self.a1(self.bn1(self.c1(y)))))


class FcConcat(nn.Module):
    """fc0-BN-ReLU -> [fc1 (12)] ++ [fc2 (4)] behind one shared quantizer -> fc3 (784-16-16-10)."""

    def __init__(self, h: int = 16, ha: int = 12, hb: int = 4, two_scales: bool = False):
        super().__init__()
        self.inp, self.flat = _inp(), nn.Flatten()
        self.fc0, self.bn0, self.a0 = qnn.QuantLinear(784, h, bias=False, **_wq(4)), nn.BatchNorm1d(h), _act(4)
        self.fc1, self.bn1 = qnn.QuantLinear(h, ha, bias=False, **_wq(4)), nn.BatchNorm1d(ha)
        self.fc2, self.bn2 = qnn.QuantLinear(h, hb, bias=False, **_wq(4)), nn.BatchNorm1d(hb)
        self.join = _join_quant()
        self.join_b = _join_quant() if two_scales else self.join
        self.fc3 = qnn.QuantLinear(ha + hb, 10, bias=False, **_wq(4))

    def forward(self, x):
        x = self.a0(self.bn0(self.fc0(self.flat(self.inp(x)))))
        y = torch.cat([self.join(self.bn1(self.fc1(x))), self.join_b(self.bn2(self.fc2(x)))], dim=1)
        return self.fc3(y)


def _concat_nodes(m):
    return [n for n in hw_nodes(m) if n.op_type == "StreamingConcat"]


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_concat_network_bit_exact_every_step(tmp_path, kind):
    """The QONNX model's integer outputs exactly, after every lowering step, on real images;
    one StreamingConcat whose inputs carry the two branches' channels in torch.cat's order."""
    torch.manual_seed(1)
    model, shape, chans = (FcConcat(), (1, 28, 28), [12, 4]) if kind == "fc" else (ConvConcat(), (1, 6, 6), [4, 2])
    _, compiled = _compile_and_check(model, tmp_path, n=16, shape=shape, per_step=True)
    (cat,) = _concat_nodes(compiled)
    op = getCustomOp(cat)
    assert list(op.get_nodeattr("ChannelsPerStream")) == chans
    dts = [compiled.get_tensor_datatype(t) for t in cat.input]
    assert [d.name for d in dts] == list(op.get_nodeattr("inputDataTypes"))
    assert dts[0] == dts[1] == op.get_output_datatype()  # one shared quantizer: one datatype
