"""Brevitas -> QONNX export with cleanup, shape/datatype inference and a numeric check.

The check runs the exported graph with qonnx's executor on a real batch and compares it
with torch; the result is written beside the model (`<model>.check.json`) and a mismatch is
an error, because every later step (compiler, RTL) trusts this file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codesign.atomic import atomic_write, write_json
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

EXPORT_ABS_TOL = 1e-4
ORT_MAX_IR_VERSION = 10


def _export_raw(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    from brevitas.export import export_qonnx

    export_qonnx(model, args=sample, export_path=str(path), dynamo=False)


def clean(path: Path):
    """qonnx cleanup + shape and datatype inference; returns the ModelWrapper."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    # onnx 1.23 writes IR version 14, which onnxruntime 1.31 (used by qonnx's executor for
    # standard ops) rejects; the graph uses nothing newer than IR 10.
    model.model.ir_version = min(model.model.ir_version, ORT_MAX_IR_VERSION)
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    return model


def run_qonnx(model, x: np.ndarray) -> np.ndarray:
    """Execute a QONNX model one sample at a time (graphs are exported with batch 1).

    A float64 graph (see `codesign.reference.float64_reference`) is fed float64 inputs.
    """
    import onnx
    from qonnx.core.onnx_exec import execute_onnx

    iname = model.graph.input[0].name
    oname = model.graph.output[0].name
    f64 = model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    dt = np.float64 if f64 else np.float32
    outs = [execute_onnx(model, {iname: x[i:i + 1].astype(dt)})[oname] for i in range(len(x))]
    return np.concatenate(outs, axis=0)


def _compare(ref: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(ref - got).max(axis=1)
    scale = max(1.0, float(np.abs(ref).max()))
    pick = got.argmax(axis=1)
    agree = ref[np.arange(len(ref)), pick] >= ref.max(axis=1) - EXPORT_ABS_TOL * scale
    return {"diff": diff, "tol": EXPORT_ABS_TOL * scale, "agree": agree,
            "strict": float((pick == ref.argmax(axis=1)).mean())}


def numeric_check(model, torch_model: nn.Module, batch: torch.Tensor) -> dict:
    """Compare QONNX execution with torch on `batch`: max abs diff and argmax agreement.

    The comparison is float32 (what users run). Quantized nets put values on rounding steps,
    so a pre-activation within float32 rounding of a step can be rounded differently by two
    float32 summation orders (torch vs onnxruntime): a property of float32, not of the export.
    A sample that disagrees in float32 is therefore re-checked with both sides in float64
    (torch in double, QONNX through `float64_reference`), with the same tolerance; it passes
    only if it agrees there. The float64 check is per sample and not the rule, because torch
    in double re-derives weight scales in double and may move a weight code that sits on a
    tie. Logits of a quantized net are scale x integer, so exact ties occur; a tie counts as
    agreement when the ONNX choice is one of torch's maximal classes.
    """
    torch_model.eval()
    x = batch.cpu()
    with torch.no_grad():
        ref32 = torch_model(x).cpu().numpy()
    c32 = _compare(ref32, run_qonnx(model, x.numpy()))
    bad = np.flatnonzero((c32["diff"] > c32["tol"]) | ~c32["agree"])
    rechecked: dict[int, float] = {}
    ok = True
    if len(bad):
        import copy

        from codesign.reference import float64_reference

        xb = x[bad]
        with torch.no_grad():
            ref64 = copy.deepcopy(torch_model).double()(xb.double()).cpu().numpy()
        c64 = _compare(ref64, run_qonnx(float64_reference(model), xb.numpy().astype(np.float64)))
        rechecked = {int(i): float(d) for i, d in zip(bad, c64["diff"])}
        ok = bool((c64["diff"] <= c64["tol"]).all() and c64["agree"].all())
    return {
        "samples": int(len(x)),
        "max_abs_diff": float(c32["diff"].max()),
        "tolerance": c32["tol"],
        "argmax_agreement": float(c32["agree"].mean()),
        "strict_argmax_agreement": c32["strict"],
        "float32_rounding_samples": rechecked,
        "ok": ok,
    }


def export_qonnx(model: nn.Module, sample_input: torch.Tensor, path: str | Path,
                 check_batch: torch.Tensor | None = None) -> Path:
    """Export a Brevitas model to a cleaned QONNX file; check it numerically when given a batch.

    Raises CodesignError when the exported graph disagrees with torch.
    """
    path = Path(path)
    model = model.cpu().eval()
    sample = sample_input[:1].cpu()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            _export_raw(model, sample, raw)
        except Exception as exc:  # brevitas raises many kinds; say what failed where
            raise CodesignError(f"Brevitas QONNX export failed: {exc}") from exc
        qmodel = clean(raw)
        atomic_write(path, lambda p: qmodel.save(str(p)))
    log.info("exported QONNX model to %s", path)
    if check_batch is not None:
        report = numeric_check(qmodel, model, check_batch.cpu())
        write_json(check_path(path), report)
        log.info("export check: max |diff| %.2e, argmax agreement %.3f on %d samples",
                 report["max_abs_diff"], report["argmax_agreement"], report["samples"])
        if not report["ok"]:
            raise CodesignError(
                f"exported model disagrees with torch (max |diff| {report['max_abs_diff']:.3g}, tolerance "
                f"{report['tolerance']:.3g}, argmax agreement {report['argmax_agreement']:.3f}, also in "
                f"float64 on samples {sorted(report['float32_rounding_samples'])}); "
                f"see {check_path(path)}")
    return path


def check_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".check.json")
