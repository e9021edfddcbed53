"""Verilator simulation of a rendered design, driven by a generated C++ harness.

Why a C++ harness: FINN's PyVerilator path pays a Python call per clock edge; here the whole
run (feeding words, random bubbles/backpressure, collecting outputs with cycle stamps) is
compiled, and Python only writes the input file and reads the output file.

`rtlsim_build` runs the whole design (every output element checked against execute_onnx,
FINN's rtlsim_performance.json written); `rtlsim_nodes` runs every HW node alone against its own
golden tensors, to localise a mismatch.

Builds are cached per design hash (Verilog text + harness + Verilator version + flags) under
`$CODESIGN_CACHE/verilator/<hash>` (default `~/.cache/codesign/verilator/<hash>`). The `$readmemh`
data files are NOT part of the hash: they are read at run time from the design folder, so a new
set of weights for the same structure reuses the binary.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from codesign.atomic import write_json, write_text
from codesign.dataflow import packing
from codesign.errors import CodesignError, ToolMissingError
from codesign.hw.rtl import TEMPLATE_DIR, RTLDesign, StreamSpec
from codesign.hw.tools import find_verilator, require_cxx, verilator_version

log = logging.getLogger(__name__)

VERILATOR_FLAGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast"]
# Verilator's runtime objects: identical for every design, so compiled once and reused.
_RUNTIME_OBJS = ("verilated.o", "verilated.d", "verilated_threads.o", "verilated_threads.d")
# The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the precompiled-
# header rule once Verilator splits a large model into several .cpp files.
_MAKE_VARS = ["PYTHON3=python3", "CFG_CXXFLAGS_PCH_I=-include"]


class RTLSimError(CodesignError):
    """Simulation did not produce the expected output (timeout, mismatch, build failure)."""


def cache_root() -> Path:
    base = os.environ.get("CODESIGN_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "codesign"


def _harness_text(design: RTLDesign) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template("harness.cpp.j2").render(top=design.top, s_width=design.s_width, m_width=design.m_width)


def design_hash(design: RTLDesign, extra: str = "") -> str:
    """Hash of everything that changes the compiled model (not the $readmemh data)."""
    h = hashlib.sha256()
    for f in design.verilog_files:
        h.update(f.encode())
        h.update((design.out_dir / f).read_bytes())
    h.update(_harness_text(design).encode())
    h.update(verilator_version().encode())
    h.update(" ".join(VERILATOR_FLAGS).encode())
    h.update(extra.encode())
    return h.hexdigest()[:20]


def _runtime_dir() -> Path:
    tag = hashlib.sha256((verilator_version() + " ".join(VERILATOR_FLAGS)).encode()).hexdigest()[:12]
    return cache_root() / "verilator" / f"runtime-{tag}"


def _save_runtime(obj: Path, rt_dir: Path) -> None:
    """Keep the compiled Verilator runtime for the next build (atomic: rename a full folder)."""
    if rt_dir.is_dir() or not all((obj / f).is_file() for f in _RUNTIME_OBJS):
        return
    tmp = Path(tempfile.mkdtemp(prefix=".rt.", dir=rt_dir.parent))
    for f in _RUNTIME_OBJS:
        shutil.copyfile(obj / f, tmp / f)
    try:
        os.replace(tmp, rt_dir)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, cdir: Path) -> None:
    """Move a finished build from its temporary folder into the cache in one rename (the object
    files stay behind), so a reader never sees a half-built cache entry."""
    shutil.rmtree(tmp / "obj", ignore_errors=True)
    if cdir.exists():
        shutil.rmtree(cdir)
    os.replace(tmp, cdir)


def _run_tool(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except OSError as exc:
        raise ToolMissingError(f"cannot run {cmd[0]} ({exc})") from exc
    if res.returncode != 0:
        raise RTLSimError(f"{what} failed (rc {res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")


def build(design: RTLDesign, jobs: int = 2) -> Path:
    """Compile the design with its harness (cached); returns the simulator executable."""
    require_cxx()
    exe_name = f"V{design.top}"
    key = design_hash(design)
    cdir = cache_root() / "verilator" / key
    exe = cdir / exe_name
    if exe.is_file():
        log.debug("verilator build cache hit %s", cdir)
        return exe
    cdir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = cdir.parent / f"{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same design
        if exe.is_file():
            return exe
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cdir.parent))
        try:
            for f in design.verilog_files:
                shutil.copyfile(design.out_dir / f, tmp / f)
            write_text(tmp / "harness.cpp", _harness_text(design))
            rt_dir = _runtime_dir()
            cmd = [str(find_verilator()), "--cc", "--exe", "--top-module", design.top, "-Mdir", "obj",
                   *VERILATOR_FLAGS, "harness.cpp", *design.verilog_files]
            t0 = time.time()
            _run_tool(cmd, tmp, f"verilator of {design.top}")
            if all((rt_dir / f).is_file() for f in _RUNTIME_OBJS):
                # copied after Verilator wrote the makefile, so they are newer and make keeps them
                for f in _RUNTIME_OBJS:
                    shutil.copyfile(rt_dir / f, tmp / "obj" / f)
            _run_tool(["make", "-j", str(jobs), "-f", f"{exe_name}.mk", *_MAKE_VARS, exe_name], tmp / "obj",
                      f"C++ build of {design.top}")
            shutil.copyfile(tmp / "obj" / exe_name, tmp / exe_name)
            os.chmod(tmp / exe_name, 0o755)
            log.info("verilator build %s: %.1f s", key, time.time() - t0)
            _save_runtime(tmp / "obj", rt_dir)
            _publish(tmp, cdir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return exe


@dataclass
class SimResult:
    """Raw harness output: words and the cycle each one moved."""

    out_words: list[int]
    out_cycles: np.ndarray
    in_cycles: np.ndarray
    cycles: int
    sim_seconds: float
    timed_out: bool


def simulate_words(design: RTLDesign, in_words: list[int], n_out: int, *, seed: int = 0, p_bubble: float = 0.0,
                   p_stall: float = 0.0, max_cycles: int | None = None, jobs: int = 2) -> SimResult:
    """Feed `in_words` into s_axis_0 and collect `n_out` words from m_axis_0."""
    exe = build(design, jobs=jobs)
    if max_cycles is None:
        slack = 1.0 / max(1e-3, (1 - p_bubble) * (1 - p_stall))
        total = sum(n.exp_cycles for n in design.nodes)
        frames = max(1, len(in_words) // max(1, design.in_stream.words_per_frame))
        max_cycles = int(1000 + 20 * slack * (total * frames + len(in_words) + n_out))
    digits = max(1, (design.s_width + 3) // 4)
    with tempfile.TemporaryDirectory(prefix="rtlsim.") as td:
        tdp = Path(td)
        (tdp / "in.hex").write_text("".join(format(int(w), f"0{digits}x") + "\n" for w in in_words))
        cmd = [str(exe), str(tdp / "in.hex"), str(tdp / "out.txt"), str(tdp / "inc.txt"), str(n_out), str(seed),
               repr(float(p_bubble)), repr(float(p_stall)), str(max_cycles)]
        res = subprocess.run(cmd, cwd=design.out_dir, capture_output=True, text=True)
        if res.returncode != 0:
            # Verilator prints $error/$stop/assertion messages on stdout: both streams name the cause
            raise RTLSimError(f"simulator failed (rc {res.returncode}): {(res.stdout + res.stderr)[-2000:]}")
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        out_words, out_cycles = [], []
        for line in (tdp / "out.txt").read_text().splitlines():
            w, c = line.split()
            out_words.append(int(w, 16))
            out_cycles.append(int(c))
        in_cycles = np.array([int(x) for x in (tdp / "inc.txt").read_text().split()], dtype=np.int64)
    return SimResult(out_words, np.array(out_cycles, dtype=np.int64), in_cycles, int(summary["cycles"]),
                     float(summary["sim_seconds"]), bool(summary["timeout"]))


def pack_frames(x: np.ndarray, s: StreamSpec) -> list[int]:
    """Integer frames (N, ...) -> stream words per the packing contract."""
    x = np.asarray(x)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if flat.shape[1] != s.elems_per_frame:
        raise RTLSimError(f"frame has {flat.shape[1]} elements, the input stream expects {s.elems_per_frame}")
    return packing.pack_words(flat.reshape(-1), s.bits, s.signed, s.fold, s.bipolar)


def unpack_frames(words: list[int], s: StreamSpec, n: int) -> np.ndarray:
    """Stream words -> (n, elems_per_frame) int64."""
    vals = packing.unpack_words(words, s.bits, s.signed, s.fold, s.bipolar)
    return vals.reshape(n, s.elems_per_frame)


@dataclass
class FrameRun:
    """Outputs of N frames plus timing derived from the cycle stamps."""

    outputs: np.ndarray        # (N, elems_per_frame) int64
    sim: SimResult
    frames: int

    def performance(self, fclk_mhz: float) -> dict[str, Any]:
        """FINN's rtlsim_performance.json keys (plus a few of ours)."""
        wpf = len(self.sim.out_words) // self.frames
        ends = self.sim.out_cycles[wpf - 1::wpf]
        ipf = len(self.sim.in_cycles) // self.frames
        starts = self.sim.in_cycles[::ipf]
        cycles = int(ends[-1] - starts[0] + 1)
        latency = int(ends[0] - starts[0] + 1)
        if self.frames >= 3:
            stable = float(np.median(np.diff(ends[1:])))
        elif self.frames == 2:
            stable = float(ends[1] - ends[0])
        else:
            stable = float(latency)
        runtime_ms = cycles / (fclk_mhz * 1e3)
        return {
            "cycles": cycles,
            "runtime[ms]": runtime_ms,
            "throughput[images/s]": self.frames / (runtime_ms / 1e3),
            "fclk[mhz]": fclk_mhz,
            "N": self.frames,
            "latency_cycles": latency,
            "stable_throughput[images/s]": fclk_mhz * 1e6 / stable,
            "stable_cycles_per_frame": stable,
            "sim_seconds": self.sim.sim_seconds,
            "sim_cycles_per_second": self.sim.cycles / max(self.sim.sim_seconds, 1e-9),
        }


