"""FINN+ (PyPI finn-plus 1.6.1) in the loop: its estimate flow, its cost model and its Python
execution, run on the project's own QONNX models and folding.

FINN+ lives in its own environment (`.venv-finn`, made by tools/setup_finn.sh: its pins
conflict with ours) and runs as a subprocess (`finn_runner.py`): its builder takes over stdout and
root logging. One subprocess runs a whole batch of jobs, so its ~4 s import is paid once.

What it is used for:
- `estimate_builds`: FINN+'s estimate-only flow on FINN build directories (`finn.write_finn_build_dir`).
- `compare_build`: FINN+'s per-node cycles / LUT / BRAM / DSP next to ours, with the reasons they differ.
- `estimate_designs`: FINN's cost model for many candidate designs (re-ranking a Pareto set).
- `crosscheck`: the QONNX model, our compiled graph and FINN+'s own HW graph (executed in Python)
  on the same inputs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from codesign import atomic
from codesign.backends import finn
from codesign.errors import CodesignError, ToolMissingError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().with_name("finn_runner.py")
STAMP_NAME = ".codesign-finn-setup"
FINN_PYTHON_ENV = "CODESIGN_FINN_PYTHON"
SETUP_HINT = "run `bash tools/setup_finn.sh` (FINN_VENV=DIR to choose where), or pass --finn-python"
FINN_MODEL = "step_generate_estimate_reports.onnx"
RESOURCES = ("LUT", "BRAM_18K", "DSP")


@dataclass(frozen=True)
class FinnConfig:
    """Where FINN+ is and how long it may run. The only place the FINN+ environment is read."""

    python: Path
    timeout_s: float = 1800.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, python: str | Path | None = None, timeout_s: float = 1800.0) -> "FinnConfig":
        """Explicit `python` > $CODESIGN_FINN_PYTHON > <repo>/.venv-finn/bin/python."""
        chosen = python or os.environ.get(FINN_PYTHON_ENV) or REPO_ROOT / ".venv-finn" / "bin" / "python"
        return cls(python=Path(chosen), timeout_s=timeout_s)

    @property
    def venv(self) -> Path:
        return self.python.parent.parent

    @property
    def stamp(self) -> Path:
        """Written by tools/setup_finn.sh after its self-check passed."""
        return self.venv / STAMP_NAME

    def setup_succeeded(self) -> bool:
        return self.stamp.is_file()

    def require(self) -> None:
        if not self.python.is_file():
            raise ToolMissingError(f"FINN+ environment not found ({self.python}); {SETUP_HINT}")

    def env(self, work: Path) -> dict[str, str]:
        """The subprocess environment: ours plus FINN+'s two variables, both inside `work`
        (FINN_BUILD_DIR must exist; FINN_SETTINGS may be a missing file, else FINN+ writes ~/.finn)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        env.update({"FINN_BUILD_DIR": str(work / "finn_tmp"), "FINN_SETTINGS": str(work / "finn_settings.yaml"),
                    "PYTHONNOUSERSITE": "1"})
        env.pop("PYTHONPATH", None)  # our packages must not shadow FINN+'s (onnx, qonnx, brevitas)
        env.update(self.extra_env)
        (work / "finn_tmp").mkdir(parents=True, exist_ok=True)
        return env


