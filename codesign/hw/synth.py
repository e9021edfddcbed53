"""Out-of-context Yosys synthesis of a rendered design: real LUT/FF/BRAM18/DSP counts.

`synth_xilinx -family <f> -top <top> -noiopad` keeps the hierarchy (no -flatten), so every HW
node stays one instance of the top and its cells can be counted per node. Counting follows
what Vivado's utilisation report calls LUT (logic LUTs + LUTRAM + SRLs), FF (FD*), BRAM18
(RAMB18 + 2 x RAMB36) and DSP. Yosys has no timing model, so WNS/fmax are reported as null.

The analytical estimate of `codesign.dataflow.cost` is put next to the synthesized count per
node, and `calibrate()` fits per-op-type [factor, offset] pairs (the Calibration format of
`codesign.dataflow.cost`) from such measurements, reporting the error before and after.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from codesign.atomic import write_json
from codesign.errors import CodesignError, ToolMissingError
from codesign.hw.rtl import TEMPLATE_DIR, RTLDesign
from codesign.hw.tools import YOSYS_INSTALL, find_yosys

log = logging.getLogger(__name__)

RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP")

# LUTs per LUTRAM / SRL primitive (Vivado counts them as LUT "memory")
_LUTRAM = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
           "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
           "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
_BRAM18 = {"RAMB18E1": 1, "RAMB18E2": 1, "RAMB36E1": 2, "RAMB36E2": 2, "RAMB18": 1, "RAMB36": 2}
_DSP = {"DSP48E1", "DSP48E2", "DSP48A1", "DSP48"}


def yosys_family(part_or_family: str) -> tuple[str, str]:
    """Yosys synth_xilinx family for a part or board family, and a sentence for the report."""
    s = part_or_family.lower()
    if s in ("xc7", "xcup", "xcu"):
        return s, f"family {s} as requested"
    if s.startswith(("xczu", "xck26", "xck24", "zynq_us+")) or "us+" in s:
        return "xcup", f"{part_or_family}: UltraScale+ -> Yosys family xcup (DSP48E2, RAMB18E2/36E2; URAM not inferred)"
    if s.startswith(("xc7", "zynq7000")):
        return "xc7", f"{part_or_family}: 7-series -> Yosys family xc7 (DSP48E1, RAMB18E1/36E1)"
    raise CodesignError(f"no Yosys family for {part_or_family!r}; use a Xilinx 7-series or UltraScale+ part")


def _script(design: RTLDesign, family: str, json_out: Path) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template("synth.ys.j2").render(files=design.verilog_files, top=design.top, family=family,
                                                  json_out=str(json_out))


def count_cells(cell_types: dict[str, int]) -> dict[str, int]:
    """Map primitive counts to LUT/FF/BRAM_18K/DSP."""
    out = dict.fromkeys(RESOURCES, 0)
    for t, n in cell_types.items():
        if re.fullmatch(r"LUT[1-6]", t):
            out["LUT"] += n
        elif t in _LUTRAM:
            out["LUT"] += _LUTRAM[t] * n
        elif re.fullmatch(r"FD[A-Z]*", t):
            out["FF"] += n
        elif t in _BRAM18:
            out["BRAM_18K"] += _BRAM18[t] * n
        elif t in _DSP:
            out["DSP"] += n
    return out


def _is_primitive(mod: dict[str, Any]) -> bool:
    """Cell-library models (LUT6, FDRE, RAMB18E1, ...) that write_json includes as (white)boxes."""
    attrs = mod.get("attributes", {})
    return any(k in attrs for k in ("blackbox", "whitebox", "lib_whitebox"))


def _flat_types(modules: dict[str, Any], name: str, memo: dict[str, dict[str, int]]) -> dict[str, int]:
    """Primitive type -> count inside module `name`, sub-modules expanded."""
    if name in memo:
        return memo[name]
    acc: dict[str, int] = {}
    for cell in modules[name].get("cells", {}).values():
        t = cell["type"]
        sub = _flat_types(modules, t, memo) if t in modules and not _is_primitive(modules[t]) else {t: 1}
        for k, v in sub.items():
            acc[k] = acc.get(k, 0) + v
    memo[name] = acc
    return acc


def parse_yosys_json(path: Path, top: str, insts: dict[str, str]) -> dict[str, Any]:
    """Per-node and total resources from Yosys' write_json. `insts`: instance -> node name."""
    data = json.loads(Path(path).read_text())
    modules = data["modules"]
    top_name = next((m for m, d in modules.items() if str(d.get("attributes", {}).get("top", "0")).strip("0") != ""),
                    top)
    memo: dict[str, dict[str, int]] = {}
    per_node: dict[str, Any] = {}
    for cname, cell in modules[top_name].get("cells", {}).items():
        t = cell["type"]
        inst = cname.lstrip("\\")
        if t in modules and inst in insts:
            types = _flat_types(modules, t, memo)
            per_node[insts[inst]] = {**count_cells(types), "cells": dict(sorted(types.items()))}
    total_types = _flat_types(modules, top_name, memo)
    return {"nodes": per_node, "total": {**count_cells(total_types), "cells": dict(sorted(total_types.items()))}}


