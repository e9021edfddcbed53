"""The shipped resource model against Yosys on designs it was not fitted to (real synthesis).

Why: the LUT/FF coefficients in the op modules are fitted by benchmarks/bench_costmodel.py on a
corpus whose held-out part (every 4th design of an op, plus whole configurations) never enters
the fit. Four small held-out designs of four ops are synthesised here again with Debian yosys
(``synth_xilinx -family xc7``) and the estimate must meet the issue's targets on them: mean
|LUT error| <= 15 %, FF <= 20 %; BRAM18 and DSP exact, also on a DSP / block-RAM MVAU.
"""

from __future__ import annotations

import numpy as np
import pytest

from codesign.dataflow.ops import op_class
from codesign.hw.opspecs import BUILDERS
from codesign.hw.rtl import render_nodes
from codesign.hw.synth import synth_design

#: (op type, example_node arguments): held-out designs of the corpus (benchmarks/bench_costmodel.py:
#: mvau_mem_2, thr_in6_0, pool_k3_0, fifo_3), never used for fitting
HELD_OUT = [
    ("MVAU", dict(MW=128, MH=16, PE=1, SIMD=2, idt="UINT2", wdt="INT2", odt="INT32", nthr=0, ram_style="auto",
                  seed=7)),
    ("Thresholding", dict(C=16, PE=1, idt="UINT6", odt="UINT3", ram_style="auto", seed=3)),
    ("StreamingMaxPool", dict(ih=6, C=2, PE=1, k=3, dt="UINT3")),
    ("StreamingFIFO", dict(depth=64, fold=8, words=64, dt="UINT2")),
]
#: a held-out configuration (MVAU w3a5) with DSP multiplies and block-RAM weights: BRAM18 and
#: DSP must be exact (its LUTs are a known weak spot of the model: tiny DSP MVAUs, see the bench)
DISCRETE = [("MVAU", dict(MW=16, MH=4, PE=1, SIMD=4, idt="UINT5", wdt="INT3", odt="INT32", nthr=0, res_type="dsp",
                          ram_style="block", seed=42))]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = []
    for i, (op, kw) in enumerate(HELD_OUT + DISCRETE):
        spec = BUILDERS[op](name=f"n{i}", **kw)
        d = tmp_path_factory.mktemp(f"cm{i}")
        rep = synth_design(render_nodes([spec], d / "rtl"), "xc7")
        cls = op_class(op)
        est = cls.resources(cls.params_from_attrs({**spec.attrs, "name": spec.name}, spec.inits))
        out.append((op, rep["nodes"][spec.name], {k: float(np.asarray(v)) for k, v in est.items()}))
    return out


def test_held_out_lut_ff_within_targets(measured):
    held = measured[:len(HELD_OUT)]
    lut = [abs(e["LUT"] - y["LUT"]) / y["LUT"] for _, y, e in held]
    ff = [abs(e["FF"] - y["FF"]) / y["FF"] for _, y, e in held]
    detail = [(op, y["LUT"], int(e["LUT"]), y["FF"], int(e["FF"])) for op, y, e in held]
    assert np.mean(lut) <= 0.15, detail
    assert np.mean(ff) <= 0.20, detail


def test_held_out_bram_dsp_exact(measured):
    for op, y, e in measured:
        assert (int(e["BRAM_18K"]), int(e["DSP"])) == (y["BRAM_18K"], y["DSP"]), (op, y, e)
    # the designs do exercise both: a DSP-mapped MVAU and a block-RAM weight ROM
    assert sum(y["DSP"] for _, y, _ in measured) > 0 and sum(y["BRAM_18K"] for _, y, _ in measured) > 0