def run_frames(design: RTLDesign, frames: np.ndarray, *, seed: int = 0, p_bubble: float = 0.0,
               p_stall: float = 0.0, jobs: int = 2) -> FrameRun:
    """Simulate N integer input frames through the design; outputs unpacked per frame."""
    frames = np.asarray(frames)
    n = frames.shape[0]
    words = pack_frames(frames, design.in_stream)
    n_out = n * design.out_stream.words_per_frame
    sim = simulate_words(design, words, n_out, seed=seed, p_bubble=p_bubble, p_stall=p_stall, jobs=jobs)
    if sim.timed_out or len(sim.out_words) != n_out:
        raise RTLSimError(f"simulation stopped after {sim.cycles} cycles with {len(sim.out_words)}/{n_out} output "
                          f"words ({len(sim.in_cycles)}/{len(words)} input words taken): the design stalls")
    return FrameRun(unpack_frames(sim.out_words, design.out_stream, n), sim, n)


def first_mismatch(expected: np.ndarray, got: np.ndarray) -> str | None:
    """Text naming the first differing element (frame, index, expected, got), or None if equal."""
    expected = np.asarray(expected).reshape(got.shape[0], -1)
    got = np.asarray(got).reshape(expected.shape[0], -1)
    if expected.shape != got.shape:
        return f"shape mismatch: expected {expected.shape}, got {got.shape}"
    diff = np.argwhere(expected != got)
    if diff.size == 0:
        return None
    f, i = diff[0]
    return (f"{len(diff)} mismatching elements; first at frame {f}, index {i}: expected {expected[f, i]}, "
            f"got {got[f, i]}")


