"""Weight storage modes of the MVAU: codebook (k-bit cluster indices + integer centroid table)
and constants (fully unfolded, zero weights gone, equal magnitudes shared). Each is checked in
Verilator against the golden integer matmul under random input bubbles and output stalls, in
Yosys against plain ROM storage, and inside a compiled network against the QONNX model."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from codesign.dataflow import golden
from codesign.dataflow.ops.mvau import MVAU, codebook_of, constant_dot, csd_digits
from codesign.errors import UnsupportedError
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.rtlsim import first_mismatch, run_frames

BP = dict(p_bubble=0.3, p_stall=0.35)


def _spec(name, W, PE, SIMD, storage, T=None, idt="UINT4", wdt="INT4", odt="UINT2", act_val=0):
    MW, MH = W.shape
    a = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt,
             outputDataType=odt if T is not None else "INT16", ActVal=act_val, noActivation=int(T is None),
             numInputVectors=[1], resType="lut", ram_style="auto", weight_storage=storage)
    return HWNodeSpec(name, "MVAU", a, {"W": W} if T is None else {"W": W, "T": T})


def _sim(tmp_path, spec, x, expected):
    design = render_nodes([spec], tmp_path / "rtl")
    res = run_frames(design, x, seed=3, **BP)
    assert first_mismatch(np.asarray(expected).reshape(len(x), -1), res.outputs) is None
    return design, res


def _latency_model(spec):
    a = MVAU.declared_defaults()
    a.update(spec.attrs)
    return MVAU.latency(MVAU.params_from_attrs(a, spec.inits))


def test_codebook_and_csd_helpers():
    W = np.array([[-6, 3, 0], [3, 3, -6], [0, 7, 7]])
    cb = codebook_of(W)
    assert cb.kbits == 2 and np.array_equal(cb.centroids[cb.indices], W)  # exact reconstruction
    for a in range(1, 300):
        assert sum(d << j for j, d in csd_digits(a)) == a
    assert len(csd_digits(7)) == 2 and len(csd_digits(255)) == 2
    cd = constant_dot(np.array([[0, 3, -3], [1, 0, 0]]), 4, 4)
    assert sorted(cd.products) == [(0, 3), (1, 1)]  # 3 and -3 on input 0 share one product
    key = [[cd.products[i] for i in t] for t in cd.pos], [[cd.products[i] for i in t] for t in cd.neg]
    assert key == ([[(1, 1)], [(0, 3)], []], [[], [], [(0, 3)]])


def test_storage_refusals_name_the_node():
    W = np.arange(-8, 8).reshape(4, 4)  # 16 distinct values: no 3-bit codebook
    with pytest.raises(UnsupportedError, match=r"^cb: .*16 distinct values.*codebook_bits") as e:
        spec = _spec("cb", W, 1, 1, "codebook")
        spec.attrs["codebook_bits"] = 3
        render_nodes([spec], "/tmp/never_rendered_cb")
    assert "\n" not in str(e.value)
    with pytest.raises(UnsupportedError, match=r"^cst: weight_storage=constants needs a fully unfolded layer"):
        render_nodes([_spec("cst", W, 2, 4, "constants")], "/tmp/never_rendered_cst")
    with pytest.raises(UnsupportedError, match=r"saves nothing over INT4"):
        render_nodes([_spec("cb4", W, 4, 4, "codebook")], "/tmp/never_rendered_cb4")


def test_codebook_mvau_rtlsim_bit_exact(tmp_path):
    """Folded (PE 2, SIMD 4, 12 words per PE), thresholds, 5 centroids -> 3-bit indices."""
    rng = np.random.default_rng(zlib.crc32(b"codebook"))
    MW, MH, PE, SIMD = 16, 6, 2, 4
    W = np.array([-7, -2, 0, 3, 6])[rng.integers(0, 5, size=(MW, MH))]
    x = rng.integers(0, 16, size=(6, MW))
    acc = golden.mvau(x, W)
    T = np.sort(rng.integers(int(acc.min()), int(acc.max()) + 1, size=(MH, 3)), axis=1).astype(np.float64)
    spec = _spec("mv cb", W, PE, SIMD, "codebook", T)
    design, _ = _sim(tmp_path, spec, x, golden.mvau(x, W, T))
    # the ROMs hold 3-bit indices, not 4-bit codes
    assert "reg [11:0] wrom0 [0:11]" in (design.out_dir / design.nodes[0].files[-1]).read_text()
    # the lookup stage is counted: one more cycle in the RTL (measured against plain storage of
    # the same layer, without stalls) and in the model's pipeline_depth
    plain = _spec("mv", W, PE, SIMD, "rom", T)
    lat = {}
    for name, s in (("codebook", spec), ("rom", plain)):
        lat[name] = run_frames(render_nodes([s], tmp_path / f"lat_{name}"), x[:2], seed=0).performance(100.0)
    assert lat["codebook"]["latency_cycles"] - lat["rom"]["latency_cycles"] == 1
    assert _latency_model(spec) == _latency_model(plain) + 1


def test_constants_mvau_rtlsim_bit_exact(tmp_path):
    """Fully unfolded, 70% zeros, signed inputs, no activation (the raw accumulator)."""
    rng = np.random.default_rng(zlib.crc32(b"constants"))
    MW, MH = 12, 5
    W = rng.integers(-8, 8, size=(MW, MH))
    W[rng.random(W.shape) < 0.7] = 0
    W[:, 3] = 0  # a PE without any weight
    x = rng.integers(-8, 8, size=(6, MW))
    spec = _spec("mv const", W, MH, MW, "constants", idt="INT4")
    design, _ = _sim(tmp_path, spec, x, golden.mvau(x, W))
    assert any(f.endswith("_cdot.v") for f in design.nodes[0].files)
    # no weight ROM at all in the constants node
    assert "initial $readmemh" not in (design.out_dir / design.nodes[0].files[-1]).read_text()


@pytest.mark.slow
def test_yosys_codebook_and_constants_save(tmp_path):
    """One small layer in each mode (same integer W): codebook saves ROM LUTs on a deep ROM,
    constants saves most of the datapath of a pruned fully unfolded layer; the estimates move
    the same way."""
    from codesign.hw.synth import synth_design

    rng = np.random.default_rng(5)
    out = {}
    # 2-bit indices, depth 512; centroids whose 4-bit codes share no bit pattern: Yosys drops a
    # code bit that is constant over the ROM or equal to another one, so a degenerate codebook
    # such as {-5, -1, 2, 6} (bit 1 always set, bit 3 = bit 0) is already ~2 bits wide in a
    # plain ROM (measured: 252 LUT both ways) and has nothing left to save
    Wd = np.array([-7, -2, 3, 5])[rng.integers(0, 4, size=(512, 2))]
    Ws = rng.integers(-8, 8, size=(16, 4))
    Ws[rng.random(Ws.shape) < 0.75] = 0
    for name, spec in (("rom_deep", _spec("n", Wd, 1, 2, "rom")), ("codebook", _spec("n", Wd, 1, 2, "codebook")),
                       ("rom_flat", _spec("n", Ws, 4, 16, "rom")), ("constants", _spec("n", Ws, 4, 16, "constants"))):
        rep = synth_design(render_nodes([spec], tmp_path / name), "xc7")
        a = MVAU.declared_defaults()
        a.update(spec.attrs)
        est = MVAU.resources(MVAU.params_from_attrs(a, spec.inits))
        out[name] = (rep["nodes"]["n"]["LUT"], int(np.asarray(est["LUT"])))
    (tmp_path / "counts.json").write_text(json.dumps(out))
    assert out["codebook"][0] < out["rom_deep"][0], out
    assert out["constants"][0] < 0.7 * out["rom_flat"][0], out
    assert out["codebook"][1] < out["rom_deep"][1] and out["constants"][1] < out["rom_flat"][1], out


def test_compiled_clustered_layer_exact(tmp_path):
    """A TFC-style MLP whose first layer is clustered to 4 shared values (the project's
    relevance-weighted k-means, tied): compiled with weight_storage=auto, the deep first layer
    gets codebook storage (cheaper by the cost model), and the RTL of the whole network is
    bit-exact against the compiled graph and the QONNX model."""
    import torch

    from codesign.compress.cluster import cluster_layer
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.hw.rtlsim import rtlsim_build
    from dataflow_helpers import calibrate_and_randomise_bn, export, images
    from test_dataflow_lowering import mlp

    model = mlp([4, 4], [4], hidden=16)
    x = images(32, (1, 28, 28))
    calibrate_and_randomise_bn(model, x)
    fc0 = model[2]
    with torch.no_grad():
        w = fc0.weight
        w.copy_(cluster_layer(w, 4, relevance=w.abs()).tie(w))
    export(model, x, tmp_path / "model.onnx")
    build = tmp_path / "BUILD"
    res = build_dataflow(str(tmp_path / "model.onnx"), BuildConfig(output_dir=build, target_fps=4000,
                                                                   weight_storage="auto"))
    from qonnx.custom_op.registry import getCustomOp

    mv = [n for n in res.model.graph.node if n.op_type == "MVAU"]
    modes = [getCustomOp(n).get_nodeattr("weight_storage") for n in mv]
    assert modes[0] == "codebook", modes
    perf = rtlsim_build(build, images(3, (1, 28, 28), offset=200), backpressure=True, seed=2)
    assert perf["bit_exact_frames"] == 3 and "source.onnx" in " ".join(perf["checked_against"])


def _one_mvau_model(W, PE, SIMD, storage="rom"):
    """A graph holding one MVAU (no activation) over UINT4 inputs, W as its initializer."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.dataflow.ops.base import make_hw_node

    MW, MH = W.shape
    n = make_hw_node("MVAU", ["x", "W"], ["y"], "mv0", MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType="UINT4",
                     weightDataType="INT4", outputDataType="INT16", noActivation=1, numInputVectors=[1],
                     weight_storage=storage)
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, MW])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, MH])])
    m = ModelWrapper(helper.make_model(g))
    m.set_initializer("W", W.astype(np.float32))
    m.set_tensor_datatype("x", DataType["UINT4"])
    m.set_tensor_datatype("y", DataType["INT16"])
    return m