def run_jobs(jobs: list[dict[str, Any]], cfg: FinnConfig, work: Path | None = None) -> dict[str, Any]:
    """Run `jobs` in one FINN+ subprocess; returns its result document (results in job order).

    The runner's own output (FINN+'s console mirror) goes to `work/finn_runner.log`.
    """
    cfg.require()
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="codesign_finn_")
        work = Path(tmp.name)
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    jobs_path, out_path, log_path = work / "finn_jobs.json", work / "finn_results.json", work / "finn_runner.log"
    atomic.write_json(jobs_path, jobs)
    out_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        with open(log_path, "w") as logf:
            proc = subprocess.run([str(cfg.python), str(RUNNER), "batch", str(jobs_path), str(out_path)],
                                  cwd=work, env=cfg.env(work), stdout=logf, stderr=subprocess.STDOUT,
                                  timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise CodesignError(f"FINN+ ran past {cfg.timeout_s:.0f} s; see {log_path}") from exc
    except OSError as exc:
        raise ToolMissingError(f"FINN+ environment does not run ({cfg.python}: {exc}); {SETUP_HINT}") from exc
    if proc.returncode != 0 or not out_path.is_file():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise CodesignError(f"FINN+ runner failed (rc {proc.returncode}): {tail[0][:300]}; see {log_path}")
    doc = atomic.read_json(out_path)
    doc["wall_seconds"] = round(time.perf_counter() - t0, 3)
    if tmp is not None:
        tmp.cleanup()
    return doc


def estimate_builds(build_dirs: Iterable[str | Path], cfg: FinnConfig, work: Path | None = None) -> list[dict[str, Any]]:
    """FINN+'s estimate-only flow on each FINN build directory (one subprocess for all)."""
    dirs = [Path(d).resolve() for d in build_dirs]
    jobs = [{"kind": "estimate", "build_dir": str(d)} for d in dirs]
    doc = run_jobs(jobs, cfg, work if work is not None else (dirs[0] / "runner" if len(dirs) == 1 else None))
    return doc["results"]


# ----------------------------------------------------------------------------------- comparison


def _nodes(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def align_nodes(ours: list[tuple[str, str]], theirs: list[tuple[str, str]], before: list[str] | None = None
                ) -> tuple[dict[str, list[str]], list[str]]:
    """Map our HW nodes onto FINN+'s by order and type (FINN_LOWERING); also the FINN nodes that
    match none of ours (the nodes FINN puts in hardware that we keep on the host, or new ones).

    `ours`: (name, op type) of our HW chain; `theirs`: (name, FINN op type) of FINN's graph.
    """
    expected: list[tuple[str, str]] = []  # (our name, FINN base type) in stream order
    for name, op in ours:
        for fop, _ in finn.finn_lowering(op) or ():
            expected.append((name, fop))
    mapping: dict[str, list[str]] = {name: [] for name, op in ours if finn.finn_lowering(op)}
    unmatched: list[str] = []
    i = 0
    for fname, fop in theirs:
        base = finn.finn_base_type(fop)
        if i < len(expected) and expected[i][1] == base:
            mapping[expected[i][0]].append(fname)
            i += 1
        else:
            unmatched.append(fname)
    return mapping, unmatched


def _our_reports(build_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    rep = build_dir / "report"
    try:
        return (atomic.read_json(rep / "estimate_layer_cycles.json"), atomic.read_json(rep / "estimate_layer_resources.json"),
                atomic.read_json(rep / "estimate_network_performance.json"))
    except FileNotFoundError as exc:
        raise CodesignError(f"{rep}: the embedded build's reports are missing; run `codesign compile` first") from exc


def _reasons(op: str, ours_attrs: dict[str, Any], finn_nodes: list[tuple[str, dict[str, Any]]],
             mine: dict[str, float], theirs: dict[str, float]) -> list[str]:
    """Why our and FINN+'s figures for one node differ (only for the figures that do); the
    op-specific reasons come from the op class (``finn_difference_notes``)."""
    from codesign.dataflow.ops import op_class

    main = finn_nodes[0][1] if finn_nodes else {}
    why: list[str] = []
    for k in ("PE", "SIMD"):
        if k in ours_attrs and k in main and int(ours_attrs[k]) != int(main[k]):
            why.append(f"folding differs: ours {k}={ours_attrs[k]}, FINN {k}={main[k]}")
    why.extend(op_class(op).finn_difference_notes(ours_attrs, main, mine, theirs))
    if mine["cycles"] != theirs["cycles"] and not any(r.startswith("folding") for r in why):
        why.append(f"cycle formula for {op} differs at the same folding")
    if mine["LUT"] != theirs["LUT"] and not any("LUT" in r for r in why):
        why.append(f"LUT model for {op} differs")
    return why


def _dtype_bits(name: str) -> int:
    import re

    if name in ("BIPOLAR", "BINARY"):
        return 1
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def compare_build(build_dir: str | Path, finn_output: str | Path) -> dict[str, Any]:
    """Per node cycles, LUT, BRAM, DSP from our build and from FINN+'s, and why they differ."""
    build_dir, finn_output = Path(build_dir), Path(finn_output)
    cyc, res, perf = _our_reports(build_dir)
    frep = finn_output / "report"
    fcyc = atomic.read_json(frep / "estimate_layer_cycles.json")
    fres = atomic.read_json(frep / "estimate_layer_resources.json")
    fperf = atomic.read_json(frep / "estimate_network_performance.json")
    our_nodes = [n for n in _nodes(build_dir / "dataflow.onnx") if n.domain == finn.HW_DOMAIN]
    finn_nodes = _nodes(finn_output / "intermediate_models" / FINN_MODEL)
    fattrs = {n.name: _attrs(n) for n in finn_nodes}
    ftypes = {n.name: n.op_type for n in finn_nodes}
    before, after = finn.host_nodes_finn_puts_in_hw(build_dir / "dataflow.onnx")
    mapping, unmatched = align_nodes([(n.name, n.op_type) for n in our_nodes], [(n.name, n.op_type) for n in finn_nodes])
    rows = []

    def figs(names: list[str], c: dict, r: dict) -> dict[str, float]:
        return {"cycles": max([int(c.get(n, 0)) for n in names] or [0]),
                **{k: float(sum(r.get(n, {}).get(k, 0) for n in names)) for k in RESOURCES}}

    for n in our_nodes:
        mine = figs([n.name], cyc, res)
        if n.op_type in finn.FINN_INSERTS_ITSELF:
            rows.append({"node": n.name, "op": n.op_type, "finn_nodes": [], "ours": mine, "finn": None,
                         "why": ["we insert FIFOs/width converters at compile time (in our totals); FINN+ sizes "
                                 "its own after the estimate steps"]})
            continue
        fn = mapping.get(n.name, [])
        theirs = figs(fn, fcyc, fres) if fn else None
        row = {"node": n.name, "op": n.op_type, "finn_nodes": fn, "ours": mine, "finn": theirs, "why": []}
        if theirs is None:
            row["why"] = ["no FINN+ node matched (FINN+'s lowering differs here)"]
        elif mine != theirs:
            row["why"] = _reasons(n.op_type, _attrs(n), [(f, fattrs[f]) for f in fn], mine, theirs)
        rows.append(row)
    host_desc = {"Quant": "the float input quantizer", "Mul": "the output scale", "Add": "the output bias"}
    host_kinds = {fop: host_desc[h] for table in (finn.FINN_HOST_TO_HW_BEFORE, finn.FINN_HOST_TO_HW_AFTER)
                  for h, fop in table.items() if h in host_desc}
    for f in unmatched:
        base = finn.finn_base_type(ftypes[f])
        what = host_kinds.get(base)
        why = (f"FINN+ puts {what} in hardware; we keep it on the host" if what and base in before + after
               else f"FINN+ adds a {base} node we do not have")
        rows.append({"node": None, "op": None, "finn_nodes": [f], "ours": None, "finn": figs([f], fcyc, fres), "why": [why]})
    predicted = {}
    name_map_file = build_dir / "finn" / "folding_name_map.json"
    if name_map_file.is_file():
        predicted = atomic.read_json(name_map_file)
    mismatched = sorted(k for k, names in predicted.items() if mapping.get(k) and not set(mapping[k]) <= set(names))
    network_why = []
    bott = fperf.get("max_cycles_node_name")
    if bott in unmatched and fperf.get("max_cycles") != perf.get("max_cycles"):
        a = fattrs.get(bott, {})
        par = f" (PE {a['PE']} of NumChannels {a['NumChannels']})" if "PE" in a and "NumChannels" in a else ""
        network_why.append(f"FINN+'s bottleneck is {bott}{par}, a node only FINN+ has (our folding does not "
                           f"cover it): {fperf.get('max_cycles'):,} cycles vs our {perf.get('max_cycles'):,}")
    ours_total = {k: float(res.get("total", {}).get(k, 0)) for k in RESOURCES}
    finn_total = {k: float(fres.get("total", {}).get(k, 0)) for k in RESOURCES}
    return {
        "build": str(build_dir), "finn_output": str(finn_output), "rows": rows,
        "totals": {"ours": ours_total, "finn": finn_total},
        "network": {"ours": {k: perf.get(k) for k in ("max_cycles", "max_cycles_node_name", "estimated_throughput_fps")},
                    "finn": {k: fperf.get(k) for k in ("max_cycles", "max_cycles_node_name", "estimated_throughput_fps")}},
        "network_why": network_why,
        "folding_names_mismatched": mismatched,
        "finn_only_nodes": unmatched,
    }


def print_comparison(cmp: dict[str, Any]) -> None:
    """The comparison as a rich table (CLI output)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    t = Table(title="embedded vs FINN+ 1.6.1 estimates (ours / FINN)")
    for col in ("node", "FINN node(s)", "cycles", "LUT", "BRAM18", "DSP", "why they differ"):
        t.add_column(col, justify="right" if col in ("cycles", "LUT", "BRAM18", "DSP") else "left")

    def pair(row: dict[str, Any], k: str) -> str:
        a = "-" if row["ours"] is None else f"{row['ours'][k]:,.0f}"
        b = "-" if row["finn"] is None else f"{row['finn'][k]:,.0f}"
        return a if a == b else f"{a} / {b}"

    plumbing = [r for r in cmp["rows"] if r["op"] in finn.FINN_INSERTS_ITSELF]
    for r in cmp["rows"]:
        if r in plumbing:
            continue
        t.add_row(r["node"] or "-", ", ".join(r["finn_nodes"]) or "-", pair(r, "cycles"), pair(r, "LUT"),
                  pair(r, "BRAM_18K"), pair(r, "DSP"), "; ".join(r["why"]))
    if plumbing:
        t.add_row(f"{len(plumbing)} FIFOs/DWCs", "-", "", f"{sum(r['ours']['LUT'] for r in plumbing):,.0f} / -",
                  f"{sum(r['ours']['BRAM_18K'] for r in plumbing):,.0f} / -", "", plumbing[0]["why"][0])
    o, f = cmp["totals"]["ours"], cmp["totals"]["finn"]
    t.add_section()
    no, nf = cmp["network"]["ours"], cmp["network"]["finn"]
    t.add_row("total", "", f"{no['max_cycles']:,} / {nf['max_cycles']:,} max", f"{o['LUT']:,.0f} / {f['LUT']:,.0f}",
              f"{o['BRAM_18K']:,.0f} / {f['BRAM_18K']:,.0f}", f"{o['DSP']:,.0f} / {f['DSP']:,.0f}", "")
    con = Console(width=None if sys.stdout.isatty() else 180)
    con.print(t)
    con.print(f"FPS: ours {no['estimated_throughput_fps']:,.1f}, FINN+ {nf['estimated_throughput_fps']:,.1f}"
              + "".join(f"; {w}" for w in cmp.get("network_why", [])))


def finn_estimate_for_build(build_dir: str | Path, qonnx: str | Path, board: str, clock_ns: float,
                            cfg: FinnConfig, crosscheck_frames: int = 0, seed: int = 0) -> dict[str, Any]:
    """`compile --backend finn`: write BUILD/finn, run FINN+'s estimate flow (and optionally its
    Python execution) in one subprocess, copy FINN's reports to BUILD/finn/report/ and write
    BUILD/report/finn_vs_embedded.json (and finn_crosscheck.json)."""
    build_dir = Path(build_dir)
    finn_dir = finn.write_finn_build_dir(qonnx, build_dir / "finn", board, clock_ns,
                                         folding=build_dir / "folding_config.json")
    if not cfg.python.is_file():
        raise ToolMissingError(f"FINN+ environment not found ({cfg.python}); {SETUP_HINT}. "
                               f"the FINN build directory {finn_dir} was written (its hardware steps: docs/deploy.md)")
    jobs: list[dict[str, Any]] = [{"kind": "estimate", "build_dir": str(finn_dir.resolve())}]
    xs = None
    if crosscheck_frames:
        xs = crosscheck_inputs(qonnx, crosscheck_frames, seed)
        np.save(finn_dir / "crosscheck_inputs.npy", xs)
        out_dir = _finn_output_dir(finn_dir)
        jobs.append({"kind": "execute", "output_dir": str(out_dir), "inputs": str((finn_dir / "crosscheck_inputs.npy").resolve()),
                     "outputs": str((finn_dir / "crosscheck_finn_outputs.npy").resolve())})
    doc = run_jobs(jobs, cfg, finn_dir / "runner")
    est = doc["results"][0]
    if not est.get("ok"):
        raise CodesignError(f"FINN+ estimate build failed: {est.get('error')}")
    out = Path(est["output_dir"])
    finn.collect_reports(out, finn_dir / "report")
    cmp = compare_build(build_dir, out)
    cmp["finn_seconds"] = est["seconds"]
    cmp["finn_import_seconds"] = doc["import_seconds"]
    atomic.write_json(build_dir / "report" / "finn_vs_embedded.json", cmp)
    result: dict[str, Any] = {"comparison": cmp}
    if crosscheck_frames:
        ex = doc["results"][1]
        if not ex.get("ok"):
            raise CodesignError(f"FINN+ Python execution failed: {ex.get('error')}")
        cc = three_way(qonnx, build_dir / "dataflow.onnx", xs, np.load(ex["outputs"]))
        cc["finn_execution"] = {k: ex[k] for k in ("seconds", "hw_op_types", "host_op_types")}
        atomic.write_json(build_dir / "report" / "finn_crosscheck.json", cc)
        result["crosscheck"] = cc
    return result


def _finn_output_dir(finn_dir: Path) -> Path:
    cfg = atomic.read_json(finn_dir / "dataflow_build_config.json")
    return (finn_dir / cfg["output_dir"]).resolve()


# ----------------------------------------------------------------------------------- cross-check


def crosscheck_inputs(qonnx: str | Path, n: int, seed: int = 0) -> np.ndarray:
    """n seeded random images of the model's input shape, pixels k/255 (what a camera delivers)."""
    import onnx

    m = onnx.load(str(qonnx), load_external_data=False)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, *dims[1:])) / 255.0).astype(np.float32)


