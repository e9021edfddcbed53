"""Yosys synthesis of generated designs (real runs): per-node parsing, DSP vs LUT multiplies,
BRAM inference of weight ROMs, family selection, and the cost-model calibration fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.synth import RESOURCES, calibrate, synth_design, yosys_family


def _mvau(name, MW, MH, PE, SIMD, idt, odt, res, ram_style="auto", seed=0, wbits=2):
    W = np.random.default_rng(seed).integers(-(1 << (wbits - 1)), 1 << (wbits - 1), size=(MW, MH))
    return HWNodeSpec(name, "MVAU", dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt,
                                         weightDataType=f"INT{wbits}",
                                         outputDataType=odt, noActivation=1, numInputVectors=[1], resType=res,
                                         ram_style=ram_style), {"W": W})


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    """One design holding one of each kind of interest (a single Yosys run)."""
    d = tmp_path_factory.mktemp("synth")
    T = np.sort(np.random.default_rng(1).integers(-20, 20, size=(4, 3)), axis=1)
    nodes = [
        _mvau("mv dsp", 8, 4, 2, 2, "UINT4", "INT16", "dsp", wbits=4),              # 8 -> 32 bits
        HWNodeSpec("fifo", "StreamingFIFO", dict(depth=4, folded_shape=[1, 2, 2], dataType="INT16")),
        HWNodeSpec("dwc", "StreamingDataWidthConverter", dict(shape=[1, 4], inWidth=32, outWidth=16,
                                                              dataType="INT16")),
        HWNodeSpec("thr", "Thresholding", dict(NumChannels=4, PE=1, numSteps=3, inputDataType="INT16",
                                               outputDataType="UINT2", ActVal=0, numInputVectors=[1]), {"T": T}),
        _mvau("mv lut", 4, 2, 1, 1, "UINT2", "INT6", "lut", seed=2),                 # 2 -> 6 bits
        _mvau("mv bram", 64, 16, 1, 1, "INT6", "INT16", "lut", ram_style="block", seed=3),  # WMEM 1024 x 2
    ]
    design = render_nodes(nodes, d / "rtl")
    rep = synth_design(design, "xc7z020clg400-1", d / "ooc.json")
    return design, rep, d


def test_per_node_counts(small_synth):
    design, rep, d = small_synth
    assert json.loads((d / "ooc.json").read_text())["LUT"] == rep["LUT"]
    assert set(rep["nodes"]) == {n.node_name for n in design.nodes}
    for r in RESOURCES:  # the top adds no logic of its own
        assert rep[r] == sum(v[r] for v in rep["nodes"].values())
    assert rep["nodes"]["mv dsp"]["DSP"] > 0, rep["nodes"]["mv dsp"]
    assert rep["nodes"]["mv lut"]["DSP"] == 0 and rep["nodes"]["mv lut"]["LUT"] > 0
    assert rep["nodes"]["mv bram"]["BRAM_18K"] >= 1, rep["nodes"]["mv bram"]
    assert rep["nodes"]["fifo"]["FF"] > 0
    assert rep["family"] == "xc7" and rep["WNS"] is None


def test_family_selection():
    assert yosys_family("xc7z020clg400-1")[0] == "xc7"
    fam, note = yosys_family("xczu3eg-sbva484-1-i")
    assert fam == "xcup" and "UltraScale+" in note


def test_calibration_fit_reduces_error(tmp_path):
    """A synthetic but exact relation (meas = 2*est + 10 for MVAU LUTs) is recovered."""
    rows = []
    for i, est in enumerate([100, 200, 400, 800]):
        rows.append({"node": f"m{i}", "op_type": "MVAU", "LUT_est": est, "LUT_yosys": 2 * est + 10,
                     "FF_est": 50, "FF_yosys": 40, "BRAM_18K_est": 0, "BRAM_18K_yosys": 0,
                     "DSP_est": 0, "DSP_yosys": 0})
    res = calibrate(rows, tmp_path / "cal.json")
    assert res["fits"]["MVAU"]["LUT"] == [2.0, 10.0]
    assert res["error_after"]["LUT"] < 1e-9 < res["error_before"]["LUT"]
    from codesign.dataflow.cost import Calibration

    cal = Calibration.load(tmp_path / "cal.json")
    assert cal.get("MVAU", "LUT") == (2.0, 10.0)


def test_dsp_estimate_counts_what_yosys_maps(small_synth):
    """The MVAU resource model's DSPs are the lanes Yosys maps from this RTL (no packing)."""
    from codesign.dataflow.cost import RES_DSP
    from codesign.dataflow.ops.mvau import mvau_cost

    _, rep, _ = small_synth
    est = mvau_cost(8, 4, 2, 2, 1, wbits=4, abits=4, obits=16, acc_bits=16, n_thr=0, res_type=RES_DSP)
    assert int(est["DSP"]) == rep["nodes"]["mv dsp"]["DSP"] == 2 * 2
    assert int(mvau_cost(4, 2, 1, 1, 1, 2, 2, 6, 6, 0)["DSP"]) == rep["nodes"]["mv lut"]["DSP"] == 0


def test_windowmax_and_min_padding_match_yosys(tmp_path):
    """A padded max pool's new RTL in one Yosys run: FMPadding with PadValue "min" costs what
    its model (and the zero-padding variant) says; WindowMax with its running maxima in LUTRAM
    (CF = 4) and in flip-flops (CF = 1) within 3 LUT of its model, FF exactly."""
    from codesign.dataflow.ops.fmpadding import FMPadding
    from codesign.dataflow.ops.windowmax import WindowMax

    nodes = [HWNodeSpec("pad", "FMPadding", dict(ImgDim=[6, 6], Padding=[1, 1, 1, 1], NumChannels=4, SIMD=2,
                                                 inputDataType="INT4", PadValue="min")),
             HWNodeSpec("wm lutram", "WindowMax", dict(Channels=8, Kernel=[3, 3], PE=2, inputDataType="INT4",
                                                       numInputVectors=[1, 4, 4])),
             HWNodeSpec("wm ff", "WindowMax", dict(Channels=2, Kernel=[3, 3], PE=2, inputDataType="INT4",
                                                   numInputVectors=[1, 4, 4]))]
    rep = synth_design(render_nodes(nodes, tmp_path / "rtl"), "xc7z020clg400-1", tmp_path / "ooc.json")
    for s in nodes:
        cls = FMPadding if s.op_type == "FMPadding" else WindowMax
        est = cls.resources(cls.params_from_attrs({**cls.declared_defaults(), **s.attrs}))
        got = rep["nodes"][s.name]
        assert abs(got["LUT"] - int(est["LUT"])) <= 3 and got["FF"] == int(est["FF"]), (s.name, got, est)
        assert got["BRAM_18K"] == 0 and got["DSP"] == 0
