"""PYNQ driver package: io_shape_dict extraction and the float -> bytes -> float data path.

The graphs here are hand-built but real: a qonnx `Quant` pre-node, one HW node of the project's
op domain with the contract's attributes, and `Mul`/`Add` post-nodes. The "accelerator" between
the driver's packed input bytes and its packed output bytes is the golden numpy op fed with the
words the driver produced (the RTL simulation replaces it once `codesign.hw.rtlsim` takes input
words; see `test_driver_words_through_rtlsim`).
"""

from __future__ import annotations

import importlib
import importlib.util
import py_compile
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codesign.dataflow import golden
from codesign.dataflow import packing as host_packing
from codesign.hw import driver as drv

HW = "codesign.dataflow.ops"
RNG = np.random.default_rng(7)


def _vi(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _wrap(nodes, inputs, outputs, value_info, inits, datatypes: dict[str, str]):
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    graph = helper.make_graph(nodes, "hw", inputs, outputs, initializer=inits, value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")
    mw = ModelWrapper(model)
    for t, dt in datatypes.items():
        mw.set_tensor_datatype(t, DataType[dt])
    return mw


def quant_node(inp: str, out: str, prefix: str, scale: float, bits: int, signed: int) -> tuple[onnx.NodeProto, list]:
    node = helper.make_node("Quant", [inp, f"{prefix}_scale", f"{prefix}_zp", f"{prefix}_bits"], [out],
                            domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND",
                            name=f"{prefix}_Quant")
    return node, [_init(f"{prefix}_scale", scale), _init(f"{prefix}_zp", 0.0), _init(f"{prefix}_bits", bits)]


def mvau_graph():
    """(1,16) float -Quant(UINT4, scale 1/4)-> Mul 4 -> MVAU 16x4 (SIMD 4, PE 2, INT2 W, UINT2 out) -> Mul, Add."""
    W = RNG.integers(-2, 2, size=(16, 4)).astype(np.float32)
    T = np.sort(RNG.integers(-20, 40, size=(4, 3)), axis=1).astype(np.float32)
    q, qi = quant_node("global_in", "q_out", "in", 0.25, 4, 0)
    mul_in = helper.make_node("Mul", ["q_out", "in_rescale"], ["hw_in"], name="Mul_in")
    mvau = helper.make_node("MVAU", ["hw_in", "W0", "T0"], ["hw_out"], domain=HW, name="MVAU_0",
                            MW=16, MH=4, PE=2, SIMD=4, inputDataType="UINT4", weightDataType="INT2",
                            outputDataType="UINT2", accDataType="INT16", noActivation=0, ActVal=0,
                            binaryXnorMode=0, numInputVectors=[1], ram_style="auto", resType="lut",
                            mem_mode="internal_embedded")
    mul = helper.make_node("Mul", ["hw_out", "out_scale"], ["scaled"], name="Mul_out")
    add = helper.make_node("Add", ["scaled", "out_bias"], ["global_out"], name="Add_out")
    inits = qi + [_init("in_rescale", 4.0), _init("W0", W), _init("T0", T),
                  _init("out_scale", [0.5, 0.25, 1.0, 2.0]), _init("out_bias", 0.125)]
    mw = _wrap([q, mul_in, mvau, mul, add], [_vi("global_in", [1, 16])], [_vi("global_out", [1, 4])],
               [_vi("q_out", [1, 16]), _vi("hw_in", [1, 16]), _vi("hw_out", [1, 4]), _vi("scaled", [1, 4])],
               inits, {"hw_in": "UINT4", "hw_out": "UINT2", "W0": "INT2"})
    return mw, {"W": W, "T": T}


def thresholding_graph():
    """(1,4,2,2) NCHW float -Quant(INT8, scale 1)-> Transpose NHWC -> Thresholding(PE 2) UINT2 (no post-nodes)."""
    T = np.sort(RNG.integers(-100, 100, size=(4, 3)), axis=1).astype(np.float32)
    q, qi = quant_node("global_in", "q_out", "in", 1.0, 8, 1)
    tr = helper.make_node("Transpose", ["q_out"], ["hw_in"], perm=[0, 2, 3, 1], name="Transpose_0")
    th = helper.make_node("Thresholding", ["hw_in", "T0"], ["global_out"], domain=HW, name="Thresholding_0",
                          NumChannels=4, PE=2, numSteps=3, inputDataType="INT8", outputDataType="UINT2",
                          ActVal=0, numInputVectors=[1, 2, 2])
    mw = _wrap([q, tr, th], [_vi("global_in", [1, 4, 2, 2])], [_vi("global_out", [1, 2, 2, 4])],
               [_vi("q_out", [1, 4, 2, 2]), _vi("hw_in", [1, 2, 2, 4])], qi + [_init("T0", T)],
               {"hw_in": "INT8", "global_out": "UINT2"})
    return mw, {"T": T}


def sub_model(mw, node_names: list[str], inp: str, out: str):
    """A batch-1 model of some standard nodes of `mw` (pre- or post-part), for qonnx's execute_onnx."""
    from qonnx.core.modelwrapper import ModelWrapper

    nodes = [n for n in mw.graph.node if n.name in node_names]
    used = {i for n in nodes for i in n.input} | {o for n in nodes for o in n.output}
    inits = [i for i in mw.graph.initializer if i.name in used]
    vis = [v for v in mw.graph.value_info if v.name in used and v.name not in (inp, out)]
    graph = helper.make_graph(nodes, "part", [_vi(inp, mw.get_tensor_shape(inp))],
                              [_vi(out, mw.get_tensor_shape(out))], initializer=inits, value_info=vis)
    return ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def run_per_sample(model, inp: str, out: str, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    return np.concatenate([execute_onnx(model, {inp: x[i:i + 1].astype(np.float32)})[out] for i in range(len(x))])


def load_driver_modules(driver_dir: Path):
    """Import the generated board-side modules (driver_io, packing, driver) from their folder."""
    names = ("packing", "driver_io", "driver", "validate")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    sys.path.insert(0, str(driver_dir))
    try:
        mods = {n: importlib.import_module(n) for n in names}
    finally:
        sys.path.remove(str(driver_dir))
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    return mods


def make_fake_build(root: Path, graph_fn=mvau_graph, clock_ns: float | None = 10.0) -> Path:
    """A small but real build folder: dataflow.onnx, an estimate report and a contract-conforming
    `codesign_top` (a registered pass-through of the low bits) whose widths match the graph."""
    build = root / "build"
    (build / "rtl").mkdir(parents=True)
    (build / "report").mkdir()
    mw, _ = graph_fn()
    mw.save(str(build / "dataflow.onnx"))
    iod = drv.extract_io_shape_dict(mw)
    wi, wo = iod["in_width_bits"], iod["out_width_bits"]
    (build / "rtl" / "codesign_top.v").write_text(f"""\
module codesign_top (
    input  wire ap_clk,
    input  wire ap_rst_n,
    input  wire [{wi - 1}:0] s_axis_0_tdata,
    input  wire s_axis_0_tvalid,
    output wire s_axis_0_tready,
    output wire [{wo - 1}:0] m_axis_0_tdata,
    output wire m_axis_0_tvalid,
    input  wire m_axis_0_tready
);
    reg [{wo - 1}:0] data;
    reg valid;
    assign s_axis_0_tready = !valid || m_axis_0_tready;
    assign m_axis_0_tdata = data;
    assign m_axis_0_tvalid = valid;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            valid <= 1'b0;
            data <= {wo}'d0;
        end else if (s_axis_0_tready) begin
            valid <= s_axis_0_tvalid;
            data <= s_axis_0_tdata[{min(wi, wo) - 1}:0];
        end
    end
endmodule
""")
    (build / "rtl" / "weights_0.dat").write_text("0\n1\n")
    (build / "rtl" / "tb_codesign_top.v").write_text("module tb_codesign_top; endmodule\n")
    if clock_ns is not None:
        import json

        (build / "report" / "estimate_network_performance.json").write_text(json.dumps({
            "critical_path_cycles": 20, "max_cycles": 8, "max_cycles_node_name": "MVAU_0",
            "estimated_throughput_fps": 1e9 / (clock_ns * 8), "estimated_latency_ns": 20 * clock_ns}))
    return build


# ----------------------------------------------------------------------------------------------

def test_io_shape_dict_mvau():
    mw, _ = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    assert iod["idt"] == "UINT4" and iod["odt"] == "UINT2"
    assert iod["ishape_normal"] == [1, 16] and iod["ishape_folded"] == [1, 4, 4] and iod["ishape_packed"] == [1, 4, 2]
    assert iod["oshape_normal"] == [1, 4] and iod["oshape_folded"] == [1, 2, 2] and iod["oshape_packed"] == [1, 2, 1]
    assert (iod["in_width_bits"], iod["out_width_bits"]) == (16, 8)
    assert (iod["in_words_per_frame"], iod["out_words_per_frame"]) == (4, 2)
    assert [op["op"] for op in iod["pre_ops"]] == ["Quant", "Mul"]
    assert [op["op"] for op in iod["post_ops"]] == ["Mul", "Add"]
    assert iod["input_dma_name"] == iod["output_dma_name"] == drv.DMA_NAME


def test_io_shape_dict_rejects_unsupported_host_node():
    from codesign.errors import UnsupportedError

    mw, _ = mvau_graph()
    mw.graph.node[-1].op_type = "Softmax"
    with pytest.raises(UnsupportedError, match="post-node .*Softmax"):
        drv.extract_io_shape_dict(mw)


def test_driver_package_files_and_lazy_pynq(tmp_path):
    mw, _ = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    d = drv.write_driver_package(iod, tmp_path / "driver", bitfile_name="tfc_w2a2.bit", model_name="tfc_w2a2")
    for f in ("driver.py", "driver_io.py", "packing.py", "validate.py", "io_shape_dict.json", "README.md"):
        assert (d / f).is_file(), f
        if f.endswith(".py"):
            py_compile.compile(str(d / f), doraise=True)
    # The shipped packing.py is the host's, byte for byte (one implementation of the word layout).
    assert (d / "packing.py").read_bytes() == Path(host_packing.__file__).read_bytes()
    mods = load_driver_modules(d)
    assert mods["driver"].io_shape_dict == iod
    assert mods["driver"].DEFAULT_BITFILE.endswith("/bitfile/tfc_w2a2.bit")
    if importlib.util.find_spec("pynq") is None:
        with pytest.raises(ImportError):
            mods["driver"].Accelerator(str(d / "driver.py"))
    args = mods["driver"].main.__code__.co_varnames
    assert "argv" in args


@pytest.mark.parametrize("n", [1, 3])
def test_driver_datapath_mvau_bit_exact(tmp_path, n):
    """float -> driver bytes -> (golden accelerator on those words) -> driver float == golden execution."""
    mw, params = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    io = load_driver_modules(drv.write_driver_package(iod, tmp_path / "driver", "x.bit"))["driver_io"]
    x = RNG.uniform(-0.5, 5.0, size=(n, 16)).astype(np.float32)  # includes clipping on both ends
    x[0, :3] = [0.125, 0.375, 3.875]                               # rounding ties (half to even)

    # Golden: qonnx executes the pre-nodes, golden numpy the MVAU, qonnx the post-nodes.
    pre = sub_model(mw, ["in_Quant", "Mul_in"], "global_in", "hw_in")
    post = sub_model(mw, ["Mul_out", "Add_out"], "hw_out", "global_out")
    hw_in_golden = run_per_sample(pre, "global_in", "hw_in", x)
    hw_out_golden = golden.mvau(hw_in_golden, params["W"], params["T"])
    y_golden = run_per_sample(post, "hw_out", "global_out", hw_out_golden)

    # Driver: quantise and pack; the words are what s_axis_0 receives.
    x_int = io.to_hw_input(x, iod)
    assert np.array_equal(x_int, hw_in_golden)
    packed = io.float_to_packed(x, iod)
    assert packed.shape == (n, 4, 2) and packed.dtype == np.uint8
    words = host_packing.bytes_to_words(packed.tobytes(), iod["in_width_bits"])
    assert words == io.input_words(x_int, iod)

    # The accelerator (golden stand-in for the RTL): decode the words, compute, encode m_axis_0 words.
    acc_in = host_packing.unpack_words(words, 4, False, iod["in_fold"]).reshape(n, 16)
    acc_out = golden.mvau(acc_in, params["W"], params["T"])
    out_words = host_packing.pack_words(acc_out, 2, False, iod["out_fold"])
    assert len(out_words) == n * iod["out_words_per_frame"]

    y = io.from_hw_output(io.output_from_words(out_words, n, iod), iod)
    assert np.array_equal(y, y_golden.astype(np.float32))
    # And through the DMA byte image, as the board sees it.
    out_bytes = np.frombuffer(host_packing.words_to_bytes(out_words, iod["out_width_bits"]), np.uint8)
    assert np.array_equal(io.packed_to_float(out_bytes.reshape(n, 2, 1), iod), y)

    # The whole graph runs in execute_onnx (the HW ops are registered): same answer.
    y_full = run_per_sample(mw, "global_in", "global_out", x)
    assert np.array_equal(y, y_full)


def test_driver_datapath_signed_transpose(tmp_path):
    """INT8 input through Transpose (NCHW -> NHWC), fold PE=2, 4-bit-padded output words."""
    mw, params = thresholding_graph()
    iod = drv.extract_io_shape_dict(mw)
    assert iod["ishape_normal"] == [1, 2, 2, 4] and iod["ishape_folded"] == [1, 2, 2, 2, 2]
    assert iod["in_width_bits"] == 16 and iod["out_width_bits"] == 8 and iod["out_words_per_frame"] == 8
    io = load_driver_modules(drv.write_driver_package(iod, tmp_path / "driver", "x.bit"))["driver_io"]
    x = RNG.uniform(-200, 200, size=(2, 4, 2, 2)).astype(np.float32)
    pre = sub_model(mw, ["in_Quant", "Transpose_0"], "global_in", "hw_in")
    hw_in_golden = run_per_sample(pre, "global_in", "hw_in", x)
    x_int = io.to_hw_input(x, iod)
    assert np.array_equal(x_int, hw_in_golden) and x_int.min() < 0
    words = host_packing.bytes_to_words(io.float_to_packed(x, iod).tobytes(), 16)
    acc_in = host_packing.unpack_words(words, 8, True, 2).reshape(2, 2, 2, 4)
    assert np.array_equal(acc_in, hw_in_golden)
    acc_out = golden.thresholding(acc_in, params["T"])
    y = io.from_hw_output(io.output_from_words(host_packing.pack_words(acc_out, 2, False, 2), 2, iod), iod)
    assert np.array_equal(y, acc_out.astype(np.float32))


def test_driver_rejects_non_integer_pre_output(tmp_path):
    mw, _ = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    iod["pre_ops"] = iod["pre_ops"][:1]  # Quant alone yields multiples of 0.25, not integers
    io = load_driver_modules(drv.write_driver_package(iod, tmp_path / "driver", "x.bit"))["driver_io"]
    with pytest.raises(ValueError, match="did not produce integers"):
        io.to_hw_input(np.full((1, 16), 0.25, np.float32), iod)


def test_validate_predicted_labels(tmp_path):
    mw, _ = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    mods = load_driver_modules(drv.write_driver_package(iod, tmp_path / "driver", "x.bit"))
    out = np.array([[0.1, 0.9, 0.2, 0.0], [1.0, 0.0, 0.0, 0.5]], np.float32)
    assert mods["validate"].predicted_labels(out, iod).tolist() == [1, 0]


def _render_or_skip(mw, out_dir: Path):
    """The RTL renderer for the hand-built graph; skipped only where Verilator is absent."""
    from codesign.errors import ToolMissingError
    from codesign.hw import rtl
    from codesign.hw.tools import find_verilator

    try:
        find_verilator()
    except ToolMissingError as exc:
        pytest.skip(f"verilator unavailable: {exc}")
    return rtl.render_model(mw, out_dir)


@pytest.mark.slow
def test_driver_words_through_rtlsim(tmp_path):
    """The bytes a board would send are the words the simulated RTL accepts, and the driver's
    unpacking of the simulated m_axis_0 words equals the golden execution (bit-exact)."""
    from codesign.hw import rtlsim
    mw, params = mvau_graph()
    iod = drv.extract_io_shape_dict(mw)
    io = load_driver_modules(drv.write_driver_package(iod, tmp_path / "driver", "x.bit"))["driver_io"]
    design = _render_or_skip(mw, tmp_path / "rtl")
    n = 4
    x = RNG.uniform(-0.5, 5.0, size=(n, 16)).astype(np.float32)
    packed = io.float_to_packed(x, iod)                     # what the DMA would read from memory
    words = host_packing.bytes_to_words(packed.tobytes(), iod["in_width_bits"])
    res = rtlsim.simulate_words(design, words, n * iod["out_words_per_frame"], seed=3, p_bubble=0.2, p_stall=0.2)
    assert not res.timed_out
    y = io.from_hw_output(io.output_from_words(res.out_words, n, iod), iod)
    pre = sub_model(mw, ["in_Quant", "Mul_in"], "global_in", "hw_in")
    post = sub_model(mw, ["Mul_out", "Add_out"], "hw_out", "global_out")
    hw_out = golden.mvau(run_per_sample(pre, "global_in", "hw_in", x), params["W"], params["T"])
    assert np.array_equal(y, run_per_sample(post, "hw_out", "global_out", hw_out))