def _compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(a))))
    diff = np.abs(a - b)
    return {"max_abs_diff": float(diff.max()), "tolerance": 1e-5 * scale,
            "agree": bool(diff.max() <= 1e-5 * scale), "bit_identical": bool(np.array_equal(a, b)),
            "argmax_agreement": float(np.mean(a.argmax(1) == b.argmax(1)))}


def three_way(qonnx: str | Path, dataflow_onnx: str | Path, xs: np.ndarray, finn_out: np.ndarray) -> dict[str, Any]:
    """The QONNX model (float64 reference), our compiled graph and FINN+'s Python execution on
    the same inputs. Agreement is to the float rounding of the output scale (the integer cores
    are exact: the compiled graph's accumulators equal the reference's, see the compiler tests)."""
    from qonnx.core.onnx_exec import execute_onnx

    from codesign.dataflow.compiler import load_model
    from codesign.export import run_qonnx
    from codesign.reference import float64_reference

    ref = float64_reference(load_model(str(qonnx)))
    y_ref = run_qonnx(ref, xs.astype(np.float64)).astype(np.float32)
    import codesign.dataflow.ops  # noqa: F401  (registers our HW ops with qonnx's executor)
    from qonnx.core.modelwrapper import ModelWrapper

    ours = ModelWrapper(str(dataflow_onnx))
    iname, oname = ours.graph.input[0].name, ours.graph.output[0].name
    y_ours = np.concatenate([execute_onnx(ours, {iname: xs[i:i + 1]})[oname] for i in range(len(xs))])
    y_finn = finn_out.reshape(y_ours.shape)
    pairs = {"qonnx_vs_embedded": _compare(y_ref, y_ours), "qonnx_vs_finn": _compare(y_ref, y_finn),
             "embedded_vs_finn": _compare(y_ours, y_finn)}
    return {"frames": int(len(xs)), **pairs, "agree": all(p["agree"] for p in pairs.values())}


