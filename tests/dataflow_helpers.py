"""Shared helpers of the dataflow lowering tests: small Brevitas models, export, real images and
the bit-exactness check (integer accumulator equality, not a float tolerance)."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from torch import nn

from codesign.dataflow.compiler import hw_nodes, load_model
from codesign.reference import float64_reference  # noqa: F401 - re-exported for the tests

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@functools.lru_cache(maxsize=1)
def _fashion_bytes() -> np.ndarray:
    if FASHION.exists():
        with gzip.open(FASHION, "rb") as f:
            data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        return data.reshape(-1, 28, 28)[:256].copy()
    rng = np.random.default_rng(0)  # offline fallback: random byte images
    return rng.integers(0, 256, size=(256, 28, 28), dtype=np.uint8)


def images(n: int, shape: tuple[int, int, int] = (1, 28, 28), offset: int = 0) -> np.ndarray:
    """n real Fashion-MNIST test images as float32 pixels in [0, 1] (bytes / 255), shaped
    (n, C, H, W); other sizes are cropped/padded and the channels shifted copies."""
    raw = _fashion_bytes()[offset: offset + n].astype(np.float32)
    c, h, w = shape
    out = np.zeros((n, c, h, w), dtype=np.float32)
    hh, ww = min(h, 28), min(w, 28)
    oy, ox = (h - hh) // 2, (w - ww) // 2
    for ch in range(c):
        img = np.roll(raw, ch * 3, axis=2)[:, :hh, :ww]
        out[:, ch, oy: oy + hh, ox: ox + ww] = img
    return out / 255.0


def calibrate_and_randomise_bn(model: nn.Module, x: np.ndarray, seed: int = 0) -> nn.Module:
    """Give BatchNorm running stats from a real batch (so activations spread over the
    quantizer range) and random affine parameters, some negative (exercises the weight-column
    flip), then switch to eval."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for bn in bns:
        bn.momentum = 1.0
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
        for bn in bns:
            n = bn.num_features
            sign = torch.where(torch.rand(n, generator=g) < 0.2, -1.0, 1.0)
            bn.weight.copy_(sign * (0.5 + torch.rand(n, generator=g)))
            bn.bias.copy_(0.5 * torch.randn(n, generator=g))
            bn.running_var.mul_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def export(model: nn.Module, x: np.ndarray, path: Path) -> ModelWrapper:
    """Brevitas -> QONNX (TorchScript path) -> cleanup, as the project's export does."""
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup_model

    model.eval()
    export_qonnx(model, args=torch.from_numpy(x[:1]), export_path=str(path), dynamo=False)
    m = cleanup_model(ModelWrapper(str(path)))
    m.save(str(path))
    return m


def run(model: ModelWrapper, x: np.ndarray, full: bool = False):
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    dt = np.float64 if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE else np.float32
    ctx = execute_onnx(model, {iname: np.asarray(x, dtype=dt)}, return_full_exec_context=full)
    return ctx if full else ctx[oname]


_PASS_THROUGH = ("Flatten", "Reshape", "MaxPool", "Transpose", "Identity")


def _quantizer(model: ModelWrapper, tensor: str):
    """The quantizer node that produced ``tensor`` (through layout ops)."""
    prod = model.find_producer(tensor)
    while prod is not None and prod.op_type in _PASS_THROUGH:
        prod = model.find_producer(prod.input[0])
    assert prod is not None and prod.op_type in ("Quant", "BipolarQuant", "Mul"), f"{tensor} is not quantized"
    return prod