def test_choose_weight_storage_follows_the_cost_model():
    """Sparse and fully unfolded -> constants; deep ROM with 4 values -> codebook; 16 distinct
    values -> rom; a kept (user-forced) node and a node at rom without all_nodes are left alone."""
    from qonnx.custom_op.registry import getCustomOp

    from codesign.dataflow.transforms.hw import ChooseWeightStorage

    rng = np.random.default_rng(4)
    sparse = rng.integers(-8, 8, size=(16, 8))
    sparse[rng.random(sparse.shape) < 0.8] = 0
    deep = np.array([-6, -1, 2, 5])[rng.integers(0, 4, size=(512, 4))]
    dense = np.arange(-8, 8)[rng.permutation(np.arange(512 * 4)) % 16].reshape(512, 4)

    def choose(W, PE, SIMD, storage="rom", **kw):
        m = _one_mvau_model(W, PE, SIMD, storage)
        m = m.transform(ChooseWeightStorage(**kw), make_deepcopy=False, cleanup=False)
        return getCustomOp(m.graph.node[0]).get_nodeattr("weight_storage")

    assert choose(sparse, 8, 16, all_nodes=True) == "constants"
    assert choose(deep, 1, 1, all_nodes=True) == "codebook"
    assert choose(dense, 1, 1, all_nodes=True) == "rom"
    assert choose(deep, 1, 1, storage="auto") == "codebook"      # "auto" is resolved in any build
    assert choose(deep, 1, 1) == "rom"                            # rom stays without all_nodes
    assert choose(deep, 1, 1, all_nodes=True, keep={"mv0"}) == "rom"


def test_folding_config_pins_weight_storage():
    """A folding config's weight_storage is applied to its layer (it is a choice, not derived
    from the model); a value the op does not know is refused when read."""
    from qonnx.custom_op.registry import getCustomOp

    from codesign.dataflow.folding import apply_folding_config

    deep = np.array([-6, -1, 2, 5])[np.random.default_rng(1).integers(0, 4, size=(64, 4))]
    m = _one_mvau_model(deep, 1, 1)
    apply_folding_config(m, {"mv0": {"PE": 2, "SIMD": 4, "weight_storage": "codebook"}}, [])
    inst = getCustomOp(m.graph.node[0])
    assert (inst.get_nodeattr("weight_storage"), inst.get_nodeattr("PE")) == ("codebook", 2)
    bad = _one_mvau_model(deep, 1, 1)
    apply_folding_config(bad, {"mv0": {"weight_storage": "flash"}}, [])
    with pytest.raises(Exception, match="flash"):
        getCustomOp(bad.graph.node[0]).get_nodeattr("weight_storage")