def write_performance(path: str | Path, perf: dict[str, Any]) -> Path:
    return write_json(path, perf)


__all__ = ["FrameRun", "RTLSimError", "SimResult", "build", "design_hash", "first_mismatch", "pack_frames", "rtlsim_build",
           "default_inputs", "rtlsim_nodes", "run_frames", "simulate_words", "unpack_frames", "write_performance", "build_shared"]


# --------------------------------------------------------------------------- whole designs

def _golden_tensors(model: Any, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """execute_onnx on the compiled graph, frame by frame: the named tensors, stacked."""
    from qonnx.core.onnx_exec import execute_onnx

    from codesign.dataflow.verify import exact_hw_output

    iname = model.graph.input[0].name
    producers = {n.output[0]: n for n in model.graph.node if n.domain == "codesign.dataflow.ops"}
    acc: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(x.shape[0]):  # per frame: every op executes batch 1 exactly as compiled
        ctx = execute_onnx(model, {iname: x[i:i + 1].astype(np.float32)}, return_full_exec_context=True)
        for n in names:
            # a HW output read by a host op is float32 in ctx: recompute it exactly
            acc[n].append(exact_hw_output(producers[n], ctx) if n in producers else np.asarray(ctx[n]))
    return {n: np.concatenate(v) for n, v in acc.items()}


def _golden_context(model: Any, x: np.ndarray, hw_in: str, hw_out: str) -> tuple[np.ndarray, np.ndarray]:
    """The HW input and HW output tensors of the compiled graph per frame."""
    t = _golden_tensors(model, x, [hw_in, hw_out])
    return t[hw_in], t[hw_out]


def rtlsim_nodes(build_dir: str | Path, inputs: np.ndarray, *, backpressure: bool = True,
                 seed: int = 0) -> dict[str, Any]:
    """Per-node mode: every HW node rendered alone (BUILD/rtl_nodes/<node>/), fed its own input
    tensor from execute_onnx and checked against its own output tensor. Localises a mismatch
    that the whole-design run only reports at the network output."""
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.hw.rtl import hw_node_specs, render_nodes, sanitize_identifiers

    build_dir = Path(build_dir)
    model = ModelWrapper(str(build_dir / "dataflow.onnx"))
    hw = [n for n in model.graph.node if n.domain == "codesign.dataflow.ops"]
    specs = hw_node_specs(model)
    names = sorted({n.input[0] for n in hw} | {n.output[0] for n in hw})
    tensors = _golden_tensors(model, np.asarray(inputs), names)
    bp = dict(p_bubble=0.2, p_stall=0.3) if backpressure else {}
    result: dict[str, Any] = {}
    for node, spec, inst in zip(hw, specs, sanitize_identifiers([s.name for s in specs])):
        if len(spec.inputs) != 1 or len(spec.outputs) != 1:
            # a fork or join alone has two streams on one side; the whole-design run covers it
            log.info("per-node rtlsim: %s (%s) has %d input / %d output streams; not simulated alone",
                     node.name, node.op_type, len(spec.inputs), len(spec.outputs))
            continue
        design = render_nodes([spec], build_dir / "rtl_nodes" / inst)
        x, y = tensors[node.input[0]], tensors[node.output[0]]
        run = run_frames(design, x, seed=seed, **bp)
        mism = first_mismatch(y.reshape(len(y), -1), run.outputs)
        if mism:
            raise RTLSimError(f"node {node.name} ({node.op_type}): {mism}")
        result[node.name] = {"op_type": node.op_type, "frames": int(len(y)),
                             "cycles_per_frame": float(run.performance(100.0)["stable_cycles_per_frame"]),
                             "exp_cycles": design.nodes[0].exp_cycles}
    log.info("per-node rtlsim: %d nodes bit-exact", len(result))
    return result


def _fclk_from_build(build_dir: Path) -> float | None:
    cfg = build_dir / "report" / "estimate_network_performance.json"
    if cfg.is_file():
        d = json.loads(cfg.read_text())
        lat, cp = d.get("estimated_latency_ns"), d.get("critical_path_cycles")
        if lat and cp:
            return 1e3 * cp / lat
    return None


def default_inputs(model: Any, frames: int, seed: int = 0) -> np.ndarray:
    """`frames` seeded uniform [0, 1] float inputs of the graph's input shape."""
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).random((frames, *shape[1:]), dtype=np.float32)


