"""RTL -> Verilator -> Yosys on a compiled BUILD folder, as one call shared by `codesign compile`
and the co-design run, so both report the same numbers the same way."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def run_hw_steps(build: str | Path, rtlsim_frames: int = 0, synth: bool = False, backpressure: bool = False,
                 inputs: np.ndarray | None = None, timing: Any = None,
                 synth_timeout: int = 3600) -> dict[str, Any]:
    """Render the Verilog, then optionally simulate `rtlsim_frames` frames (of `inputs`, float
    graph inputs; default seeded random) and synthesize (`timing`: a TimingConfig, or True, adds
    post-route Fmax on ECP5 per node and top to the synthesis report). Returns `{"rtl", "rtlsim", "synth",
    "summary": {step: one-line result}}`; the reports land in BUILD/report/ as usual."""
    from codesign.hw.rtl import render_model

    build = Path(build)
    out: dict[str, Any] = {"summary": {}}
    design = render_model(build / "dataflow.onnx", build / "rtl")
    out["rtl"] = {"nodes": len(design.nodes), "top": design.top}
    out["summary"]["rtl"] = (f"RTL: {len(design.nodes)} modules in {build / 'rtl'} (top {design.top})")
    if rtlsim_frames:
        from codesign.hw.rtlsim import rtlsim_build

        if inputs is not None:
            inputs = np.asarray(inputs)[:rtlsim_frames]
        perf = rtlsim_build(build, inputs, rtlsim_frames, backpressure=backpressure)
        out["rtlsim"] = perf
        est = perf.get("estimated_max_cycles")
        out["summary"]["rtlsim"] = (
            f"rtlsim: {perf['N']} frames bit-exact vs {' and '.join(perf.get('checked_against', ['dataflow.onnx']))}; {perf['stable_throughput[images/s]']:,.1f} FPS measured "
            f"({perf['stable_cycles_per_frame']:,.0f} cycles/frame"
            + (f" vs estimate {est:,}" if est else "") + f"), latency {perf['latency_cycles']:,} cycles")
    if synth:
        from codesign.hw.synth import synth_build

        rep = synth_build(build, timing=timing, timeout=synth_timeout)
        out["synth"] = rep
        est_path = build / "report" / "estimate_layer_resources.json"
        est = json.loads(est_path.read_text()).get("total", {}) if est_path.is_file() else {}
        out["summary"]["synth"] = (f"yosys ({rep['family']}): " + ", ".join(
            f"{k} {rep[k]:,}" + (f" (estimate {est[k]:,.0f})" if k in est else "")
            for k in ("LUT", "FF", "BRAM_18K", "DSP")))
        if timing:
            t = rep["timing"]
            out["summary"]["timing"] = (
                f"timing ({t['device']}, post-route): top {(t.get('top') or {}).get('fmax_mhz')} MHz, slowest node "
                f"{min((r['fmax_mhz'] for r in t['nodes'].values() if r.get('fmax_mhz')), default=None)} MHz, "
                f"target {t['target_mhz']:g} MHz" + ("" if t["met"] else f" -- NOT MET: {', '.join(t['slow'])}"))
    for line in out["summary"].values():
        log.info("%s", line)
    return out
