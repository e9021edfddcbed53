"""The whole designs the benchmarks measure: the demo's TFC, uniform TFC w4a4, and CNV at w2a2 and w1a1 for 1,000 FPS.

Why one module: bench_timing.py (place and route) and bench_costmodel.py (cost model vs Yosys)
must look at exactly the same networks, so they are defined once here. Both are compiled for a
Pynq-Z2 at 100 MHz by the project's own compiler (it picks the folding for the FPS target);
weights are the seeded initial weights of the quantised model (torch seed 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

DESIGNS: dict[str, str] = {"demo": "TFC fc0 w4a3 (56) | fc1 w4a4 | fc2 w4a4 | fc3 w8", "cnv": "CNV w2a2 @ 1000 FPS",
                         "cnv_w1a1": "CNV w1a1 @ 1000 FPS", "tfc_w4a4": "TFC w4a4 @ 100000 FPS"}


def _compile(spec: dict, plan: dict, shape: tuple[int, ...], board: str, fps: float, out: Path) -> Any:
    """Export the quantised model to QONNX and build it into out/BUILD (the build result)."""
    import torch

    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.export import export_qonnx
    from codesign.models import build_quant

    torch.manual_seed(0)
    onnx_path = out / "model.onnx"
    export_qonnx(build_quant(spec, plan).eval(), torch.rand(1, *shape), onnx_path)
    return build_dataflow(onnx_path, BuildConfig(output_dir=out / "BUILD", board=board, clock_ns=10.0,
                                                 target_fps=fps))


def demo_design(out: Path) -> tuple[Any, str]:
    """The demo's chosen TFC: fc0 pruned to 56 outputs at w4a3, then w4a4 / w4a4 / w8, 8-bit input,
    compiled for a Pynq-Z2 at 100 MHz and 100k FPS (the compiler picks the folding: fc0 PE 7 SIMD 7)."""
    from codesign.models import make_spec, uniform_plan, with_widths

    spec = with_widths(make_spec("tfc", (1, 28, 28)), {"fc0": 56})
    plan = uniform_plan(spec, 4, 4)
    plan["layers"]["fc0"]["act_bits"] = 3
    plan["layers"]["fc3"]["weight_bits"] = 8
    return _compile(spec, plan, (1, 28, 28), "Pynq-Z2", 100000, out), DESIGNS["demo"]


def tfc_w4a4_design(out: Path) -> tuple[Any, str]:
    """Uniform TFC w4a4 (8-bit input) for 100k FPS on a Pynq-Z2: the w4a4 baseline of the headline
    co-design table (bench_codesign.py), here on seeded weights, so that its cost-model error
    can be split per node and between weights and structure."""
    from codesign.models import make_spec, uniform_plan

    spec = make_spec("tfc", (1, 28, 28))
    return _compile(spec, uniform_plan(spec, 4, 4), (1, 28, 28), "Pynq-Z2", 100000, out), DESIGNS["tfc_w4a4"]


def cnv_design(out: Path) -> tuple[Any, str]:
    """CNV (the BNN-PYNQ topology) at 2-bit weights and activations, for 1,000 FPS on a Pynq-Z2."""
    from codesign.models import make_spec, uniform_plan

    spec = make_spec("cnv", (3, 32, 32))
    return _compile(spec, uniform_plan(spec, 2, 2), (3, 32, 32), "Pynq-Z2", 1000, out), DESIGNS["cnv"]


def cnv_w1a1_design(out: Path) -> tuple[Any, str]:
    """CNV at binary weights and activations (BNN-PYNQ's cnv_1w1a), for 1,000 FPS on a Pynq-Z2: the
    CNV-class design whose weight memories fit the ECP5 proxy's 208 block RAMs (w2a2 needs 250)."""
    from codesign.models import make_spec, uniform_plan

    spec = make_spec("cnv", (3, 32, 32))
    return _compile(spec, uniform_plan(spec, 1, 1), (3, 32, 32), "Pynq-Z2", 1000, out), DESIGNS["cnv_w1a1"]


BUILDERS: dict[str, Callable[[Path], tuple[Any, str]]] = {"demo": demo_design, "cnv": cnv_design,
                                                         "cnv_w1a1": cnv_w1a1_design, "tfc_w4a4": tfc_w4a4_design}
