"""Generic golden numpy helpers shared by the ops' golden functions.

Each HW op's golden execution lives in its own module (``codesign.dataflow.ops.<op>``); the
custom-op classes execute through them and the RTL tests compare Verilator output against
them, so "bit-exact" means the same thing everywhere. Pure numpy, integers held in float or
int arrays; no ONNX here. Older import paths (``golden.<op function>``) still resolve: the
name is looked up in the registered op modules.
"""

from __future__ import annotations

from typing import Any

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


def __getattr__(name: str) -> Any:
    """``golden.<fn>`` for the op modules' golden functions (e.g. the RTL tests' references)."""
    import sys

    if name.startswith("__"):
        raise AttributeError(name)
    from codesign.dataflow.ops import OPS

    for cls in OPS:
        mod = sys.modules[cls.__module__]
        if hasattr(mod, name) and callable(getattr(mod, name)):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
