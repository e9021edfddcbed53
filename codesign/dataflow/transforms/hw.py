"""Conversion to HW layers (MVAU, Thresholding, LabelSelect) and the stream plumbing passes
(data-width converters, FIFOs) that the compile flow runs after folding."""

from __future__ import annotations

import logging

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from codesign.dataflow.ops.base import DOMAIN, make_hw_node
from codesign.dataflow.transforms.layout import DEPTHWISE_TAG, depthwise_kernels
from codesign.dataflow.transforms.quant import _attr
from codesign.dataflow.transforms.streamline import _mt_channel_axis, threshold_input_range
from codesign.dataflow.transforms.util import (acc_range, const, const_input, fresh_name, single_consumer,
                                               smallest_int_dtype, unsupported)

log = logging.getLogger(__name__)

#: HW ops whose datatype attributes simply follow their input
_DTYPE_FOLLOWERS = {"SlidingWindow": ("inputDataType", "outputDataType"), "FMPadding": ("inputDataType",),
                    "StreamingMaxPool": ("dataType",), "WindowMax": ("inputDataType",)}


def is_hw_node(node) -> bool:
    return node.domain == DOMAIN


class UpdateHWDatatypes(Transformation):
    """Data-movement HW ops created before streamlining carry FLOAT32; once their input is an
    integer tensor, copy its datatype into their attributes (refusing zero padding of a
    bipolar map, which has no 1-bit code for 0)."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if not is_hw_node(n) or n.op_type not in _DTYPE_FOLLOWERS:
                continue
            idt = model.get_tensor_datatype(n.input[0])
            inst = getCustomOp(n)
            attrs = _DTYPE_FOLLOWERS[n.op_type]
            if inst.get_nodeattr(attrs[0]) == idt.name:
                continue
            zero_pad = _attr(n, "PadValue", "zero") == "zero"
            if n.op_type == "FMPadding" and idt == DataType["BIPOLAR"] and zero_pad:
                raise unsupported(n, "zero padding of a bipolar (1-bit) feature map: 0 is not a bipolar "
                                     "value; use padding 0 or >= 2-bit activations before a padded conv",
                                  supported=["FMPadding of integer (>= 2-bit or unsigned) maps"])
            for a in attrs:
                inst.set_nodeattr(a, idt.name)
            model.set_tensor_datatype(n.output[0], idt)
            return model, True
        return model, False


def _flatten_source(model: ModelWrapper, x: str) -> str:
    """Skip a Flatten/Reshape (N, -1) fed by a HW node: the NHWC stream already is the
    flattened vector, so the MVAU reads the 4-D tensor directly."""
    prod = model.find_producer(x)
    if prod is not None and prod.op_type in ("Flatten", "Reshape") and single_consumer(model, x) is not None:
        src = model.find_producer(prod.input[0])
        if src is not None and is_hw_node(src):
            return prod.input[0]
    return x


def _fuse_matmul(model: ModelWrapper, op: str, mm, inputs: list[str], channels: int, lo: np.ndarray,
                 hi: np.ndarray, attrs: dict, bipolar_ok: bool, remove: list | None = None) -> bool:
    """Replace MatMul `mm` (and its MultiThreshold consumer, when channels-last) by one `op` node
    (MVAU / VVAU): the one place where a weight layer absorbs its thresholds. ``T`` becomes
    (channels, n), ``ActVal`` the threshold's out_bias, outputDataType its out_dtype (bipolar,
    only where `bipolar_ok`: out_scale 2, out_bias -1, one step). Without a threshold:
    noActivation=1 and the output is the accumulator. Returns False (graph untouched) while the
    threshold is not streamlined yet (no integer input range or non-integer thresholds)."""
    mt = single_consumer(model, mm.output[0])
    if mt is not None and mt.op_type == "MultiThreshold" and _mt_channel_axis(model, mt) == -1:
        T = np.asarray(const(model, mt.input[1]), dtype=np.float64)
        if T.shape[0] == 1 and channels != 1:
            T = np.broadcast_to(T, (channels, T.shape[1])).copy()
        if threshold_input_range(model, mt) is None or not np.array_equal(T, np.round(T)):
            return False  # not streamlined yet
        odt = _attr(mt, "out_dtype")
        scale, bias = float(_attr(mt, "out_scale", 1.0)), float(_attr(mt, "out_bias", 0.0))
        if odt == "BIPOLAR" and bipolar_ok:
            if (scale, bias) != (2.0, -1.0) or T.shape[1] != 1:
                raise unsupported(mt, "a bipolar threshold must have one step, out_scale 2, out_bias -1")
            act_val = 0
        elif not bipolar_ok and (odt == "BIPOLAR" or scale != 1.0 or bias != int(bias)):
            raise unsupported(mt, f"a depthwise layer's threshold must give integer codes (out_scale 1, "
                                  f"integer out_bias; got {odt}, {scale}, {bias})")
        elif scale != 1.0 or bias != int(bias):
            raise unsupported(mt, f"threshold output scale {scale} / bias {bias} not integer codes")
        else:
            act_val = int(bias)
        acc = smallest_int_dtype(min(lo.min(), T.min()), max(hi.max(), T.max()))
        tname = fresh_name(model, f"{op.lower()}_T")
        model.set_initializer(tname, T.astype(np.float32))
        model.set_tensor_datatype(tname, acc)
        node = make_hw_node(op, [*inputs, tname], [mt.output[0]], fresh_name(model, op), outputDataType=odt,
                            accDataType=acc.name, noActivation=0, ActVal=act_val, **attrs)
        gone = [mm, mt]
    else:
        acc = smallest_int_dtype(lo.min(), hi.max())
        node = make_hw_node(op, inputs, [mm.output[0]], fresh_name(model, op), outputDataType=acc.name,
                            accDataType=acc.name, noActivation=1, ActVal=0, **attrs)
        gone = [mm]
    idx = list(model.graph.node).index(mm)
    model.graph.node.insert(idx, node)
    for r in gone + list(remove or []):
        model.graph.node.remove(r)
    model.set_tensor_datatype(node.output[0], DataType[getCustomOp(node).get_nodeattr("outputDataType")])
    return True


class InferMVAU(Transformation):
    """MatMul(integer x, integer W) [-> MultiThreshold]  =>  MVAU (PE = SIMD = 1).

    With a threshold consumer: ``T`` becomes (MH, n), ``ActVal`` = the threshold's out_bias,
    outputDataType its out_dtype (bipolar: out_scale 2, out_bias -1). Without: noActivation=1
    and the output is the accumulator (the final scale stays a host post-node)."""

    def apply(self, model: ModelWrapper):
        for mm in model.graph.node:
            if mm.op_type != "MatMul" or mm.name.startswith(DEPTHWISE_TAG):
                continue
            W = const(model, mm.input[1])
            idt = model.get_tensor_datatype(mm.input[0])
            wdt = model.get_tensor_datatype(mm.input[1])
            if W is None or not idt.is_integer() or not wdt.is_integer():
                continue
            x = _flatten_source(model, mm.input[0])
            mw, mh = W.shape
            lo, hi = acc_range(W, idt)
            xshape = model.get_tensor_shape(x)
            nv = [1] if x != mm.input[0] else [int(v) for v in xshape[:-1]]
            attrs = dict(MW=int(mw), MH=int(mh), PE=1, SIMD=1, inputDataType=idt.name,
                         weightDataType=wdt.name, numInputVectors=nv,
                         binaryXnorMode=int(idt == DataType["BIPOLAR"] and wdt == DataType["BIPOLAR"]),
                         ram_style="auto", resType="lut", mem_mode="internal_embedded")
            remove = [model.find_producer(mm.input[0])] if x != mm.input[0] else []
            if _fuse_matmul(model, "MVAU", mm, [x, mm.input[1]], int(mh), lo, hi, attrs, True, remove):
                return model, True
        return model, False


class InferVVAU(Transformation):
    """SlidingWindow -> MatMul(integer, depthwise weights) [-> MultiThreshold]  =>  VVAU.

    Takes the MatMuls a depthwise conv or an average pool lowered to (name tag and the
    block-of-diagonals weight structure both checked); W becomes (K, C). The thresholds are
    absorbed as for the MVAU (``ActVal`` the threshold's out_bias, outputDataType its out_dtype);
    without a threshold the output is the accumulator (noActivation=1)."""

    def apply(self, model: ModelWrapper):
        for mm in model.graph.node:
            if mm.op_type != "MatMul" or not mm.name.startswith(DEPTHWISE_TAG):
                continue
            W2 = const(model, mm.input[1])
            idt = model.get_tensor_datatype(mm.input[0])
            wdt = model.get_tensor_datatype(mm.input[1])
            swg = model.find_producer(mm.input[0])
            if W2 is None or not idt.is_integer() or not wdt.is_integer() or swg is None \
                    or swg.op_type != "SlidingWindow":
                continue
            sw = getCustomOp(swg)
            c = int(sw.get_nodeattr("IFMChannels"))
            Wkc = depthwise_kernels(np.asarray(W2, np.float64), c)
            if Wkc is None:
                continue
            if idt == DataType["BIPOLAR"] or wdt == DataType["BIPOLAR"]:
                raise unsupported(mm, "a depthwise layer needs integer (not bipolar) activations and weights")
            lo, hi = acc_range(W2, idt)
            xshape = model.get_tensor_shape(mm.input[0])
            kern = [int(v) for v in sw.get_nodeattr("ConvKernelDim")]
            attrs = dict(Channels=c, Kernel=kern, KernelSize=kern[0] * kern[1], PE=1, SIMD=1,
                         inputDataType=idt.name, weightDataType=wdt.name,
                         numInputVectors=[int(v) for v in xshape[:-1]], ram_style="auto", resType="lut",
                         mem_mode="internal_embedded")
            wname = fresh_name(model, "vvau_W")
            model.set_initializer(wname, Wkc.astype(np.float32))
            model.set_tensor_datatype(wname, wdt)
            if _fuse_matmul(model, "VVAU", mm, [mm.input[0], wname], c, lo, hi, attrs, False):
                return model, True
        return model, False


class InferThresholding(Transformation):
    """A MultiThreshold left on an integer, channels-last tensor (not after a MatMul) =>
    Thresholding (PE = 1)."""

    def apply(self, model: ModelWrapper):
        for mt in model.graph.node:
            if mt.op_type != "MultiThreshold":
                continue
            prod = model.find_producer(mt.input[0])
            if prod is not None and prod.op_type == "MatMul":
                continue
            idt = model.get_tensor_datatype(mt.input[0])
            shape = model.get_tensor_shape(mt.input[0])
            if not idt.is_integer() or _mt_channel_axis(model, mt) != -1:
                continue
            T = np.asarray(const(model, mt.input[1]), dtype=np.float64)
            if not np.array_equal(T, np.round(T)):
                continue
            c = int(shape[-1])
            if T.shape[0] == 1 and c != 1:
                T = np.broadcast_to(T, (c, T.shape[1])).copy()
            odt = _attr(mt, "out_dtype")
            scale, bias = float(_attr(mt, "out_scale", 1.0)), float(_attr(mt, "out_bias", 0.0))
            if odt == "BIPOLAR":
                act_val = 0
            elif scale != 1.0:
                raise unsupported(mt, "threshold output scale must be 1")
            else:
                act_val = int(bias)
            tname = fresh_name(model, "thr_T")
            model.set_initializer(tname, T.astype(np.float32))
            node = make_hw_node("Thresholding", [mt.input[0], tname], [mt.output[0]],
                                fresh_name(model, "Thresholding"), NumChannels=c, PE=1, numSteps=int(T.shape[1]),
                                inputDataType=idt.name, outputDataType=odt, ActVal=act_val,
                                numInputVectors=[int(v) for v in shape[:-1]])
            idx = list(model.graph.node).index(mt)
            model.graph.node.insert(idx, node)
            model.graph.node.remove(mt)
            model.set_tensor_datatype(node.output[0], DataType[odt])
            return model, True
        return model, False


class InsertLabelSelect(Transformation):
    """Replace the host post-nodes after the last MVAU by a top-``k`` LabelSelect.

    Valid only when the post-nodes are a positive scalar Mul and/or scalar Adds (they preserve
    the order of the logits); a per-class scale or bias would change the ranking."""

    def __init__(self, k: int):
        super().__init__()
        self.k = int(k)

    def apply(self, model: ModelWrapper):
        out = model.graph.output[0].name
        if any(n.op_type == "LabelSelect" for n in model.graph.node):
            return model, False
        hw = [n for n in model.graph.node if is_hw_node(n)]
        if not hw:
            raise unsupported(model.graph.node[-1], "LabelSelect needs an MVAU before it")
        last = hw[-1]
        if last.op_type != "MVAU":
            raise unsupported(last, "LabelSelect must follow the final MVAU")
        cur, post = last.output[0], []
        while cur != out:
            nxt = single_consumer(model, cur)
            if nxt is None:
                consumers = model.find_consumers(cur) or []
                if len(consumers) != 1:
                    break
                nxt = consumers[0]
            ci = const_input(model, nxt) if nxt.op_type in ("Mul", "Add") else None
            if ci is None or ci[1].size != 1 or (nxt.op_type == "Mul" and float(ci[1].reshape(())) <= 0):
                raise unsupported(nxt, "top-k LabelSelect needs the output post-scale to be a positive scalar "
                                       "(a per-class or negative scale/bias changes the ranking)",
                                  supported=["Mul(positive scalar)", "Add(scalar)"])
            post.append(nxt)
            cur = nxt.output[0]
        labels = int(model.get_tensor_shape(last.output[0])[-1])
        if not 1 <= self.k <= labels:
            raise unsupported(last, f"LabelSelect k={self.k} must lie in [1, {labels}]")
        for p in post:
            model.graph.node.remove(p)
        idt = model.get_tensor_datatype(last.output[0])
        odt = smallest_int_dtype(0, labels - 1)
        sel_in = last.output[0]
        if sel_in == out:
            sel_in = fresh_name(model, "logits")
            last.output[0] = sel_in
        node = make_hw_node("LabelSelect", [sel_in], [out], fresh_name(model, "LabelSelect"), Labels=labels,
                            PE=1, K=self.k, inputDataType=idt.name, outputDataType=odt.name)
        model.graph.node.append(node)
        model.graph.output[0].CopyFrom(helper.make_tensor_value_info(out, 1, [1, self.k]))
        model.set_tensor_datatype(out, odt)
        return model, True


class SetDefaultFolding(Transformation):
    """PE = SIMD = 1 on every HW node that has those attributes and none set yet; the folding
    pass applies real foldings later."""

    def apply(self, model: ModelWrapper):
        for n in model.graph.node:
            if not is_hw_node(n):
                continue
            inst = getCustomOp(n)
            for a in ("PE", "SIMD"):
                if a in inst.get_nodeattr_types() and not any(x.name == a for x in n.attribute):
                    inst.set_nodeattr(a, 1)
        return model, False


def hw_chain(model: ModelWrapper) -> list:
    """The HW nodes in graph order (no contiguity check)."""
    return [n for n in model.graph.node if is_hw_node(n)]


def _insert_between(model: ModelWrapper, producer, consumer, tensor: str, node) -> None:
    for i, v in enumerate(consumer.input):
        if v == tensor:
            consumer.input[i] = node.output[0]
    idx = list(model.graph.node).index(consumer)
    model.graph.node.insert(idx, node)


def _hw_edges(model: ModelWrapper, prod):
    """The streams leaving HW node ``prod``: (output index, tensor, HW consumer, its input index);
    a fork has two outputs, a join two inputs."""
    for j, t in enumerate(prod.output):
        for cons in model.find_consumers(t) or []:
            if is_hw_node(cons):
                yield j, t, cons, list(cons.input).index(t)


class InsertDWC(Transformation):
    """Insert a StreamingDataWidthConverter wherever a HW producer's output word width differs
    from its HW consumer's input word width (after folding)."""

    def apply(self, model: ModelWrapper):
        for prod in model.graph.node:
            if not is_hw_node(prod) or prod.op_type == "StreamingDataWidthConverter":
                continue
            for j, t, cons, k in _hw_edges(model, prod):
                if cons.op_type == "StreamingDataWidthConverter":
                    continue
                p, c = getCustomOp(prod), getCustomOp(cons)
                ow, iw = p.get_outstream_width(j), c.get_instream_width(k)
                if ow == iw:
                    continue
                dt = p.get_output_datatype(j)
                shape = list(p.get_normal_output_shape(j))
                new_t = fresh_name(model, "dwc_out")
                node = make_hw_node("StreamingDataWidthConverter", [t], [new_t],
                                    fresh_name(model, "StreamingDataWidthConverter"), shape=shape, inWidth=int(ow),
                                    outWidth=int(iw), dataType=dt.name)
                _insert_between(model, prod, cons, t, node)
                model.set_tensor_datatype(new_t, dt)
                model.set_tensor_shape(new_t, list(model.get_tensor_shape(t)))
                return model, True
        return model, False


def _fifo_depth_attr(node, attr: str, ind: int = 0) -> int | None:
    """The node's explicitly set ``inFIFODepths``/``outFIFODepths`` entry of stream ``ind`` (FINN
    keeps one per input/output stream; a single entry applies to all), else None."""
    for a in node.attribute:
        if a.name == attr:
            v = list(helper.get_attribute_value(a))
            return int(v[ind] if ind < len(v) else v[0]) if v else None
    return None


class InsertFIFO(Transformation):
    """Insert a StreamingFIFO between every two HW nodes that are not already separated by one.

    Its depth is the larger of the producer's ``outFIFODepths`` and the consumer's
    ``inFIFODepths`` where set (FINN's rule; FIFO sizing writes them), else ``depth``."""

    def __init__(self, depth: int = 2):
        super().__init__()
        self.depth = int(depth)

    def apply(self, model: ModelWrapper):
        for prod in model.graph.node:
            if not is_hw_node(prod) or prod.op_type == "StreamingFIFO":
                continue
            for j, t, cons, k in _hw_edges(model, prod):
                if cons.op_type == "StreamingFIFO":
                    continue
                p = getCustomOp(prod)
                dt = p.get_output_datatype(j)
                new_t = fresh_name(model, "fifo_out")
                given = [d for d in (_fifo_depth_attr(prod, "outFIFODepths", j),
                                     _fifo_depth_attr(cons, "inFIFODepths", k)) if d is not None]
                node = make_hw_node("StreamingFIFO", [t], [new_t], fresh_name(model, "StreamingFIFO"),
                                    depth=max(given) if given else self.depth,
                                    folded_shape=[int(v) for v in p.get_folded_output_shape(j)], dataType=dt.name)
                _insert_between(model, prod, cons, t, node)
                model.set_tensor_datatype(new_t, dt)
                model.set_tensor_shape(new_t, list(model.get_tensor_shape(t)))
                return model, True
        return model, False


#: LUTs one BRAM18 is worth when weight storage modes are compared (18 Kbit of ROM at 64 bits
#: per LUT6): the exchange rate ChooseWeightStorage uses to rank LUT against block RAM
LUT_PER_BRAM18 = 288


class ChooseWeightStorage(Transformation):
    """After folding: pick each MVAU's ``weight_storage`` by its cost model.

    An MVAU at ``auto`` (or, with ``all_nodes``, any MVAU at the default ``rom`` not named in
    ``keep``) compares rom, codebook (when its integer W has fewer distinct values than 2^W
    bits allow, e.g. after relevance-weighted clustering) and constants (when fully unfolded) by
    LUT + LUT_PER_BRAM18 * BRAM18 and keeps the cheapest (ties: rom). The golden execution is the
    same integer matmul in every mode, so the graph stays exact; only the RTL and its cost
    change. Runs once (not to a fixpoint: the choice depends on the folding it is given)."""

    def __init__(self, all_nodes: bool = False, keep: set[str] | frozenset[str] = frozenset(),
                 dsp_family: int = 0) -> None:
        super().__init__()
        self.all_nodes, self.keep, self.dsp_family = all_nodes, set(keep), dsp_family

    def apply(self, model: ModelWrapper):
        from codesign.dataflow.ops.mvau import (STORAGE_CODEBOOK, STORAGE_CONSTANTS, STORAGE_ROM,
                                                codebook_bits_needed)

        for n in model.graph.node:
            if not is_hw_node(n) or n.op_type != "MVAU" or n.name in self.keep:
                continue
            inst = getCustomOp(n)
            cur = inst.get_nodeattr("weight_storage")
            if not (cur == "auto" or (self.all_nodes and cur == STORAGE_ROM)):
                continue
            W = model.get_initializer(n.input[1])
            wdt = DataType[inst.get_nodeattr("weightDataType")]
            idt = DataType[inst.get_nodeattr("inputDataType")]
            xnor = wdt == DataType["BIPOLAR"] and idt == DataType["BIPOLAR"]
            cands = [STORAGE_ROM]
            if W is not None and wdt.bitwidth() >= 2 and codebook_bits_needed(W) < min(wdt.bitwidth(), 9):
                cands.append(STORAGE_CODEBOOK)
            if W is not None and inst.calc_wmem() == 1 and not xnor:
                cands.append(STORAGE_CONSTANTS)
            scores = {}
            for c in cands:
                inst.set_nodeattr("weight_storage", c)
                r = inst.cost_params(model)
                res = type(inst).resources(r, self.dsp_family)
                scores[c] = float(np.asarray(res["LUT"])) + LUT_PER_BRAM18 * float(np.asarray(res["BRAM_18K"]))
            best = min(cands, key=lambda c: (scores[c], cands.index(c)))
            inst.set_nodeattr("weight_storage", best)
            if best != STORAGE_ROM:
                log.info("%s: weight_storage %s (est. %.0f vs rom %.0f LUT-equivalents)",
                                                 n.name, best, scores[best], scores[STORAGE_ROM])
        return model, False
