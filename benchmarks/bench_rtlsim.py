"""RTL simulation speed: compiled C++ harness vs a Python-driven per-cycle loop (issue 5, item 7).

Both drive the SAME Verilated model of a TFC-w2a2-sized accelerator at FINN's published
folding (784x64 PE16 SIMD49, 64x64 PE8 SIMD8 x2, 64x10 PE10 SIMD8; 8-bit input, 2-bit weights
and activations): the harness from `codesign.hw.rtlsim.build`, the Python loop through a ctypes
shared library with one `sim_step()` call per clock cycle (what a PyVerilator-style driver
pays). One run each; outputs of both are checked against the numpy golden chain, so the speed
numbers are for correct simulations. Writes benchmarks/results/rtlsim.json.

    .venv/bin/python benchmarks/bench_rtlsim.py [--frames 2000] [--py-frames 40]
    .venv/bin/python benchmarks/bench_rtlsim.py --synth-builds runs/a/BUILD runs/b/BUILD

With --synth-builds, the builds are synthesized with Yosys instead and the analytical estimate
error per op type is tabulated before/after calibration (in-sample and leave-one-build-out);
writes benchmarks/results/synth_calibration.json.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from codesign.atomic import write_json
from codesign.dataflow import golden
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.rtlsim import build, build_shared, first_mismatch, pack_frames, run_frames, unpack_frames
from codesign.hw.tools import verilator_version

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_rtlsim")

FOLDINGS = {  # MW, MH, PE, SIMD per MVAU
    "published": [(784, 64, 16, 49), (64, 64, 8, 8), (64, 64, 8, 8), (64, 10, 10, 8)],
    "pe1_simd1": [(784, 64, 1, 1), (64, 64, 1, 1), (64, 64, 1, 1), (64, 10, 1, 1)],
}
LAYERS = FOLDINGS["published"]


def tfc_design(out_dir: Path, seed: int = 0, layers: list[tuple[int, int, int, int]] = LAYERS):
    """A TFC-w2a2-sized chain with random weights/thresholds, plus its numpy golden."""
    rng = np.random.default_rng(seed)
    specs, params = [], []
    idt = "UINT8"
    xcal = rng.integers(0, 256, size=(256, 784))  # thresholds at activation quartiles: busy outputs
    for i, (mw, mh, pe, simd) in enumerate(layers):
        W = rng.integers(-2, 2, size=(mw, mh))
        last = i == len(layers) - 1
        attrs = dict(MW=mw, MH=mh, PE=pe, SIMD=simd, inputDataType=idt, weightDataType="INT2",
                     numInputVectors=[1], resType="lut")
        inits = {"W": W}
        if last:
            attrs.update(outputDataType="INT16", noActivation=1)
            T = None
        else:
            T = np.ceil(np.quantile(golden.mvau(xcal, W), [0.25, 0.5, 0.75], axis=0).T)
            attrs.update(outputDataType="UINT2", noActivation=0, ActVal=0)
            inits["T"] = T
        specs.append(HWNodeSpec(f"MVAU_{i}", "MVAU", attrs, inits))
        params.append((W, T))
        xcal = golden.mvau(xcal, W, T) if T is not None else xcal
        if i + 1 < len(layers):
            inw, outw = pe * 2, layers[i + 1][3] * 2
            if inw != outw:
                specs.append(HWNodeSpec(f"DWC_{i}", "StreamingDataWidthConverter",
                                        dict(shape=[1, mh], inWidth=inw, outWidth=outw, dataType="UINT2")))
        idt = "UINT2"
    design = render_nodes(specs, out_dir)

    def gold(x: np.ndarray) -> np.ndarray:
        for W, T in params:
            x = golden.mvau(x, W, T) if T is not None else golden.mvau(x, W)
        return x

    return design, gold


def python_loop(design, lib_path: Path, frames: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Drive the ctypes model cycle by cycle from Python; returns outputs, cycles, seconds."""
    import os

    cwd = os.getcwd()
    os.chdir(design.out_dir)  # $readmemh files are found relative to the working directory
    try:
        return _python_loop(design, lib_path, frames)
    finally:
        os.chdir(cwd)


def _python_loop(design, lib_path: Path, frames: np.ndarray) -> tuple[np.ndarray, int, float]:
    lib = ctypes.CDLL(str(lib_path))
    lib.sim_new.restype = ctypes.c_void_p
    lib.sim_step.restype = ctypes.c_int
    lib.sim_step.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int,
                             ctypes.POINTER(ctypes.c_uint32)]
    lib.sim_free.argtypes = [ctypes.c_void_p]
    n_in32, n_out32 = (design.s_width + 31) // 32, (design.m_width + 31) // 32
    words = pack_frames(frames, design.in_stream)
    in_bufs = []
    for w in words:
        buf = (ctypes.c_uint32 * n_in32)(*[(w >> (32 * i)) & 0xFFFFFFFF for i in range(n_in32)])
        in_bufs.append(buf)
    out_buf = (ctypes.c_uint32 * n_out32)()
    zero = (ctypes.c_uint32 * n_in32)()
    n_out = frames.shape[0] * design.out_stream.words_per_frame
    sim = lib.sim_new()
    outs: list[int] = []
    pos, cycles = 0, 0
    t0 = time.perf_counter()
    while len(outs) < n_out:
        valid = pos < len(in_bufs)
        flags = lib.sim_step(sim, int(valid), in_bufs[pos] if valid else zero, 1, out_buf)
        if flags & 1:
            pos += 1
        if flags & 2:
            outs.append(sum(int(out_buf[i]) << (32 * i) for i in range(n_out32)))
        cycles += 1
        if cycles > 10_000_000:
            raise RuntimeError("python loop: no progress")
    secs = time.perf_counter() - t0
    lib.sim_free(sim)
    return unpack_frames(outs, design.out_stream, frames.shape[0]), cycles, secs


