"""Golden numpy semantics of every HW op: the single definition of what each op computes.

The custom-op classes execute through these functions, and the RTL tests compare Verilator
output against them, so "bit-exact" means the same thing everywhere. Pure numpy, integers held
in float or int arrays; no ONNX here.
"""

from __future__ import annotations

import numpy as np


def _int(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).round().astype(np.int64)


def multithreshold(acc: np.ndarray, T: np.ndarray, act_val: int = 0) -> np.ndarray:
    """out[..., c] = act_val + #{i : acc[..., c] >= T[c, i]}; T has shape (C, n) or (1, n)."""
    acc = np.asarray(acc, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    C = acc.shape[-1]
    if T.shape[0] == 1 and C != 1:
        T = np.broadcast_to(T, (C, T.shape[1]))
    if T.shape[0] != C:
        raise ValueError(f"threshold rows {T.shape[0]} != channels {C}")
    return (acc[..., None] >= T).sum(axis=-1).astype(np.int64) + int(act_val)


def mvau(x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None, act_val: int = 0) -> np.ndarray:
    """Matrix-vector(-activation): acc = x @ W over the last axis, then optional thresholds.

    x (..., MW) and W (MW, MH) hold integers (bipolar as -1/+1); exact in int64.
    """
    acc = _int(x) @ _int(W)
    if T is None:
        return acc
    return multithreshold(acc, T, act_val)


def thresholding(x: np.ndarray, T: np.ndarray, act_val: int = 0) -> np.ndarray:
    """Channel-wise multi-threshold on the last axis (the standalone Thresholding op)."""
    return multithreshold(x, T, act_val)


def sliding_window(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Im2col in NHWC: (N, H, W, C) -> (N, OH, OW, kh*kw*C), order (kh, kw, c), c innermost."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                        j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
    return out.reshape(n, oh, ow, kh * kw * c)


def maxpool(x: np.ndarray, k: int) -> np.ndarray:
    """Max-pool with kernel = stride = k in NHWC; remainder rows/columns are dropped."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    oh, ow = h // k, w // k
    x = x[:, : oh * k, : ow * k, :].reshape(n, oh, k, ow, k, c)
    return x.max(axis=(2, 4))


def fmpadding(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Zero padding in NHWC; pad = [top, left, bottom, right]."""
    top, left, bottom, right = pad
    return np.pad(np.asarray(x), ((0, 0), (top, bottom), (left, right), (0, 0)))


def label_select(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, descending; ties -> lower index first."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(-x, axis=-1, kind="stable")
    return order[..., :k].astype(np.int64)
