"""Cost model: formulas against hand-computed values, calibration, boards, reports, fast path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from codesign.dataflow import cost as C
from codesign.dataflow.boards import BOARDS, get_board, utilisation
from codesign.dataflow.cost import Calibration, model_cost, node_cost
from codesign.dataflow.ops import fifo as FI
from codesign.dataflow.ops import mvau as MV
from codesign.dataflow.fast import FastNet
from codesign.dataflow.ops import make_hw_node
from codesign.dataflow.reports import REPORT_FILES, write_reports
from codesign.errors import CodesignError
from codesign.models.zoo import make_spec, quant_layers


# ----------------------------------------------------------------------------- formulas

@pytest.mark.parametrize("depth,width,expected", [
    (20000, 1, 2),      # 16K x 1
    (8193, 2, 2),       # 8K x 2
    (4096, 4, 1), (5000, 3, 2),          # 4K x 4
    (2048, 9, 1), (2049, 8, 2),          # 2K x 9
    (1024, 18, 1), (1024, 36, 2),        # 1K x 18 (also for deep, wide memories)
    (512, 36, 1), (300, 72, 2),          # 512 x 36
    (64, 784, 22),                       # TFC layer 0 forced to block RAM: ceil(784/36)
    (18432, 32, 36),                     # CNV-w1a1 MVAU_5 (2304x256, PE1 SIMD32): 18 x 2
    (0, 8, 0),
])
def test_bram18_table(depth, width, expected):
    assert int(C.bram18_count(depth, width)) == expected


def test_mvau_bram_follows_ram_style():
    # CNV-w1a1 layer 5: WMEM = 2304*256/32 = 18432 deep, 32 bits wide (one PE: one weight ROM);
    # the threshold ROM is 256 deep (MH/PE) x 13 bits (1 threshold of ACCW 13)
    kw = dict(MW=2304, MH=256, PE=1, SIMD=32, Nv=1, wbits=1, abits=1, obits=1, acc_bits=13, n_thr=1)
    auto = C.mvau_cost(**kw, ram_style=C.RAM_AUTO)
    # auto (no ram_style in the RTL): Yosys 0.23 takes block RAM where the bits cost more in
    # logic (1/64 each) than the RAMB18s (129 each): the weights (576 Kib) are deeper than one
    # BRAM, so the generator banks them (timing: no logic after a BRAM's clock-to-out): 18 banks
    # of 1K x 32, 2 BRAM18 each = 36 (unbanked, Yosys would pack the 18 slices into 16 RAMB36 =
    # 32 BRAM18, measured on CNV's 9216 x 32 ROMs: 8 RAMB36 each); the thresholds (3.3 Kib) stay
    # in logic; the input buffer (2 x 128 words x 32 bits, 11 RAM64M x 4 in LUTRAM) costs more
    # than one RAMB18 and goes there (measured on the corpus' mvau_ibuf_0: one RAMB18E1)
    assert int(auto["BRAM_18K"]) == 36 + 1 and int(auto["URAM"]) == 0
    dist = C.mvau_cost(**kw, ram_style=C.RAM_DISTRIBUTED)
    # distributed must not report "free" memory: the weight bits move into LUTs, 64 words per
    # LUT6 per bit (18432/64 = 288 per bit) plus a mux tree of clog2(288) = 9 levels, each times
    # its fitted factor; auto's banked ROM has the bank select instead (18 selects, 18:1 x 32 bits)
    assert int(dist["BRAM_18K"]) == 1  # only the input buffer: ram_style applies to the ROMs
    cf = MV.RESOURCE_COEFFS["LUT"]
    assert int(dist["LUT"]) - int(auto["LUT"]) == pytest.approx(
        cf[7] * 32 * 288 + cf[9] * 32 * 288 * 9 - cf[10] * 18 - cf[11] * 18 * 32, abs=1)
    # the generator writes ram_style "block" for ultra (Yosys infers no URAM): BRAM as block
    ultra = C.mvau_cost(**kw, ram_style=C.RAM_ULTRA)
    assert int(ultra["URAM"]) == 0 and int(ultra["BRAM_18K"]) == 36 + 1 + 1  # + thresholds + input buffer
    # shallow memories (WMEM <= 128) stay in logic under auto, go to BRAM when forced: one
    # weight ROM (64 deep x 8 bits) and one threshold ROM (8 deep x 13 bits) per PE, 1 BRAM18 each
    small = dict(kw, MW=64, MH=64, PE=8, SIMD=8)
    assert int(C.mvau_cost(**small)["BRAM_18K"]) == 0
    assert int(C.mvau_cost(**small, ram_style=C.RAM_BLOCK)["BRAM_18K"]) == 8 * (1 + 1)


def test_mvau_cycles_and_lut_by_hand():
    assert int(C.mvau_cycles(784, 64, 16, 49, 1)) == 64          # TFC layer 0 at FINN's folding
    assert int(C.mvau_cycles(27, 64, 16, 3, 900)) == 32400       # CNV layer 0: (64/16)*(27/3)*30*30
    # 64x64, PE=SIMD=8, XNOR (W=A=1), acc 8 bits, 1 threshold, counted from codesign_mvau.v:
    #   leaves per PE: SIMD = 8 one-bit xnors; tree: clog2(8) = 3 levels, XNOR counts keep only
    #   their significant bits (Yosys drops the zero-extended ones): 4 x 2 + 2 x 3 + 1 x 4 = 18 bits
    #   per PE (x8 PE = 144); accumulator 8 bits, 1 compare of 8 bits,
    #   no popcount tree (1 threshold); input buffer: SF = 8 -> 2 x 8 words of 8 bits in 8 LUTs;
    #   ROMs in logic (auto, <= 128 deep): weights 64 deep x 8 bits = 8 LUTs, thresholds 8 deep x
    #   8 bits = 8 LUTs per PE (x8 = 128); output 1 bit per PE
    p = dict(MW=64, MH=64, PE=8, SIMD=8, wbits=1, abits=1, obits=1, acc_bits=8, n_thr=1, ram_style="auto",
             resType="lut", xnor=1)
    f = MV.mvau_resource_features(p)
    # ROMs <= 64 deep: no mux tree; not banked: no bank select
    assert [int(v) for v in f["LUT"]] == [1, 144, 64, 64, 64, 0, 8, 128, 8, 0, 0, 0]
    # FF: tree 144, accumulators 64, x1 + x2 (2 x 8) + weight word (64) + threshold word (64),
    #   compare bits 8, output 8, delay line (1 + 3 stages) x (valid, first, last + 3 fold bits)
    #   + 2 x 3 sf bits + 3 nf bits = 24 + 9
    assert [int(v) for v in f["FF"]] == [1, 144, 64, 144, 8, 8, 33]
    r = C.mvau_cost(64, 64, 8, 8, 1, 1, 1, 1, 8, 1, xnor=1)
    assert int(r["LUT"]) == int(np.floor(np.dot(MV.RESOURCE_COEFFS["LUT"], [float(v) for v in f["LUT"]])))
    assert int(r["cycles"]) == 64


def test_mvau_dsp():
    kw = dict(MW=64, MH=64, PE=8, SIMD=8, Nv=1, obits=4, acc_bits=16, n_thr=15)
    # what Yosys maps from the RTL (one multiply per lane, no packing): PE*SIMD when A + W >= 8
    assert int(C.mvau_cost(**kw, wbits=4, abits=4, res_type=C.RES_DSP)["DSP"]) == 64
    assert int(C.mvau_cost(**kw, wbits=8, abits=8, res_type=C.RES_DSP)["DSP"]) == 64
    assert int(C.mvau_cost(**kw, wbits=4, abits=4, res_type=C.RES_DSP, dsp_family=C.DSP58)["DSP"]) == 64
    assert int(C.mvau_cost(**kw, wbits=3, abits=4, res_type=C.RES_DSP)["DSP"]) == 0   # narrow: LUTs
    assert int(C.mvau_cost(**kw, wbits=1, abits=8, res_type=C.RES_DSP)["DSP"]) == 0   # bipolar: no multiply
    assert int(C.mvau_cost(**kw, wbits=4, abits=4, res_type=C.RES_LUT)["DSP"]) == 0
    # the multiplies leave the LUTs: with DSPs a PE's tree has SIMD leaves, not SIMD*W partial
    # products (8 leaves of 10 bits -> 7 adders of 13 bits instead of 31 adders of 15 bits)
    p = dict(kw, MW=64, MH=64, wbits=4, abits=4, ram_style="auto", xnor=0)
    f_dsp = MV.mvau_resource_features({**p, "resType": "dsp"})
    f_lut = MV.mvau_resource_features({**p, "resType": "lut"})
    assert (int(f_dsp["LUT"][1]), int(f_lut["LUT"][1])) == (8 * 7 * 13, 8 * 31 * 15)
    assert int(f_dsp["LUT"][2]) == 0 and int(f_lut["LUT"][2]) == 8 * 32 * 5    # AND leaves of A+1 bits
    lut_dsp = int(C.mvau_cost(**kw, wbits=4, abits=4, res_type=C.RES_DSP)["LUT"])
    lut_lut = int(C.mvau_cost(**kw, wbits=4, abits=4, res_type=C.RES_LUT)["LUT"])
    assert lut_dsp < lut_lut


def test_accumulator_width():
    assert int(C.bits_for_range(0, 255)) == 8 and int(C.bits_for_range(0, 256)) == 9
    assert int(C.bits_for_range(-128, 127)) == 8 and int(C.bits_for_range(-129, 0)) == 9
    W = np.array([[1, -2], [3, 1]])
    # inputs UINT2 in [0, 3]: column 0 in [0, 12], column 1 in [-6, 3] -> [-6, 12] -> 5 bits signed
    assert C.mvau_acc_bits_exact(W, 0, 3) == 5
    assert C.mvau_acc_bits_exact(W, 0, 3, T=np.array([[1.0, 40.0], [2.0, 3.0]])) == 7   # widened to 40
    # worst case: 64 bipolar products in [-64, 64] -> 8 bits
    assert int(C.mvau_acc_bits_worst(64, -1, 1, -1, 1)) == 8


def test_other_ops_by_hand():
    # sliding window CNV layer 0: CF=1, buf = (2*32+2+1) = 67, 30*max(30*9, 32) = 8100
    assert int(C.sliding_window_cycles(3, 3, 32, 32, 30, 30, 3, 3, 1, 1)) == 8167
    assert int(C.thresholding_cost(64, 4, 3, 8, 2, 10)["cycles"]) == 160
    assert int(C.fmpadding_cost(28, 28, 2, 2, 2, 2, 3, 1, 8)["cycles"]) == 3 * 32 * 32
    assert int(C.label_select_cost(10, 5, 1, 16)["cycles"]) == 10 + 1   # one insertion per clock, then K out
    assert int(C.maxpool_cost(28, 28, 2, 64, 4, 1)["cycles"]) == 28 * 28 * 16
    assert int(C.dwc_cost(1024, 8, 32)["cycles"]) == 128
    # FIFO (codesign_fifo.v), as Yosys 0.23 maps it (corpus fifo_10..17): a 2-deep FIFO of up to
    # 12 bits keeps its words in flip-flops (2 x 8 FF, a 2:1 read mux per bit), wider ones use
    # distributed RAM (RAM32M: 32 words x 6 bits in 4 LUTs -> 16 bits in 3 RAM32M = 12 LUTs);
    # pointers 2 x 1 bit + count 2
    f = FI.fifo_resource_features(dict(depth=2, width=8))
    assert [int(v) for v in f["LUT"]] == [1, 0, 0, 4, 8] and [int(v) for v in f["FF"]] == [1, 4, 0, 16]
    f = FI.fifo_resource_features(dict(depth=2, width=16))
    assert [int(v) for v in f["LUT"]] == [1, 12, 0, 4, 0] and [int(v) for v in f["FF"]] == [1, 4, 0, 0]
    assert int(C.fifo_cost(2, 8, 100)["BRAM_18K"]) == 0
    # 256 deep: block RAM (512 x 36 holds 256 x 32), the read registered (32 FF)
    f = FI.fifo_resource_features(dict(depth=256, width=32))
    assert [int(v) for v in f["LUT"]] == [1, 0, 0, 2 * 8 + 9, 0] and [int(v) for v in f["FF"]] == [1, 25, 32, 0]
    assert int(C.fifo_cost(256, 32, 100)["BRAM_18K"]) == 1
    assert int(C.fifo_cost(1024, 32, 100)["BRAM_18K"]) == 2     # 1K x 18 twice


def test_calibration(tmp_path):
    est = C.mvau_cost(64, 64, 8, 8, 1, 1, 1, 1, 8, 1, xnor=1)
    cal = Calibration.from_dict({"MVAU": {"LUT": [2.0, 10]}, "*": {"FF": [1.0, 5]}})
    out = cal.apply("MVAU", est)
    assert int(out["LUT"]) == 2 * int(est["LUT"]) + 10 and int(out["FF"]) == int(est["FF"]) + 5
    pad = C.fmpadding_cost(4, 4, 1, 1, 1, 1, 2, 1, 8)
    assert int(cal.apply("FMPadding", pad)["FF"]) == int(pad["FF"]) + 5
    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"_comment": "x", "MVAU": {"cycles": [1.0, 12]}}))
    assert int(Calibration.load(p).apply("MVAU", est)["cycles"]) == 64 + 12
    assert Calibration.load().is_identity()  # the shipped default is the identity
    with pytest.raises(CodesignError, match="unknown resource"):
        Calibration.from_dict({"MVAU": {"LUTS": [1, 0]}})


# ----------------------------------------------------------------------------- graph level

def _mvau_graph(W: np.ndarray, idt: str = "UINT2", wdt: str = "INT2", pe: int = 2, simd: int = 2) -> ModelWrapper:
    mw, mh = W.shape
    n = make_hw_node("MVAU", ["x", "W"], ["y"], "MVAU_0", MW=mw, MH=mh, PE=pe, SIMD=simd, inputDataType=idt,
                     weightDataType=wdt, outputDataType="INT32", noActivation=1, numInputVectors=[1])
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, mw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, mh])])
    m = ModelWrapper(qonnx_make_model(g))
    m.set_initializer("W", W.astype(np.float32))
    m.set_tensor_datatype("W", DataType[wdt])
    return m


def test_node_cost_uses_exact_accumulator():
    W = np.array([[1, -2], [3, 1], [0, 0], [1, 1]])
    m = _mvau_graph(W)
    p = C.node_params(m, m.graph.node[0])
    assert p["acc_bits"] == C.mvau_acc_bits_exact(W, 0, 3) == 5   # [-6, 15] fits INT5 [-16, 15]
    c = node_cost(m, m.graph.node[0])
    assert c["cycles"] == (2 // 2) * (4 // 2)
    assert c["LUT"] == int(C.mvau_cost(4, 2, 2, 2, 1, 2, 2, 5, 5, 0)["LUT"])
    mc = model_cost(m)
    assert mc["max_cycles_node_name"] == "MVAU_0" and mc["total"]["LUT"] == c["LUT"]


def test_boards():
    assert get_board("pynq-z2").part == "xc7z020clg400-1"
    assert get_board("ULTRA96-V2").BRAM_18K == 432
    assert get_board("zcu104").URAM == 96 and get_board("KV260").DSP == 1248
    assert get_board("Pynq-Z1").axi_hp_width == 64 and get_board("ZCU104").axi_hp_width == 128
    with pytest.raises(CodesignError, match="known boards: Pynq-Z1, Pynq-Z2"):
        get_board("Pynq-Z3")
    u = utilisation({"LUT": 26600, "BRAM_18K": 14, "DSP": 0, "FF": 0, "URAM": 0}, "Pynq-Z2", cap=0.8)
    assert u["binding_resource"] == "LUT" and u["binding_utilisation"] == 0.5 and u["fits"]
    assert set(BOARDS) == {"Pynq-Z1", "Pynq-Z2", "Ultra96-V2", "ZCU104", "KV260"}


# ----------------------------------------------------------------------------- classic nets, fast path

CNV_W1A1 = ([16, 32, 16, 16, 4, 1, 1, 1, 5], [3, 32, 32, 32, 32, 32, 4, 8, 1])
TFC = ([16, 8, 8, 10], [49, 8, 8, 8])


def _cfg(spec, pe, simd, wb, ab):
    names = [l["name"] for l in quant_layers(spec)]
    return dict(weight_bits={n: wb for n in names}, act_bits={n: ab for n in names},
                pe=dict(zip(names, pe)), simd=dict(zip(names, simd)))


def test_published_foldings_match_finn_fps():
    cnv = FastNet.from_spec(make_spec("cnv", (3, 32, 32)), input_bits=8)
    r = cnv.evaluate_spec(**_cfg(cnv.spec, *CNV_W1A1, 1, 1), clock_ns=10.0)
    assert int(r["max_cycles"][0]) == 32768 and round(float(r["fps"][0])) == 3052   # FINN: 3052 FPS
    tfc = FastNet.from_spec(make_spec("tfc", (1, 28, 28)), input_bits=8)
    r = tfc.evaluate_spec(**_cfg(tfc.spec, *TFC, 1, 1), clock_ns=10.0)
    assert float(r["fps"][0]) == 1562500.0                                          # FINN: 1562500 FPS


def test_fast_path_equals_per_node_model():
    spec = make_spec("cnv", (3, 32, 32))
    net = FastNet.from_spec(spec, input_bits=8, label_select_k=1)
    rng = np.random.default_rng(1)
    names = [l["name"] for l in quant_layers(spec)]
    n = 6
    wb = {k: rng.integers(1, 5, n) for k in names}
    ab = {k: rng.integers(1, 5, n) for k in names}
    ch = {"conv1": rng.choice([32, 48, 64], n), "fc0": rng.choice([256, 512], n)}   # pruned widths
    pe, simd = dict(zip(names, CNV_W1A1[0])), dict(zip(names, CNV_W1A1[1]))
    pe["fc0"] = 1
    pe["conv1"] = 16
    simd["conv2"] = 16                                   # must divide conv1's pruned width too
    simd["conv1"] = 3 * np.ones(n, np.int64)
    simd["conv0"] = 3
    cfg = dict(weight_bits=wb, act_bits=ab, pe=pe, simd=simd, channels=ch)
    r = net.evaluate_spec(**cfg, board="Pynq-Z2", per_node=True)
    for i in range(n):
        m = net.to_model(i, **cfg)
        mc = model_cost(m, dsp_family=get_board("Pynq-Z2").dsp_family)
        for res in ("LUT", "FF", "BRAM_18K", "URAM", "DSP"):
            assert int(r[res][i]) == mc["total"][res], (i, res)
        assert int(r["max_cycles"][i]) == mc["max_cycles"]
        assert int(r["critical_path_cycles"][i]) == mc["critical_path_cycles"]
        # and the model-extracted fast path agrees with both
        fm = FastNet.from_model(m).evaluate()
        assert int(fm["LUT"][0]) == mc["total"]["LUT"] and int(fm["max_cycles"][0]) == mc["max_cycles"]


def test_fast_from_model_overrides_match_refolded_graph():
    from codesign.dataflow.folding import set_folding

    spec = make_spec("tfc", (1, 28, 28))
    net = FastNet.from_spec(spec)
    m = net.to_model(0, **_cfg(spec, [1, 1, 1, 1], [1, 1, 1, 1], 2, 2))
    fast = FastNet.from_model(m)
    pes = np.array([1, 2, 4, 8, 16])
    r = fast.evaluate({"MVAU_0": {"PE": pes, "SIMD": np.array([1, 7, 49, 98, 392])}})
    for i, p in enumerate(pes):
        set_folding(m, {"MVAU_0": {"PE": int(p), "SIMD": int([1, 7, 49, 98, 392][i])}})
        mc = model_cost(m)
        assert int(r["LUT"][i]) == mc["total"]["LUT"] and int(r["max_cycles"][i]) == mc["max_cycles"]


def test_reports(tmp_path):
    spec = make_spec("tfc", (1, 28, 28))
    net = FastNet.from_spec(spec)
    m = net.to_model(0, **_cfg(spec, *TFC, 1, 1))
    out = write_reports(m, tmp_path, 10.0, "Pynq-Z2")
    rep = tmp_path / "report"
    for f in REPORT_FILES + ("estimate_utilization.json",):
        assert (rep / f).is_file()
    perf = json.loads((rep / "estimate_network_performance.json").read_text())
    assert perf["max_cycles"] == 64 and perf["estimated_throughput_fps"] == 1562500.0
    assert perf["estimated_latency_ns"] == perf["critical_path_cycles"] * 10.0
    res = json.loads((rep / "estimate_layer_resources.json").read_text())
    assert set(res["MVAU_0"]) >= {"BRAM_18K", "BRAM_efficiency", "LUT", "URAM", "URAM_efficiency", "DSP"}
    assert res["total"]["LUT"] == sum(v["LUT"] for k, v in res.items() if k != "total")
    # every entry names the model that produced it and its calibration
    assert all(v["model"] == C.MODEL_NAME and v["calibration"] == "identity" for v in res.values())
    ops = json.loads((rep / "op_and_param_counts.json").read_text())
    assert ops["MVAU_0"]["op_mac_UINT8_BIPOLAR"] == 784 * 64
    assert ops["total"]["param_weight_BIPOLAR"] == 784 * 64 + 64 * 64 * 2 + 64 * 10
    assert out["utilisation"]["binding_resource"] in ("LUT", "BRAM_18K", "FF", "DSP", "URAM")


def test_fast_from_bit_plans():
    from codesign.models.plan import uniform_plan

    spec = make_spec("tfc", (1, 28, 28))
    net = FastNet.from_spec(spec)
    plans = [uniform_plan(spec, 1, 1), uniform_plan(spec, 2, 2), uniform_plan(spec, 4, 4)]
    bits = FastNet.bits_from_plans(plans)
    names = [l["name"] for l in quant_layers(spec)]
    r = net.evaluate_spec(**bits, pe=dict(zip(names, TFC[0])), simd=dict(zip(names, TFC[1])))
    assert r["LUT"].shape == (3,) and np.all(np.diff(r["LUT"]) > 0)   # wider operands cost more LUTs
    assert np.all(r["max_cycles"] == 64)


def test_mvau_bank_select_features():
    """A block-RAM weight ROM deeper than one BRAM at its width is banked by the generator: the
    wrapper's bank select is nb decoded selects and an nb:1 mux per word bit, per PE."""
    p = dict(MW=2304, MH=128, PE=1, SIMD=8, wbits=2, abits=2, obits=2, acc_bits=16, n_thr=3, ram_style="auto",
             resType="lut")
    f = MV.mvau_resource_features(p)["LUT"]
    # 288 x 128 = 36,864 words of 16 bits; one BRAM18 holds 1,024 x 18 -> 36 banks
    assert (int(f[-2]), int(f[-1])) == (36, 36 * 16)
    assert bool(MV.wrom_out_reg(2304, 128, 1, 8, 2, C.RAM_AUTO))
    small = MV.mvau_resource_features({**p, "MW": 64, "MH": 8})["LUT"]
    assert (int(small[-2]), int(small[-1])) == (0, 0)
