"""Check a compiled dataflow graph against its source QONNX model (float64 reference).

Why in the product and not only in the tests: a lowering bug (a threshold on the wrong side of
a tie, a misread layout) otherwise only shows as a few percent of accuracy on the board, and the
RTL simulation compares against the compiled graph, so it would call the wrong graph
"bit-exact". `codesign compile --verify N` and `codesign rtlsim` run this.

What is compared, per input:
- every activation layer's integer codes: the k-th activation quantizer of the source (its
  integer code tensor in the float64 reference) against the k-th thresholding HW node of the
  compiled graph (a HW node whose op says it emits an activation), NCHW read as NHWC; plus the input
  quantizer's codes against the accelerator's integer input. The first layer that differs is
  named. When the layers do not pair up (counts or sizes differ) only the output is compared,
  and the report says "output only".
- the graph output: element by element, to float32 rounding of the output (the compiled
  graph's host post-nodes run in float32); a last HW node that reshapes the output (a top-K
  selection) compares through its op (``mismatches_against_source``): the reference's
  top-K where the reference's K-th and (K+1)-th values differ.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from codesign.dataflow.ops.base import DOMAIN
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

def _input_quant(model: ModelWrapper):
    for n in model.graph.node:
        if n.op_type in ("Quant", "IntQuant", "BipolarQuant") and model.get_initializer(n.input[0]) is None:
            return n
    return None


def verify_inputs(source: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """`n` seeded random inputs on the source's input quantizer grid (codes uniform over the
    input datatype's range, times the scale), so every code the accelerator can receive is hit;
    uniform [0, 1] floats when the input quantizer is not a plain scalar Quant."""
    from qonnx.custom_op.general.intquant import max_int, min_int

    shape = [d.dim_value for d in source.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    q = _input_quant(source)
    full = (n, *[max(1, s) for s in shape[1:]])
    if q is not None and q.op_type == "BipolarQuant":
        return np.where(rng.random(full) < 0.5, -1.0, 1.0).astype(np.float32)
    if q is not None and len(q.input) >= 4:
        s, z, b = (source.get_initializer(i) for i in q.input[1:4])
        if s is not None and z is not None and b is not None and np.size(s) == 1 and not np.any(z):
            attrs = {a.name: a.i for a in q.attribute if a.name in ("signed", "narrow")}
            bits = int(np.asarray(b).reshape(-1)[0])
            lo = min_int(attrs.get("signed", 1), attrs.get("narrow", 0), bits)
            hi = max_int(attrs.get("signed", 1), attrs.get("narrow", 0), bits)
            codes = rng.integers(int(lo), int(hi) + 1, size=full)
            return (codes * np.float64(np.asarray(s).reshape(()))).astype(np.float32)
    return rng.random(full, dtype=np.float32)


def _run(model: ModelWrapper, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnx

    iname = model.graph.input[0].name
    dt = np.float64 if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE else np.float32
    return execute_onnx(model, {iname: np.asarray(x, dtype=dt)}, return_full_exec_context=True)


def _hw_chain(model: ModelWrapper) -> list:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def exact_hw_output(node, ctx: dict) -> np.ndarray:
    """A HW node's output recomputed in float64 from its inputs in an execution context: a HW
    tensor read by a host op is float32 there (onnxruntime's type), inexact above 2^24, while
    its HW inputs are exact float64."""
    from qonnx.custom_op.registry import getCustomOp

    out = np.asarray(getCustomOp(node)._execute(*[ctx[i] for i in node.input]), dtype=np.float64)
    return out.reshape(ctx[node.output[0]].shape) if out.size == ctx[node.output[0]].size else out


def _pairs(ref64: ModelWrapper, compiled: ModelWrapper) -> list[tuple[str, str, str, str]] | None:
    """(source node, source code tensor, compiled node, compiled tensor) per activation layer,
    input first; None when the layers cannot be paired."""
    qs = [n for n in ref64.graph.node if n.name.endswith("_cast64")]  # one per Quant, in order
    chain = _hw_chain(compiled)
    if not qs or not chain:
        return None
    from qonnx.custom_op.registry import getCustomOp

    acts = [n for n in chain if getCustomOp(n).emits_activation()]
    if len(acts) != len(qs) - 1:
        return None
    pairs = [(qs[0].name[: -len("_cast64")], qs[0].input[0], chain[0].name + " (input)", chain[0].input[0])]
    for q, a in zip(qs[1:], acts):
        pairs.append((q.name[: -len("_cast64")], q.input[0], a.name, a.output[0]))
    return pairs


def _as_nhwc(v: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    v = np.asarray(v, dtype=np.float64)
    if v.size != like.size:
        return None
    if v.ndim == 4 and like.ndim == 4 and v.shape != like.shape:
        v = v.transpose(0, 2, 3, 1)
    return v.reshape(like.shape)


def compare(source: ModelWrapper, compiled: ModelWrapper, inputs: np.ndarray) -> dict[str, Any]:
    """Run both graphs on `inputs` (N, ...) and report mismatches (see the module docstring)."""
    from codesign.reference import float64_reference

    ref64 = source if source.graph.input[0].type.tensor_type.elem_type == 11 else float64_reference(source)
    pairs = _pairs(ref64, compiled)
    layer_bad = {p[2]: 0 for p in pairs} if pairs else {}
    first: str | None = None
    out_bad = out_elems = 0
    chain = _hw_chain(compiled)
    oname = compiled.graph.output[0].name
    for i in range(len(inputs)):
        x = inputs[i: i + 1]
        rc = _run(ref64, x)
        cc = _run(compiled, x)
        y_ref = np.asarray(rc[ref64.graph.output[0].name], dtype=np.float64)
        y = np.asarray(cc[oname], dtype=np.float64)
        bad = None
        if chain and y.size != y_ref.size:  # e.g. a top-K selection appended to the network
            from qonnx.custom_op.registry import getCustomOp

            bad = getCustomOp(chain[-1]).mismatches_against_source(y, y_ref)
        if bad is not None:
            pass
        elif y.size != y_ref.size:
            raise CodesignError(f"the compiled graph's output has {y.size} elements, the source model's "
                                f"{y_ref.size}: they are not the same network")
        else:
            tol = 1e-5 * max(1.0, float(np.max(np.abs(y_ref))))
            bad = int(np.sum(np.abs(y.reshape(-1) - y_ref.reshape(-1)) > tol))
        out_bad += bad
        out_elems += y.size
        for sname, stensor, cname, ctensor in pairs or []:
            c = np.asarray(cc[ctensor], dtype=np.float64)
            r = _as_nhwc(rc[stensor], c)
            if r is None:
                continue
            m = int(np.sum(r != c))
            layer_bad[cname] += m
            if m and first is None:
                first = f"{cname} (source {sname})"
    ok = out_bad == 0 and not any(layer_bad.values())
    if first is None and out_bad:
        first = "output" if pairs else None
    return {
        "inputs_checked": int(len(inputs)),
        "compared": "every activation layer and the output" if pairs else "output only",
        "output_elements": int(out_elems),
        "mismatching_output_elements": int(out_bad),
        "layers": [{"source": s, "compiled": c, "mismatching_elements": int(layer_bad[c])} for s, _, c, _ in pairs or []],
        "first_differing_node": first,
        "ok": bool(ok),
    }


def verify_build(source_path: str | Path, compiled: ModelWrapper, n: int, *, inputs: np.ndarray | None = None,
                 seed: int = 0, report_path: str | Path | None = None) -> dict[str, Any]:
    """`compare` on `n` inputs (given, else `verify_inputs`) and write the report JSON."""
    from codesign.atomic import write_json
    from codesign.dataflow.compiler import load_model

    source = load_model(str(source_path))
    if inputs is None:
        inputs = verify_inputs(source, n, seed)
    rep = compare(source, compiled, np.asarray(inputs)[:n])
    rep["source"] = str(source_path)
    if report_path is not None:
        write_json(report_path, rep)
    if rep["ok"]:
        log.info("verify: compiled graph == source model on %d inputs (%s)", rep["inputs_checked"], rep["compared"])
    return rep


def mismatch_message(rep: dict[str, Any]) -> str:
    """One line saying what differs, for the CLI."""
    where = rep.get("first_differing_node") or "the output"
    return (f"the compiled graph differs from the source model {rep.get('source', '')}: "
            f"{rep['mismatching_output_elements']} of {rep['output_elements']} output elements on "
            f"{rep['inputs_checked']} inputs, first at {where} ({rep['compared']} compared). This is a "
            "compiler bug: please report it with the model")