def synth_design(design: RTLDesign, family: str = "xc7", report_path: str | Path | None = None,
                 timeout: int = 3600, keep_dir: str | Path | None = None) -> dict[str, Any]:
    """Run Yosys on a copy of the design (cwd = that copy, for $readmemh); returns the parsed counts.

    `keep_dir`: where the script, log and netlist JSON stay (default: a temporary folder)."""
    yosys = find_yosys()
    fam, note = yosys_family(family)
    with tempfile.TemporaryDirectory(prefix="synth.") as tmp:
        td = str(keep_dir) if keep_dir is not None else tmp
        Path(td).mkdir(parents=True, exist_ok=True)
        # a private copy of the design: Yosys (ABC) needs its cwd to survive a concurrent re-render
        src = Path(td).resolve() / "src"
        src.mkdir(exist_ok=True)
        for f in design.verilog_files + design.data_files:
            shutil.copyfile(design.out_dir / f, src / f)
        json_out = Path(td).resolve() / "netlist.json"
        script = Path(td) / "synth.ys"
        script.write_text(_script(design, fam, json_out))
        t0 = time.time()
        try:
            res = subprocess.run([str(yosys), "-q", "-l", str(Path(td).resolve() / "yosys.log"), "-s",
                                  str(script.resolve())],
                                 cwd=src, capture_output=True, text=True, timeout=timeout)
        except OSError as exc:
            raise ToolMissingError(f"cannot run yosys ({exc}); install it with: {YOSYS_INSTALL}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CodesignError(f"yosys did not finish within {timeout} s") from exc
        if res.returncode != 0 or not json_out.is_file():
            logtxt = (Path(td) / "yosys.log").read_text() if (Path(td) / "yosys.log").is_file() else ""
            raise CodesignError(f"yosys failed (rc {res.returncode}):\n{(res.stderr + logtxt)[-4000:]}")
        seconds = time.time() - t0
        insts = {n.inst: n.node_name for n in design.nodes}
        counts = parse_yosys_json(json_out, design.top, insts)
    tot = counts["total"]
    report = {
        "LUT": tot["LUT"], "FF": tot["FF"], "DSP": tot["DSP"], "BRAM": tot["BRAM_18K"] / 2, "BRAM_18K": tot["BRAM_18K"],
        "URAM": 0, "WNS": None, "fmax_mhz": None,
        "tool": "yosys " + _yosys_version(yosys), "family": fam, "family_note": note,
        "timing_note": "Yosys has no timing model: WNS/fmax need Vivado",
        "synth_seconds": round(seconds, 2), "top": design.top, "nodes": counts["nodes"], "cells": tot["cells"],
    }
    if report_path is not None:
        write_json(report_path, report)
    log.info("yosys %s: LUT %d FF %d BRAM18 %d DSP %d (%.1f s)", fam, tot["LUT"], tot["FF"], tot["BRAM_18K"],
             tot["DSP"], seconds)
    return report


def _yosys_version(yosys: Path) -> str:
    try:
        out = subprocess.run([str(yosys), "-V"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"Yosys (\S+)", out)
    return m.group(1) if m else "?"


# --------------------------------------------------------------------------- estimate vs synthesis

def estimates_for(model: Any, calibration: Any = None) -> dict[str, dict[str, Any]]:
    """Analytical per-node estimate from codesign.dataflow.cost ({} if the cost model is absent)."""
    try:
        from codesign.dataflow.cost import IDENTITY, node_cost
        from codesign.dataflow.cost import hw_nodes as cost_hw_nodes
    except ImportError:
        return {}
    cal = calibration if calibration is not None else IDENTITY
    return {n.name: node_cost(model, n, cal) for n in cost_hw_nodes(model)}


def side_by_side(synth: dict[str, Any], est: dict[str, dict[str, Any]], op_types: dict[str, str]) -> list[dict[str, Any]]:
    """Rows: node, op type, estimate and Yosys count per resource."""
    rows = []
    for name, meas in synth["nodes"].items():
        row: dict[str, Any] = {"node": name, "op_type": op_types.get(name, "?")}
        for r in RESOURCES:
            row[f"{r}_yosys"] = meas[r]
            row[f"{r}_est"] = int(est[name][r]) if name in est else None
        rows.append(row)
    return rows


def synth_build(build_dir: str | Path, family: str | None = None, top: str = "codesign_top",
                timing: Any = None, timeout: int = 3600) -> dict[str, Any]:
    """Render (if needed) and synthesize BUILD/; writes BUILD/report/ooc_synth_and_timing.json and
    BUILD/report/synth_vs_estimate.json (per node, estimate next to Yosys).

    `timing`: a codesign.hw.timing.TimingConfig (or True for the defaults at the build's clock)
    to also place and route every node and the top on ECP5 and put fmax_mhz and the critical
    path into the same report (per node and top)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.hw.rtl import render_model

    build_dir = Path(build_dir)
    onnx_path = build_dir / "dataflow.onnx"
    if not onnx_path.is_file():
        raise CodesignError(f"{onnx_path} not found: run `codesign compile` first")
    model = ModelWrapper(str(onnx_path))
    design = render_model(model, build_dir / "rtl", top=top)
    if family is None:
        family = _board_part(build_dir) or "xc7"
    report_path = build_dir / "report" / "ooc_synth_and_timing.json"
    rep = synth_design(design, family, None if timing else report_path, timeout=timeout,
                       keep_dir=build_dir / "synth")
    if timing:
        from codesign.hw.timing import TimingConfig, merge_into_synth_report, timing_design

        cfg = timing if isinstance(timing, TimingConfig) else TimingConfig(clock_mhz=_build_clock_mhz(build_dir))
        merge_into_synth_report(rep, timing_design(design, cfg, keep_dir=build_dir / "timing"))
        write_json(report_path, rep)
    est = estimates_for(model)
    rows = side_by_side(rep, est, {n.node_name: n.op_type for n in design.nodes})
    write_json(build_dir / "report" / "synth_vs_estimate.json", {"family": rep["family"], "nodes": rows})
    rep["estimate_rows"] = rows
    return rep


def _build_clock_mhz(build_dir: Path) -> float:
    """The build's target clock: estimated FPS x max cycles = clock (estimate report), else 100 MHz."""
    p = build_dir / "report" / "estimate_network_performance.json"
    try:
        d = json.loads(p.read_text())
        mhz = float(d["estimated_throughput_fps"]) * float(d["max_cycles"]) / 1e6
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 100.0
    return round(mhz, 3) if mhz > 0 else 100.0


def _board_part(build_dir: Path) -> str | None:
    for name in ("estimate_utilization.json", "estimate_utilisation.json"):
        p = build_dir / "report" / name
        if p.is_file():
            try:
                d = json.loads(p.read_text())
            except json.JSONDecodeError:
                continue
            part = d.get("part") if isinstance(d, dict) else None
            if isinstance(part, str):
                return part
    return None


# --------------------------------------------------------------------------- calibration

def _errors(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Mean absolute relative error (|est - meas| / max(meas, 1)) per resource."""
    out = {}
    for r in RESOURCES:
        pairs = [(row[f"{r}_{key}"], row[f"{r}_yosys"]) for row in rows if row.get(f"{r}_{key}") is not None]
        if pairs:
            out[r] = float(np.mean([abs(e - m) / max(m, 1) for e, m in pairs]))
    return out


def fit_calibration(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per op type and resource, least-squares [factor, offset] mapping estimate -> Yosys count.

    With fewer than 3 distinct estimates, or when the affine fit has a negative offset (which
    would extrapolate small nodes to zero), a pure factor (offset 0) is fitted; a resource that
    is zero in every measurement and estimate keeps the identity.
    """
    fits: dict[str, dict[str, list[float]]] = {}
    by_op: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_op.setdefault(row["op_type"], []).append(row)
    for op, rs in by_op.items():
        for r in RESOURCES:
            pts = [(row[f"{r}_est"], row[f"{r}_yosys"]) for row in rs if row.get(f"{r}_est") is not None]
            if not pts:
                continue
            e = np.array([p[0] for p in pts], dtype=np.float64)
            m = np.array([p[1] for p in pts], dtype=np.float64)
            if not e.any() and not m.any():
                continue
            a = b = None
            if len(np.unique(e)) >= 3:
                a, b = np.linalg.lstsq(np.stack([e, np.ones_like(e)], 1), m, rcond=None)[0]
                if b < 0 or a <= 0:  # a negative offset would zero small nodes: keep a pure factor
                    a = b = None
            if a is not None:
                pass
            elif e.any():
                a, b = float(e @ m / (e @ e)), 0.0
            else:  # estimate always 0: only an offset can help
                a, b = 1.0, float(m.mean())
            fits.setdefault(op, {})[r] = [round(float(a), 4), round(float(b), 2)]
    return fits


def calibrate(rows: list[dict[str, Any]], out_path: str | Path | None = None, family: str = "xc7") -> dict[str, Any]:
    """Fit a calibration from estimate-vs-Yosys rows; report the error before and after.

    Writes the Calibration JSON (loadable by codesign.dataflow.cost.Calibration.load) when
    `out_path` is given.
    """
    fits = fit_calibration(rows)
    after_rows = []
    for row in rows:
        new = dict(row)
        for r in RESOURCES:
            if row.get(f"{r}_est") is None:
                continue
            a, b = fits.get(row["op_type"], {}).get(r, [1.0, 0.0])
            new[f"{r}_est"] = max(int(np.rint(a * row[f"{r}_est"] + b)), 0)
        after_rows.append(new)
    before, after = _errors(rows, "est"), _errors(after_rows, "est")
    per_op = {}
    for op in sorted({r["op_type"] for r in rows}):
        per_op[op] = {"n": sum(1 for r in rows if r["op_type"] == op),
                      "before": _errors([r for r in rows if r["op_type"] == op], "est"),
                      "after": _errors([r for r in after_rows if r["op_type"] == op], "est")}
    result = {"fits": fits, "error_before": before, "error_after": after, "per_op": per_op, "n_nodes": len(rows)}
    groups = sorted({r["build"] for r in rows if "build" in r})
    if len(groups) >= 2:
        # out-of-sample check: fit without one build, measure the error on that build
        held: list[dict[str, Any]] = []
        for g in groups:
            train = [r for r in rows if r.get("build") != g]
            fit_g = fit_calibration(train)
            for row in rows:
                if row.get("build") != g:
                    continue
                new = dict(row)
                for r in RESOURCES:
                    if row.get(f"{r}_est") is not None:
                        a, b = fit_g.get(row["op_type"], {}).get(r, [1.0, 0.0])
                        new[f"{r}_est"] = max(int(np.rint(a * row[f"{r}_est"] + b)), 0)
                held.append(new)
        result["error_leave_one_build_out"] = _errors(held, "est")
    if out_path is not None:
        doc = {"_comment": f"Fitted by codesign.hw.synth.calibrate from {len(rows)} nodes synthesized with Yosys "
                           f"synth_xilinx -family {family}; estimate = factor * formula + offset.",
               "_error_before": before, "_error_after": after,
               "_error_leave_one_build_out": result.get("error_leave_one_build_out"), **fits}
        write_json(out_path, doc)
    return result


__all__ = ["RESOURCES", "calibrate", "calibrate_builds", "count_cells", "estimates_for", "fit_calibration", "parse_yosys_json",
           "side_by_side", "synth_build", "synth_design", "yosys_family"]


def calibrate_builds(build_dirs: list[str | Path], out_path: str | Path, family: str | None = None) -> dict[str, Any]:
    """Synthesize several builds and fit one calibration from all their nodes (rows pooled)."""
    rows: list[dict[str, Any]] = []
    fam = "xc7"
    for b in build_dirs:
        rep = synth_build(b, family)
        fam = rep["family"]
        rows += [dict(r, build=str(b)) for r in rep["estimate_rows"]]
    res = calibrate(rows, out_path, fam)
    res["rows"] = rows
    return res
