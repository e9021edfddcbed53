"""Brevitas quantizer choices for the zoo, in one place.

Weights: per-tensor float scale, narrow signed range (b >= 2) or bipolar with a constant
scale (b = 1). Activations: unsigned QuantReLU (b >= 2) or bipolar sign (b = 1).
Residual joins: one shared signed quantizer (act bits + 1) on both branches before the add.
Input: unsigned with a *constant* scale 1/(2^b - 1) over [0, 1] pixels, so at 8 bits the
accelerator's integer input is exactly the raw pixel byte.
"""

from __future__ import annotations

import brevitas.nn as qnn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (Int8ActPerTensorFloat, Int8WeightPerTensorFloat, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)
from torch import nn


class InputQuant(Uint8ActPerTensorFloat):
    """Unsigned input quantizer with a fixed [0, 1] range (scale = 1 / (2^b - 1))."""

    scaling_impl_type = ScalingImplType.CONST
    scaling_init = 1.0
    max_val = 1.0


def input_quant(bits: int) -> nn.Module:
    return qnn.QuantIdentity(act_quant=InputQuant, bit_width=bits, return_quant_tensor=False)


def weight_kwargs(bits: int) -> dict:
    if bits == 1:
        return {"weight_quant": SignedBinaryWeightPerTensorConst}
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": bits}


def activation(bits: int) -> nn.Module:
    """Quantized activation; plain tensors out so captum's hooks work (toolchain.md)."""
    if bits == 1:
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False)
    return qnn.QuantReLU(bit_width=bits, return_quant_tensor=False)


def quant_conv(cin: int, cout: int, k, stride, padding, bits: int, groups: int = 1) -> nn.Module:
    """QuantConv2d without bias (BN carries it); k/stride/padding are ints or (h, w) pairs;
    groups = cin = cout is a depthwise conv (the compiler's depthwise unit)."""
    return qnn.QuantConv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False,
                           **weight_kwargs(bits))


def join_quant(act_bits: int) -> nn.Module:
    """The one quantizer both branches of a residual block pass through right before the add:
    signed, act_bits + 1 bits (room for the signed pre-activation sum's sign), one scale for
    both, so the add is of integers at a common scale, which is what the compiler's residual-add
    lowering needs (tests/test_residual.py). Plain tensors out, like every activation here."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=int(act_bits) + 1,
                             return_quant_tensor=False)


def quant_linear(fin: int, fout: int, bits: int) -> nn.Module:
    return qnn.QuantLinear(fin, fout, bias=False, **weight_kwargs(bits))


# Module types whose forward is a quantizing nonlinearity (used by relevance/captum).
QUANT_ACT_TYPES = (qnn.QuantReLU, qnn.QuantIdentity)
QUANT_WEIGHT_TYPES = (qnn.QuantConv2d, qnn.QuantLinear)