def rtlsim_build(build_dir: str | Path, inputs: np.ndarray | None = None, frames: int = 10, *,
                 backpressure: bool = False, seed: int = 0, fclk_mhz: float | None = None,
                 top: str = "codesign_top") -> dict[str, Any]:
    """Render BUILD/dataflow.onnx into BUILD/rtl/, simulate N frames, check every output element.

    `inputs`: float inputs of the graph (N, ...); default: `frames` seeded uniform [0, 1] inputs of
    the graph's input shape. The golden output is `execute_onnx` of the compiled graph at the
    tensor leaving the last HW node; the first mismatch is reported with frame/index/values.
    Writes BUILD/report/rtlsim_performance.json and returns its content.
    """
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.dataflow.compiler import hw_input_tensor, hw_output_tensor
    from codesign.dataflow.fifo_sizing import check_deadlock
    from codesign.hw.rtl import render_model

    build_dir = Path(build_dir)
    onnx_path = build_dir / "dataflow.onnx"
    if not onnx_path.is_file():
        raise CodesignError(f"{onnx_path} not found: run `codesign compile` first")
    model = ModelWrapper(str(onnx_path))
    # FIFOs too shallow for a branching graph's reconvergent paths would stall the simulation
    # until its cycle limit: refuse them first, naming the FIFO and the depth it needs
    check_deadlock(model)
    if inputs is None:
        inputs = default_inputs(model, frames, seed)
    inputs = np.asarray(inputs)
    design = render_model(model, build_dir / "rtl", top=top)
    hw_in, hw_out = hw_input_tensor(model), hw_output_tensor(model)
    x_int, y_exp = _golden_context(model, inputs, hw_in, hw_out)
    bp = dict(p_bubble=0.2, p_stall=0.3) if backpressure else {}
    run = run_frames(design, x_int, seed=seed, **bp)
    mism = first_mismatch(y_exp.reshape(len(inputs), -1), run.outputs)
    if mism:
        raise RTLSimError(f"RTL output differs from execute_onnx at {hw_out}: {mism}")
    checked = _check_source(build_dir, model, inputs)
    fclk = fclk_mhz or _fclk_from_build(build_dir) or 100.0
    perf = run.performance(fclk)
    perf["checked_against"] = checked
    est = build_dir / "report" / "estimate_network_performance.json"
    if est.is_file():
        mx = json.loads(est.read_text()).get("max_cycles")
        if mx:
            perf["estimated_max_cycles"] = mx
            perf["stable_cycles_vs_estimate"] = perf["stable_cycles_per_frame"] / mx
    perf["backpressure"] = bool(backpressure)
    perf["bit_exact_frames"] = int(len(inputs))
    write_performance(build_dir / "report" / "rtlsim_performance.json", perf)
    log.info("rtlsim: %d frames bit-exact vs %s; %.0f cycles/frame steady state, latency %d cycles",
             len(inputs), " and ".join(checked), perf["stable_cycles_per_frame"], perf["latency_cycles"])
    return perf


