"""QONNX (Brevitas export) -> dataflow graph of HW ops: the lowering entry point.

The lowering is a named list of steps (``compile_steps``), each a list of small qonnx
Transformations run to a fixpoint, so a test can execute the graph after every step and check
it still computes the QONNX model's output bit-exactly. ``lower_to_hw`` runs them all.
The folding/cost side then applies PE/SIMD and runs ``InsertDWC``/``InsertFIFO``
(``insert_stream_plumbing``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames, RemoveUnusedTensors
from qonnx.transformation.infer_shapes import InferShapes

from codesign.dataflow.ops.base import DOMAIN
from codesign.dataflow.transforms.branch import (DuplicateForkedScale, FactorConcatScale, FactorConcatTranspose,
                                                 FactorJoinScale, FactorJoinTranspose, InferAddStreams,
                                                 InferStreamingConcat, InsertDuplicateStreams, check_joins_lowered)
from codesign.dataflow.transforms.hw import (InferMVAU, InferThresholding, InferVVAU, InsertDWC, InsertFIFO, InsertLabelSelect,
                                             SetDefaultFolding, UpdateHWDatatypes, is_hw_node)
from codesign.dataflow.transforms.layout import (AbsorbTransposeIntoFlatten, CancelInverseTransposes,
                                                 LowerAvgPoolToDepthwise, LowerConvToSlidingWindow, LowerMaxPoolToStreaming,
                                                 MoveTransposePastChannelwise)
from codesign.dataflow.transforms.quant import (BatchNormToAffine, CheckSupportedOps, ConvertInputQuantToInteger,
                                                ConvertQuantActToMultiThreshold, ConvertSubDivToAddMul,
                                                ConvertWeightQuantToInteger, ExtractConvBias, FoldConstantQuant, GemmToMatMul,
                                                RemoveIdentity)
from codesign.dataflow.transforms.streamline import (AbsorbAddIntoMultiThreshold, AbsorbMulIntoMultiThreshold,
                                                     CollapseConsecutiveMulAdd, FlipNegativeChannelScales,
                                                     MoveAddPastMul, MoveScalarMulPastLinear,
                                                     RoundAndClipThresholds, check_streamlined)
from codesign.dataflow.transforms.tidy import infer_datatypes, infer_shapes, sort_graph
from codesign.dataflow.transforms.util import F64_PREFIX, SUPPORTED_INPUT_OPS, unsupported
from codesign.errors import UnsupportedError

log = logging.getLogger(__name__)

__all__ = ["Step", "compile_steps", "lower_to_hw", "hw_nodes", "hw_input_tensor", "hw_output_tensor",
           "insert_stream_plumbing", "insert_width_converters", "insert_fifos", "run_step", "tidy", "load_model"]


@dataclass
class Step:
    """One named lowering step: transformations run together to a fixpoint."""

    name: str
    passes: Callable[[], list[Transformation]]
    doc: str = ""
    finalize: list[Callable[[ModelWrapper], ModelWrapper]] = field(default_factory=list)


def tidy(model: ModelWrapper) -> ModelWrapper:
    """Sort, infer shapes and datatypes: the bookkeeping every pass relies on."""
    _prune_stale(model)
    # qonnx's SortGraph, InferShapes and InferDataTypes (one application each suffices: all
    # three walk the graph in topological order), in linear time (transforms/tidy.py says why)
    sort_graph(model)
    model = infer_shapes(model)
    infer_datatypes(model)
    return model


def _prune_stale(model: ModelWrapper, drop_twins: bool = False) -> None:
    """Drop initializers, value_info and datatype annotations of tensors no node uses any more
    (passes replace constants freely; stale entries slow every lookup down); ``drop_twins``
    also drops the float64 twins of live constants (once the lowering is done)."""
    g = model.graph
    used = {t for n in g.node for t in list(n.input) + list(n.output)}
    used |= {t.name for t in g.input} | {t.name for t in g.output}
    for field_ in (g.initializer, g.value_info):
        stale = [x for x in field_ if x.name not in used]
        for x in stale:
            field_.remove(x)
    stale_q = [a for a in g.quantization_annotation if a.tensor_name not in used]
    for a in stale_q:
        g.quantization_annotation.remove(a)
    inits = {i.name for i in g.initializer}
    stale_m = [p for p in model.model.metadata_props
               if p.key.startswith(F64_PREFIX) and (drop_twins or p.key[len(F64_PREFIX):] not in inits)]
    for p in stale_m:
        model.model.metadata_props.remove(p)


def _fixpoint(model: ModelWrapper, passes: list[Transformation], max_iter: int = 10000) -> ModelWrapper:
    for _ in range(max_iter):
        changed = False
        for p in passes:
            model, modified = p.apply(model)
            if modified:
                log.debug("pass %s modified the graph", type(p).__name__)
                model = tidy(model)
                changed = True
        if not changed:
            return model
    raise RuntimeError("lowering passes did not reach a fixpoint")


#: ops that must not survive the lowering anywhere (host or chain)
_MUST_BE_LOWERED = ("MatMul", "Conv", "MultiThreshold", "Relu", "MaxPool", "BatchNormalization")


def _check_chain(model: ModelWrapper) -> ModelWrapper:
    """Every compute op became hardware; the HW nodes form one contiguous dataflow graph (a chain or
    branches between forks and joins) with one input and one output stream."""
    for n in model.graph.node:
        if n.op_type in _MUST_BE_LOWERED and not is_hw_node(n):
            why = {"MatMul": "weights are not quantized integers (no weight Quant) or its input is not an "
                             "integer tensor",
                   "Conv": "weights are not quantized integers (no weight Quant)"}.get(
                n.op_type, "not followed/preceded by what its lowering needs (e.g. a float activation "
                           "without an activation quantizer)")
            raise unsupported(n, f"could not be lowered to hardware: {why}")
    hw_nodes(model)
    return model


def compile_steps(label_select_k: int | None = None) -> list[Step]:
    """The lowering as named steps, in order (``lower_to_hw`` runs exactly these)."""
    steps = [
        Step("tidy", lambda: [CheckSupportedOps(), RemoveIdentity(), GemmToMatMul()],
             "refuse unsupported ops; drop Identity"),
        Step("convert_input_quant", lambda: [ConvertInputQuantToInteger()],
             "input Quant emits integers (Div, Quant(scale 1), Mul(scale))"),
        Step("convert_weight_quant", lambda: [FoldConstantQuant(), ExtractConvBias(), ConvertWeightQuantToInteger()],
             "weight quantizers -> integer initializers + scale Mul"),
        Step("batchnorm_to_affine", lambda: [BatchNormToAffine(), ConvertSubDivToAddMul()],
             "BatchNorm -> Mul/Add; Sub/Div -> Add/Mul"),
        Step("convert_act_quant", lambda: [ConvertQuantActToMultiThreshold()],
             "activation quantizers -> MultiThreshold + scale Mul"),
        Step("lower_conv_pool_nhwc", lambda: [LowerConvToSlidingWindow(), LowerMaxPoolToStreaming(), LowerAvgPoolToDepthwise(),
                                              DuplicateForkedScale(), MoveTransposePastChannelwise(),
                                              FactorJoinTranspose(), FactorConcatTranspose(), CancelInverseTransposes(),
                                              AbsorbTransposeIntoFlatten()],
             "Conv -> [padding] + sliding window + MatMul, MaxPool -> streaming max-pool, NHWC"),
        Step("streamline", lambda: [DuplicateForkedScale(), CollapseConsecutiveMulAdd(), MoveAddPastMul(),
                                    MoveScalarMulPastLinear(), FlipNegativeChannelScales(),
                                    AbsorbAddIntoMultiThreshold(), AbsorbMulIntoMultiThreshold(), FactorJoinScale(),
                                    InferAddStreams(), FactorConcatScale(), InferStreamingConcat(), UpdateHWDatatypes(),
                                    RoundAndClipThresholds()],
             "move scales/biases into thresholds (one copy per branch of a fork; a residual join's common "
             "scale past the add); integer thresholds", finalize=[check_joins_lowered, check_streamlined]),
        Step("to_hw_layers", lambda: [UpdateHWDatatypes(), InferVVAU(), InferMVAU(), InferThresholding()],
             "MatMul(+MultiThreshold) -> matrix-vector unit; MultiThreshold -> threshold node"),
    ]
    if label_select_k is not None:
        steps.append(Step("label_select", lambda: [InsertLabelSelect(label_select_k)], "top-k on chip"))
    steps.append(Step("finalize", lambda: [InsertDuplicateStreams(), SetDefaultFolding()],
                      "a fork where a stream feeds two HW nodes; names, PE=SIMD=1, dataflow graph check",
                      finalize=[_check_chain, _name_nodes]))
    return steps


def _name_nodes(model: ModelWrapper) -> ModelWrapper:
    """FINN-style names: nodes ``<OpType>_<i>``, tensors ``<node>_out0`` / ``<node>_param<i>``
    (stable, so folding JSON keys and RTL file names follow the graph)."""
    _prune_stale(model, drop_twins=True)
    model = model.transform(GiveUniqueNodeNames(), make_deepcopy=False, cleanup=False)
    model = model.transform(GiveReadableTensorNames(), make_deepcopy=False, cleanup=False)
    return model.transform(RemoveUnusedTensors(), make_deepcopy=False, cleanup=False)


def run_step(model: ModelWrapper, step: Step) -> ModelWrapper:
    """Run one step to a fixpoint (the model is modified in place and returned)."""
    log.info("lowering step %s", step.name)
    model = _fixpoint(model, step.passes())
    for f in step.finalize:
        model = f(model)
    return tidy(model)


def load_model(model: ModelWrapper | str | onnx.ModelProto) -> ModelWrapper:
    """Load and clean a QONNX model, turning malformed input into a clear error."""
    try:
        if isinstance(model, ModelWrapper):
            mw = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
        else:
            mw = ModelWrapper(model)
        onnx.checker.check_model(mw.model)
    except UnsupportedError:
        raise
    except Exception as e:  # noqa: BLE001 - any load/check failure is the user's file
        raise UnsupportedError(f"not a valid ONNX model: {e}") from e
    try:
        mw = _light_cleanup(mw)
        _strict_shape_check(mw)
    except UnsupportedError:
        raise
    except Exception as e:  # noqa: BLE001 - inconsistent shapes are the user's file
        raise UnsupportedError(f"the model's tensor shapes are inconsistent: {e}") from e
    return tidy(mw)


def _light_cleanup(model: ModelWrapper) -> ModelWrapper:
    """qonnx's cleanup without renaming nodes, so errors name the user's nodes."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveUniqueParameterTensors, RemoveStaticGraphInputs
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    for n in model.graph.node:
        if n.op_type in ("Quant", "Trunc", "BipolarQuant"):
            n.domain = "qonnx.custom_op.general"
    for t in (InferShapes(), GiveUniqueParameterTensors(),
              FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]),
              FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_n{i}"
        seen.add(n.name)
    return model


