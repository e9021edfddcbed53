"""DSPs that Yosys maps from the MVAU RTL with resType=dsp vs the cost model's count.

Why: the MVAU resource model must count what this RTL builds (one multiply per PE x SIMD lane,
no packing), not FINN's packed-DSP formula. Each configuration is one tiny MVAU synthesised
with Debian yosys (`synth_xilinx -family xc7`); prints one line per configuration.
Run: `python benchmarks/bench_dsp_map.py` (about 3 s per configuration).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from codesign.dataflow.cost import RES_DSP
from codesign.dataflow.ops.mvau import mvau_cost
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.synth import synth_design

#: (PE, SIMD, weight bits, input bits); 1 weight bit = bipolar
CONFIGS = [(2, 2, 4, 4), (4, 2, 4, 4), (2, 3, 8, 8), (3, 2, 4, 4), (4, 4, 4, 4), (2, 2, 8, 2),
           (1, 4, 2, 2), (2, 2, 3, 3), (2, 2, 3, 4), (2, 2, 4, 3), (2, 2, 2, 5), (2, 2, 1, 8)]


def main() -> None:
    rng = np.random.default_rng(0)
    for pe, simd, wb, ab in CONFIGS:
        mw, mh = 4 * simd, 2 * pe
        W = rng.choice([-1, 1], size=(mw, mh)) if wb == 1 else rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (mw, mh))
        spec = HWNodeSpec("mv", "MVAU", dict(MW=mw, MH=mh, PE=pe, SIMD=simd, inputDataType=f"UINT{ab}",
                                             weightDataType="BIPOLAR" if wb == 1 else f"INT{wb}", outputDataType="INT24",
                                             noActivation=1, numInputVectors=[1], resType="dsp"), {"W": W})
        d = Path(tempfile.mkdtemp())
        rep = synth_design(render_nodes([spec], d / "rtl"), "xc7z020clg400-1", d / "ooc.json")
        est = int(mvau_cost(mw, mh, pe, simd, 1, wb, ab, 24, 24, 0, res_type=RES_DSP)["DSP"])
        print(f"PE {pe} SIMD {simd} W{wb} A{ab}: yosys DSP {rep['nodes']['mv']['DSP']}, model {est}", flush=True)


if __name__ == "__main__":
    main()