def _check_source(build_dir: Path, model: Any, inputs: np.ndarray) -> list[str]:
    """The RTL equals dataflow.onnx (checked by the caller); here dataflow.onnx must equal the
    source QONNX model the build remembers (BUILD/source.onnx), so a lowering bug is never
    reported as bit-exact. Returns what the RTL was checked against."""
    from codesign.dataflow.verify import mismatch_message, verify_build

    src = build_dir / "source.onnx"
    if not src.is_file():
        log.warning("rtlsim: %s has no source.onnx (built before `compile` recorded it): the RTL is checked "
                    "against dataflow.onnx only, not against the source QONNX model", build_dir)
        return ["dataflow.onnx"]
    rep = verify_build(src, model, len(inputs), inputs=inputs,
                       report_path=build_dir / "report" / "verify_rtlsim.json")
    if not rep["ok"]:
        raise RTLSimError(f"the RTL equals dataflow.onnx, but {mismatch_message(rep)}")
    return ["dataflow.onnx", "source.onnx"]


# --------------------------------------------------------------------------- ctypes model (benchmark)

def build_shared(design: RTLDesign, jobs: int = 2) -> Path:
    """The Verilated model as a shared library with a per-cycle C ABI (`pyshim.cpp.j2`), cached
    like `build`; used to measure what a Python-driven per-cycle loop costs."""
    require_cxx()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    shim = env.get_template("pyshim.cpp.j2").render(top=design.top, s_width=design.s_width, m_width=design.m_width)
    key = design_hash(design, extra="shim" + shim)
    cdir = cache_root() / "verilator" / key
    lib = cdir / f"libV{design.top}.so"
    if lib.is_file():
        return lib
    cdir.parent.mkdir(parents=True, exist_ok=True)
    with open(cdir.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file():
            return lib
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cdir.parent))
        try:
            for f in design.verilog_files:
                shutil.copyfile(design.out_dir / f, tmp / f)
            write_text(tmp / "shim.cpp", shim)
            _run_tool([str(find_verilator()), "--cc", "--top-module", design.top, "-Mdir", "obj", *VERILATOR_FLAGS,
                       "-CFLAGS", "-fPIC", *design.verilog_files], tmp, f"verilator of {design.top}")
            mk = f"V{design.top}.mk"
            _run_tool(["make", "-j", str(jobs), "-f", mk, *_MAKE_VARS, f"V{design.top}__ALL.a", "verilated.o",
                       "verilated_threads.o"], tmp / "obj", "C++ build of the model")
            inc = Path(find_verilator()).parent.parent / "include"
            if not inc.is_dir():
                inc = Path(find_verilator()).resolve().parent.parent / "share" / "verilator" / "include"
            _run_tool(["g++", "-O2", "-fPIC", "-shared", "-std=c++17", f"-I{inc}", f"-I{inc / 'vltstd'}", "-Iobj",
                       "shim.cpp", "obj/verilated.o", "obj/verilated_threads.o", f"obj/V{design.top}__ALL.a",
                       "-pthread", "-o", lib.name], tmp, "shared library link")
            _publish(tmp, cdir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return lib