def bench_one(name: str, layers, frames: int, py_frames: int, workdir: Path) -> dict:
    """C++ harness and Python loop over one design; both outputs checked against numpy."""
    rng = np.random.default_rng(1)
    design, gold = tfc_design(workdir / name, layers=layers)
    t0 = time.perf_counter()
    build(design)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    lib = build_shared(design)
    t_build_lib = time.perf_counter() - t0

    x = rng.integers(0, 256, size=(frames, 784))
    t0 = time.perf_counter()
    run = run_frames(design, x)
    wall = time.perf_counter() - t0
    mism = first_mismatch(gold(x), run.outputs)
    if mism:
        raise SystemExit(f"{name}: C++ harness output is wrong: {mism}")
    perf = run.performance(100.0)
    cpp = {"frames": frames, "cycles": run.sim.cycles, "sim_seconds": run.sim.sim_seconds,
           "cycles_per_s": run.sim.cycles / run.sim.sim_seconds, "frames_per_s": frames / run.sim.sim_seconds,
           "wall_seconds_incl_io": wall, "frames_per_s_incl_io": frames / wall,
           "stable_cycles_per_frame": perf["stable_cycles_per_frame"], "latency_cycles": perf["latency_cycles"]}
    xp = x[:py_frames]
    out_py, cyc_py, secs_py = python_loop(design, lib, xp)
    mism = first_mismatch(gold(xp), out_py)
    if mism:
        raise SystemExit(f"{name}: Python-loop output is wrong: {mism}")
    py = {"frames": py_frames, "cycles": cyc_py, "seconds": secs_py, "cycles_per_s": cyc_py / secs_py,
          "frames_per_s": py_frames / secs_py}
    return {"layers_MW_MH_PE_SIMD": layers, "build_seconds": {"harness": round(t_build, 2),
                                                              "ctypes_lib": round(t_build_lib, 2)},
            "cpp_harness": cpp, "python_per_cycle_loop": py,
            "speedup_cycles_per_s": cpp["cycles_per_s"] / py["cycles_per_s"]}


def synth_table(builds: list[Path]) -> int:
    """Estimate vs Yosys per op type, before/after calibration (mean |est - yosys| / yosys)."""
    from codesign.hw.synth import RESOURCES, calibrate_builds

    res = calibrate_builds(builds, RESULTS / "synth_calibration_fit.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "synth_calibration.json", res)
    print("| op type | n | " + " | ".join(f"{r} before | {r} after" for r in RESOURCES) + " |")
    print("|---|---|" + "---|---|" * len(RESOURCES))
    for op, d in res["per_op"].items():
        cells = " | ".join(f"{d['before'].get(r, 0):.0%} | {d['after'].get(r, 0):.0%}" for r in RESOURCES)
        print(f"| {op} | {d['n']} | {cells} |")
    for key in ("error_before", "error_after", "error_leave_one_build_out"):
        if key in res:
            print(key, {r: f"{v:.0%}" for r, v in res[key].items()})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2000, help="frames through the C++ harness (published folding)")
    ap.add_argument("--py-frames", type=int, default=40, help="frames through the Python loop (published folding)")
    ap.add_argument("--synth-builds", nargs="+", type=Path, default=None,
                    help="compiled BUILD folders: run the Yosys estimate/calibration table instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.synth_builds:
        return synth_table(args.synth_builds)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_rtlsim.") as td:
        runs["published"] = bench_one("published", FOLDINGS["published"], args.frames, args.py_frames, Path(td))
        runs["pe1_simd1"] = bench_one("pe1_simd1", FOLDINGS["pe1_simd1"], max(4, args.frames // 100),
                                      max(2, args.py_frames // 20), Path(td))
    res = {
        "design": "TFC-w2a2-sized MLP (4 MVAU, DWC where widths differ), random weights, thresholds at quartiles",
        "verilator": verilator_version(),
        "machine": platform.processor() or platform.machine(),
        "runs": runs,
        "note": "one run each, same Verilated model per folding; outputs of both drivers checked bit-exact "
                "against the numpy golden. Shared 2-core machine: absolute numbers are noisy.",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "rtlsim.json", res)
    print("| folding | driver | frames | cycles | cycles/s | frames/s |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        c, p = r["cpp_harness"], r["python_per_cycle_loop"]
        print(f"| {name} | C++ harness | {c['frames']} | {c['cycles']} | {c['cycles_per_s']:.3g} | "
              f"{c['frames_per_s']:.3g} |")
        print(f"| {name} | Python per-cycle (ctypes) | {p['frames']} | {p['cycles']} | {p['cycles_per_s']:.3g} | "
              f"{p['frames_per_s']:.3g} |")
    for name, r in runs.items():
        print(f"{name}: speed-up {r['speedup_cycles_per_s']:.1f}x (cycles/s), steady state "
              f"{r['cpp_harness']['stable_cycles_per_frame']:.0f} cycles/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