def _strict_shape_check(model: ModelWrapper) -> None:
    """ONNX strict shape inference (custom ops replaced by shape stand-ins, as qonnx does)."""
    from qonnx.transformation.infer_shapes import _hide_finn_ops

    copy = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    _hide_finn_ops(copy)
    onnx.shape_inference.infer_shapes(copy.model, strict_mode=True)


def lower_to_hw(qonnx_model: ModelWrapper | str, label_select_k: int | None = None) -> ModelWrapper:
    """Lower a Brevitas-exported QONNX model to the dataflow graph of docs/contracts.md.

    Host pre-nodes (input Div/Quant, NCHW->NHWC Transpose), a contiguous block of HW nodes (a chain,
    or forks and residual joins) at PE = SIMD = 1, host post-nodes (output scale Mul / bias Add) or a top-k label selection node.
    Raises UnsupportedError naming the node and op for anything it cannot lower.
    """
    model = load_model(qonnx_model)
    for step in compile_steps(label_select_k):
        model = run_step(model, step)
    return model


def insert_stream_plumbing(model: ModelWrapper, fifo_depth: int = 2) -> ModelWrapper:
    """After folding: data-width converters where widths differ, then FIFOs between HW nodes
    (depths from the nodes' inFIFODepths/outFIFODepths where set, else ``fifo_depth``)."""
    model = insert_width_converters(model)
    return insert_fifos(model, fifo_depth)