# ----------------------------------------------------------------------------------- many designs


def estimate_designs(designs: list[dict[str, Any]], cfg: FinnConfig, work: str | Path) -> dict[str, Any]:
    """FINN+'s cost model for many candidate designs in one subprocess.

    Each design: {"qonnx": path, "folding": our folding_config.json (dataflow.onnx beside it),
    "board": name, "clock_ns": float}. Returns {"designs": [{"ok", "max_cycles", "fps", "LUT",
    "BRAM_18K", "DSP", "seconds"}...], "import_seconds", "seconds_per_design"}.
    """
    work = Path(work).resolve()
    dirs = []
    for i, d in enumerate(designs):
        fd = finn.write_finn_build_dir(d["qonnx"], work / f"design_{i:03d}", d["board"], float(d["clock_ns"]),
                                       folding=d["folding"])
        dirs.append(fd)
    t0 = time.perf_counter()
    doc = run_jobs([{"kind": "estimate", "build_dir": str(p)} for p in dirs], cfg, work / "runner")
    wall = time.perf_counter() - t0
    out = []
    for r in doc["results"]:
        if not r.get("ok"):
            out.append({"ok": False, "error": r.get("error")})
            continue
        perf = r["reports"]["estimate_network_performance"]
        tot = r["reports"]["estimate_layer_resources"]["total"]
        out.append({"ok": True, "max_cycles": perf["max_cycles"], "fps": perf["estimated_throughput_fps"],
                    **{k: float(tot.get(k, 0)) for k in RESOURCES}, "seconds": r["seconds"]})
    n = max(1, len(designs))
    return {"designs": out, "import_seconds": doc["import_seconds"], "wall_seconds": round(wall, 3),
            "seconds_per_design": round((wall - doc["import_seconds"]) / n, 3)}


def clean_work(path: str | Path) -> None:
    """Remove a work folder of estimate_designs (FINN's intermediate models are large)."""
    shutil.rmtree(path, ignore_errors=True)
