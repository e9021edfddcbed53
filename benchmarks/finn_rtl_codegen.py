"""Run FINN+'s own code generation for one MVAU_rtl (+ Thresholding_rtl) layer.

This file is executed by the FINN+ interpreter (``.venv-finn/bin/python``), never imported by
codesign: it builds a one-layer ONNX graph with FINN+'s MVAU_rtl node (internal_decoupled weights,
resType dsp) and, when thresholds are given, a Thresholding_rtl node, and calls each node's
``generate_hdl`` for a Pynq-Z2 part, so the wrappers, the memstream wrapper, the weight file and
the binary-search threshold files are exactly the ones FINN+ writes for that board.

Input: a .npz (W [MW, MH] ints, optional T [MH, N] ints) and a JSON with the layer parameters.
Output: the generated files in ``out_dir`` and ``finn_layer.json`` naming the top modules and
the stream widths the caller needs to stitch the layer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# this folder holds codesign's finn.py, which would shadow the real `finn` package
sys.path[:] = [q for q in sys.path if Path(q or '.').resolve() != Path(__file__).resolve().parent]


def main(argv: list[str]) -> int:
    params_path, npz_path, out_dir = Path(argv[0]), Path(argv[1]), Path(argv[2]).resolve()
    p = json.loads(params_path.read_text())
    data = np.load(npz_path)
    out_dir.mkdir(parents=True, exist_ok=True)

    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import qonnx_make_model

    import finn.custom_op.fpgadataflow.rtl  # noqa: F401  (registers the *_rtl ops)

    MW, MH, PE, SIMD = p["MW"], p["MH"], p["PE"], p["SIMD"]
    W = data["W"].astype(np.float32)
    has_thr = "T" in data.files
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, MW])
    acc = helper.make_tensor_value_info("acc", TensorProto.FLOAT, [1, MH])
    outp = helper.make_tensor_value_info("outp", TensorProto.FLOAT, [1, MH])
    dom = "finn.custom_op.fpgadataflow.rtl"
    mv = helper.make_node(
        "MVAU_rtl", ["inp", "W"], ["acc"], domain=dom, backend="fpgadataflow", name=p["mvau_name"],
        MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=p["idt"], weightDataType=p["wdt"],
        outputDataType=p["accdt"], noActivation=1, mem_mode="internal_decoupled", resType="dsp",
        ram_style=p.get("ram_style", "auto"), numInputVectors=[1],
        code_gen_dir_ipgen=str(out_dir))
    nodes = [mv]
    if has_thr:
        T = data["T"].astype(np.float32)
        th = helper.make_node(
            "Thresholding_rtl", ["acc", "T"], ["outp"], domain=dom, backend="fpgadataflow",
            name=p["thr_name"], NumChannels=MH, PE=p["thr_pe"], numSteps=int(T.shape[1]),
            inputDataType=p["accdt"], weightDataType=p["accdt"], outputDataType=p["odt"],
            ActVal=int(p.get("actval", 0)), numInputVectors=[1], code_gen_dir_ipgen=str(out_dir))
        nodes.append(th)
    graph = helper.make_graph(nodes, "finn_layer", [inp], [outp if has_thr else acc])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="codesign-vs-finn"))
    model.set_tensor_datatype("inp", DataType[p["idt"]])
    model.set_tensor_datatype("W", DataType[p["wdt"]])
    model.set_initializer("W", W)
    model.set_tensor_datatype("acc", DataType[p["accdt"]])
    if has_thr:
        model.set_tensor_datatype("T", DataType[p["accdt"]])
        model.set_initializer("T", T)
        model.set_tensor_datatype("outp", DataType[p["odt"]])
    part, clk_ns = p.get("part", "xc7z020clg400-1"), float(p.get("clk_ns", 10.0))
    info: dict = {"part": part, "clk_ns": clk_ns}
    for node in model.graph.node:
        inst = getCustomOp(node)
        inst.generate_hdl(model, part, clk_ns)
        key = "mvau" if node.op_type == "MVAU_rtl" else "thr"
        info[key] = {"top": inst.get_nodeattr("gen_top_module"), "name": node.name,
                     "in_width": inst.get_instream_width_padded(0),
                     "out_width": inst.get_outstream_width_padded(0)}
        if key == "mvau":
            info[key]["w_width"] = inst.get_instream_width_padded(1)
            info[key]["wmem"] = inst.calc_wmem()
    (out_dir / "finn_layer.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