def insert_width_converters(model: ModelWrapper) -> ModelWrapper:
    """Data-width converters wherever a producer's word width differs from its consumer's."""
    return tidy(_fixpoint(model, [InsertDWC()]))


def insert_fifos(model: ModelWrapper, fifo_depth: int = 2) -> ModelWrapper:
    """FIFOs between HW nodes (see ``InsertFIFO``), then FINN-style names."""
    model = _fixpoint(model, [InsertFIFO(fifo_depth)])
    return _name_nodes(tidy(model))


def hw_nodes(model: ModelWrapper) -> list:
    """The HW nodes (domain ``codesign.dataflow.ops``) in topological order: a chain, or a
    branching graph (forks and joins) with one input and one output stream.

    Raises UnsupportedError if a non-HW node sits between HW nodes (something the lowering
    could not turn into hardware), naming it, or if the HW nodes are not one connected dataflow
    graph fed by one stream and read out at one."""
    nodes = list(model.graph.node)
    idx = [i for i, n in enumerate(nodes) if is_hw_node(n)]
    if not idx:
        raise UnsupportedError("the graph has no HW nodes (domain %s)" % DOMAIN)
    for i in range(idx[0], idx[-1] + 1):
        n = nodes[i]
        if not is_hw_node(n):
            raise unsupported(n, "left between HW nodes after lowering (could not be absorbed into "
                                 "thresholds or turned into a HW op)",
                              supported=SUPPORTED_INPUT_OPS)
    chain = nodes[idx[0]: idx[-1] + 1]
    from codesign.dataflow.ops import op_class

    made = {t for n in chain for t in n.output}
    read = {t for n in chain for t in n.input}
    feeds = []
    for n in chain:
        for t in list(n.input)[: op_class(n.op_type, n.name).n_stream_inputs]:
            if t not in made and t not in feeds:
                feeds.append(t)
    outs = [t for n in chain for t in n.output if t not in read]
    if len(feeds) != 1 or len(outs) != 1:
        what = (f"{len(feeds)} input streams ({', '.join(feeds)})" if len(feeds) != 1
                else f"{len(outs)} output streams ({', '.join(outs)})")
        raise UnsupportedError(f"the HW nodes form a dataflow graph with {what}; it must have one input and "
                               "one output stream (connected nodes, no dangling branch)")
    if chain[0].input[0] != feeds[0] or outs[0] not in chain[-1].output:
        raise UnsupportedError("the HW nodes are not in topological order from the input to the output stream")
    return chain


def hw_input_tensor(model: ModelWrapper) -> str:
    """Name of the tensor entering the first HW node: the accelerator's integer input."""
    return hw_nodes(model)[0].input[0]


def hw_output_tensor(model: ModelWrapper) -> str:
    """Name of the tensor leaving the last HW node."""
    return hw_nodes(model)[-1].output[0]