def _codes(model: ModelWrapper, ctx: dict, tensor: str) -> np.ndarray:
    """Integer codes of a quantized tensor of the reference: value / scale of the quantizer
    that produced it (through layout ops), checked to be integers."""
    codes = getattr(model, "weight_codes", {}).get(tensor)
    if codes is not None:
        return np.asarray(codes, dtype=np.float64)
    prod = model.find_producer(tensor)
    while prod is not None and prod.op_type in _PASS_THROUGH:
        prod = model.find_producer(prod.input[0])
    if prod is not None and prod.op_type == "Concat":
        # a concat of branches quantized at one scale: that scale (its inputs' codes are checked)
        scales = {float(np.asarray(model.get_initializer(_quantizer(model, t).input[1])).reshape(-1)[0])
                  for t in prod.input}
        assert len(scales) == 1, f"{tensor}: a concat of branches at different scales"
        for t in prod.input:
            _codes(model, ctx, t)
        q = np.asarray(ctx[tensor], dtype=np.float64) / scales.pop()
        assert np.max(np.abs(q - np.round(q))) < 1e-3, f"{tensor}: not integer codes"
        return np.round(q)
    if prod is not None and prod.op_type == "Div" and prod.name.endswith("_mean64"):
        # an unquantized global average of quantized codes (ResNet's / MobileNet's head; the
        # reference runs it as ReduceSum / (H*W)): its codes are the integer window sums the
        # hardware computes, the 1/(H*W) a scale after them
        src = model.find_producer(prod.input[0]).input[0]
        summed = _codes(model, ctx, src).sum(axis=(2, 3), keepdims=True)
        v = np.asarray(ctx[prod.output[0]], dtype=np.float64).reshape(summed.shape)
        nz = summed != 0
        ratio = v[nz] / summed[nz]
        assert ratio.size == 0 or np.allclose(ratio, ratio.reshape(-1)[0], rtol=1e-9), \
            f"{tensor}: the average is not one scale of the sums"
        assert np.all(v[~nz] == 0)
        return summed.reshape(np.asarray(ctx[tensor]).shape)
    is_q64 = prod is not None and prod.op_type == "Mul" and prod.name.endswith("_mul64")
    assert prod is not None and (prod.op_type in ("Quant", "BipolarQuant") or is_q64), f"{tensor} is not quantized"
    scale = np.asarray(model.get_initializer(prod.input[1]), dtype=np.float64)
    v = np.asarray(ctx[tensor], dtype=np.float64)
    if scale.size > 1 and v.shape != ctx[prod.output[0]].shape:
        raise AssertionError("per-channel scale through a layout op")
    q = v / scale
    assert np.max(np.abs(q - np.round(q))) < 1e-3, f"{tensor}: not integer codes"
    return np.round(q)


def reference_accumulator(ref: ModelWrapper, ctx: dict) -> np.ndarray:
    """The exact integer accumulator of the QONNX model's last MatMul/Gemm: integer input codes
    times integer weight codes, computed in int64 from the reference's own intermediate tensors."""
    mm = [n for n in ref.graph.node if n.op_type in ("MatMul", "Gemm")][-1]
    x = _codes(ref, ctx, mm.input[0]).astype(np.int64)
    w = _codes(ref, ctx, mm.input[1]).astype(np.int64)
    if mm.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in mm.attribute):
        w = w.T
    return x.reshape(x.shape[0], -1) @ w


def assert_bit_exact(ref: ModelWrapper, compiled: ModelWrapper, xs: np.ndarray, integer: bool = True) -> None:
    """The compiled graph's output equals the QONNX model's on every image.

    ``integer``: the last MVAU's accumulator must equal, as integers, the reference's last
    MatMul accumulator (integer codes of its own input and weights); in every case (and alone
    for intermediate steps) the float outputs must agree to float rounding."""
    if ref.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.DOUBLE:
        ref = float64_reference(ref)
    for i in range(len(xs)):
        x = xs[i: i + 1]
        ref_ctx = run(ref, x, full=True)
        y_ref = ref_ctx[ref.graph.output[0].name]
        if integer:
            ctx = run(compiled, x, full=True)
            acc = ctx[hw_nodes(compiled)[-1].output[0]]
            assert np.array_equal(acc, np.round(acc)), "HW output is not integer"
            np.testing.assert_array_equal(acc.reshape(-1).astype(np.int64),
                                          reference_accumulator(ref, ref_ctx).reshape(-1),
                                          err_msg=f"image {i}: accumulator mismatch")
            y = ctx[compiled.graph.output[0].name]
        else:
            y = run(compiled, x)
        y_ref = y_ref.astype(np.float32)
        tol = 1e-5 * max(1.0, float(np.max(np.abs(y_ref))))
        assert np.max(np.abs(y - y_ref)) <= tol, f"image {i}: max |diff| {np.max(np.abs(y - y_ref))}"
        top2 = np.sort(y_ref.reshape(-1))[-2:]
        if top2[1] - top2[0] > 2 * tol:  # ties resolve by float rounding: compare only clear winners
            assert int(np.argmax(y)) == int(np.argmax(y_ref))


def load_ref(path: Path) -> ModelWrapper:
    return load_model(str(path))
