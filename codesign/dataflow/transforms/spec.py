"""Lowering of a contracts.md model spec to the HW node chain as parameter dicts (no weights).

Why a lowering here: the vectorised search path (``codesign.dataflow.fast``) scores candidates
of a spec (bit widths, channel counts, PE/SIMD as numpy arrays) without building a graph. This
module is the op-creating part of that path (it decides which HW ops a conv/pool/fc layer
becomes, mirroring the QONNX lowering); every model of the created ops (cycles, resources,
folding rules) is asked of the op classes by ``fast.py``.

``spec_chain`` yields one parameter dict per HW node (arrays over n candidates) plus the
followers (nodes whose fold takes the consumer's input fold); ``spec_graph`` builds the
equivalent weightless HW graph of one candidate for the per-node model.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import numpy as np

from codesign.dataflow.ops.mvau import mvau_acc_bits_worst

log = logging.getLogger(__name__)

_GRAPH_HINT = ("estimate the compiled dataflow graph instead (FastNet.from_model on the model lowered by "
               "codesign.dataflow.compiler)")


def spec_chain(spec: Mapping[str, Any], weight_bits: Mapping[str, Any], act_bits: Mapping[str, Any],
               pe: Mapping[str, Any], simd: Mapping[str, Any], channels: Mapping[str, Any] | None,
               input_bits: Any, aux_pe: Mapping[str, Any] | None, ram_style: str, res_type: str,
               label_select_k: int | None, n_of: Callable[[Any], int]
               ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], int]], int]:
    """The HW node chain of ``spec``: conv -> [FMPadding] -> SlidingWindow -> MVAU (with
    thresholds when the layer has an activation), pool -> StreamingMaxPool, fc -> MVAU, last
    fc -> MVAU without activation, optional LabelSelect. Fold attributes not given (followers,
    top-k PE unless in ``aux_pe``; a max pool takes all channels per word) are None for the caller to choose."""
    from codesign.errors import UnsupportedError
    from codesign.models.zoo import refuse_graph_spec

    refuse_graph_spec(dict(spec), "the vectorised spec estimate (codesign.dataflow.fast)", _GRAPH_HINT, UnsupportedError)
    channels = channels or {}
    aux_pe = aux_pe or {}
    n = n_of((weight_bits, act_bits, pe, simd, channels, input_bits, aux_pe))
    A = lambda v: np.broadcast_to(np.asarray(v, np.int64), (n,)) if np.ndim(v) else np.full(n, int(v), np.int64)  # noqa: E731
    ib = A(input_bits)
    c_in, h, w = spec["input_shape"]
    C = A(c_in)
    cur_bits = ib
    cur_bipolar = np.zeros(n, bool)  # the image input is unsigned, never bipolar
    flat = False
    counters: dict[str, int] = {}
    layers: list[dict[str, Any]] = []
    followers: list[tuple[dict[str, Any], int]] = []  # (node, index of the MVAU it follows)

    def name(op: str) -> str:
        i = counters.get(op, 0)
        counters[op] = i + 1
        return f"{op}_{i}"

    qls = [l for l in spec["layers"] if l["type"] in ("conv", "fc")]
    last_name = qls[-1]["name"]
    for layer in spec["layers"]:
        t = layer["type"]
        if t == "conv":
            k, s, pad = int(layer["kernel"]), int(layer.get("stride", 1)), int(layer.get("padding", 0))
            if pad:
                fm = {"op_type": "FMPadding", "name": name("FMPadding"), "H": h, "W": w, "pad_t": pad,
                      "pad_l": pad, "pad_b": pad, "pad_r": pad, "C": C, "SIMD": None, "bits": cur_bits}
                layers.append(fm)
                h, w = h + 2 * pad, w + 2 * pad
            oh, ow = (h - k) // s + 1, (w - k) // s + 1
            pointwise = k == 1 and s == 1 and not pad  # as the QONNX lowering: no window
            if not pointwise:
                sw = {"op_type": "SlidingWindow", "name": name("SlidingWindow"), "C": C, "SIMD": None, "IH": h,
                      "IW": w, "OH": oh, "OW": ow, "kh": k, "kw": k, "sh": s, "sw": s, "dh": 1, "dw": 1,
                      "abits": cur_bits, "ram_style": "distributed"}
                layers.append(sw)
            mw, nv, h, w = C * k * k, oh * ow, oh, ow
            if pad:
                followers.append((fm, len(layers)))
            if not pointwise:
                followers.append((sw, len(layers)))
        elif t == "pool":
            kp = int(layer["kernel"])
            nm = name("StreamingMaxPool")
            layers.append({"op_type": "StreamingMaxPool", "name": nm, "H": h, "W": w,
                           "k": kp, "C": C, "PE": C, "bits": cur_bits, "ram_style": "auto"})  # all channels per word
            h, w = h // kp, w // kp
            continue
        elif t == "flatten":
            flat = True
            continue
        if t == "fc":
            mw, nv = (C * h * w), 1
            h = w = 1
        lname = layer["name"]
        wb = A(weight_bits[lname])
        is_last = lname == last_name
        act = bool(layer.get("act", True)) and not is_last
        mh = A(spec["num_classes"]) if is_last else A(channels.get(lname, layer.get("out_channels", layer.get("out_features"))))
        ab_out = A(act_bits[lname]) if act else None
        wmin = np.where(wb == 1, -1, -(2 ** (wb - 1)))
        wmax = np.where(wb == 1, 1, 2 ** (wb - 1) - 1)
        amin = np.where(cur_bipolar, -1, 0)
        amax = np.where(cur_bipolar, 1, 2 ** cur_bits - 1)
        acc = mvau_acc_bits_worst(mw, wmin, wmax, amin, amax)
        xnor = ((wb == 1) & cur_bipolar).astype(np.int64)
        mv = {"op_type": "MVAU", "name": name("MVAU"), "MW": mw, "MH": mh, "PE": A(pe[lname]),
              "SIMD": A(simd[lname]), "Nv": nv, "wbits": wb, "abits": cur_bits,
              "obits": ab_out if act else acc, "acc_bits": acc,
              "n_thr": (2 ** ab_out - 1) if act else np.zeros(n, np.int64),
              "ram_style": ram_style, "resType": res_type, "xnor": xnor, "_layer": lname,
              "_act": act, "_wbipolar": wb == 1}
        layers.append(mv)
        C = mh
        if act:
            cur_bits, cur_bipolar = ab_out, ab_out == 1
        else:
            cur_bits, cur_bipolar = acc, np.zeros(n, bool)
    if label_select_k:
        layers.append({"op_type": "LabelSelect", "name": name("LabelSelect"), "L": C, "PE": aux_pe.get("LabelSelect_0"),
                       "K": int(label_select_k), "vbits": cur_bits})
    return layers, followers, n


def spec_graph(layers: list[dict[str, Any]], index: int, input_shape: Any, input_bits: Any) -> Any:
    """The weightless HW graph of candidate ``index`` of a ``spec_chain`` (attributes as the
    QONNX lowering writes them)."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    from codesign.dataflow.ops import make_hw_node

    at = lambda v: int(np.asarray(v).reshape(-1)[index] if np.ndim(v) else v)  # noqa: E731

    def dt(bits: int, bipolar: bool, signed: bool = False) -> str:
        if bipolar:
            return "BIPOLAR"
        if bits == 1 and not signed:
            return "BINARY"
        return f"{'INT' if signed else 'UINT'}{bits}"

    nodes, tin = [], "in0"
    cur = dt(at(input_bits), False)
    for i, p in enumerate(layers):
        tout = f"t{i}"
        op, nm = p["op_type"], p["name"]
        if op == "MVAU":
            wb = at(p["wbits"])
            odt = dt(at(p["obits"]), at(p["obits"]) == 1 and p["_act"]) if p["_act"] else f"INT{at(p['acc_bits'])}"
            nodes.append(make_hw_node("MVAU", [tin, f"W{i}"], [tout], nm, MW=at(p["MW"]), MH=at(p["MH"]),
                                      PE=at(p["PE"]), SIMD=at(p["SIMD"]), inputDataType=cur,
                                      weightDataType=dt(wb, wb == 1, signed=True), outputDataType=odt,
                                      noActivation=0 if p["_act"] else 1, binaryXnorMode=at(p["xnor"]),
                                      numInputVectors=[at(p["Nv"])], ram_style=p["ram_style"],
                                      resType=p["resType"]))
            cur = odt
        elif op == "SlidingWindow":
            nodes.append(make_hw_node(op, [tin], [tout], nm, ConvKernelDim=[p["kh"], p["kw"]],
                                      IFMChannels=at(p["C"]), IFMDim=[p["IH"], p["IW"]], OFMDim=[p["OH"], p["OW"]],
                                      SIMD=at(p["SIMD"]), Stride=[p["sh"], p["sw"]], Dilation=[1, 1],
                                      inputDataType=cur, outputDataType=cur, ram_style=p["ram_style"]))
        elif op == "FMPadding":
            nodes.append(make_hw_node(op, [tin], [tout], nm, ImgDim=[p["H"], p["W"]],
                                      Padding=[p["pad_t"], p["pad_l"], p["pad_b"], p["pad_r"]],
                                      NumChannels=at(p["C"]), SIMD=at(p["SIMD"]), inputDataType=cur))
        elif op == "StreamingMaxPool":
            nodes.append(make_hw_node(op, [tin], [tout], nm, ImgDim=[p["H"], p["W"]], PoolDim=[p["k"], p["k"]],
                                      NumChannels=at(p["C"]), PE=1, dataType=cur))  # FINN's 2-D pool ignores PE
        elif op == "LabelSelect":
            nodes.append(make_hw_node(op, [tin], [tout], nm, Labels=at(p["L"]), PE=at(p["PE"]),
                                      K=int(p["K"]), inputDataType=cur, outputDataType="UINT32"))
        tin = tout
    c0, h0, w0 = input_shape
    first = layers[0]
    in_shape = [1, c0 * h0 * w0] if first["op_type"] == "MVAU" else [1, h0, w0, c0]
    graph = helper.make_graph(nodes, "fast_spec", [helper.make_tensor_value_info("in0", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(tin, TensorProto.FLOAT, None)])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="codesign.fast"))
    model.set_tensor_datatype("in0", DataType[dt(at(input_bits), False)])
    try:  # shapes let the stream passes (InsertDWC/InsertFIFO) run on this graph
        from qonnx.transformation.infer_shapes import InferShapes

        model = model.transform(InferShapes())
    except Exception as exc:  # noqa: BLE001 - the cost model does not need shapes
        log.debug("shape inference on the spec graph failed: %s", exc)
    return model


