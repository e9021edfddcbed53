"""Estimate reports with FINN's file names and keys (finn-reference §1), plus board utilisation.

Why FINN's names: a user who knows FINN (or a script written for FINN's `report/` folder) reads
these files unchanged. Extra keys (FF) are additive; FINN's own keys are all present.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from codesign.atomic import write_json
from codesign.dataflow.cost import (DSP48, MODEL_NAME, RESOURCES, Calibration, hw_nodes, model_cost, node_attrs,
                                    node_params)
from codesign.dataflow.ops import op_class

log = logging.getLogger(__name__)

REPORT_FILES = ("estimate_layer_resources.json", "estimate_layer_cycles.json",
                "estimate_network_performance.json", "op_and_param_counts.json")


def layer_resources(mc: dict[str, Any]) -> dict[str, Any]:
    """FINN's estimate_layer_resources.json body from a `model_cost` result. Every entry (and
    "total") also names what produced it: "model" (the cost model and its version) and
    "calibration" (the calibration source; "identity" when none), so a report read later or
    beside FINN's says whose estimate it is. Per entry, not top level, so readers that walk
    the file as {node: {resource: value}} keep working."""
    origin = {"model": mc.get("model", MODEL_NAME), "calibration": mc.get("calibration", "identity")}
    out: dict[str, Any] = {}
    for name, c in mc["nodes"].items():
        out[name] = {"BRAM_18K": c["BRAM_18K"], "BRAM_efficiency": round(c["BRAM_efficiency"], 4),
                     "LUT": c["LUT"], "URAM": c["URAM"], "URAM_efficiency": round(c["URAM_efficiency"], 4),
                     "DSP": c["DSP"], "FF": c["FF"], **origin}
    out["total"] = {**{r: mc["total"][r] for r in ("BRAM_18K", "LUT", "URAM", "DSP", "FF")}, **origin}
    return out


def network_performance(mc: dict[str, Any], clock_ns: float) -> dict[str, Any]:
    """FINN's estimate_network_performance.json: throughput = f_clk / max_cycles,
    latency = critical path cycles x T_clk."""
    mx = mc["max_cycles"]
    return {"critical_path_cycles": mc["critical_path_cycles"], "max_cycles": mx,
            "max_cycles_node_name": mc["max_cycles_node_name"],
            "estimated_throughput_fps": (1e9 / (clock_ns * mx)) if mx else 0.0,
            "estimated_latency_ns": mc["critical_path_cycles"] * clock_ns,
            # register stages of the pipelined RTL included in the critical path
            "pipeline_latency_cycles": mc.get("pipeline_latency_cycles", 0)}


def op_and_param_counts(model: Any) -> dict[str, Any]:
    """MACs and parameters per node, keyed like FINN: op_mac_<idt>_<wdt>, param_weight_<wdt>,
    param_threshold_<dt>; "total" sums each key."""
    out: dict[str, Any] = {}
    total: dict[str, int] = {}
    for n in hw_nodes(model):
        p = node_params(model, n)
        ent = {k: int(v) for k, v in op_class(n.op_type, n.name).op_and_param_counts(p).items()}
        if ent:
            out[n.name] = ent
            for k, v in ent.items():
                total[k] = total.get(k, 0) + v
    out["total"] = total
    return out


def write_reports(model: Any, build_dir: str | Path, clock_ns: float, board: Any = None, util_cap: float = 1.0,
                  calibration: Calibration | None = None, fifo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the FINN report files (and estimate_utilization.json with a board) into
    BUILD/report/; returns {"paths": [...], "cost": model_cost, "performance", "utilisation"}.

    ``fifo`` (``FifoSizing.to_dict()``) adds the FIFO sizing fields to
    estimate_network_performance.json: fifo_sizing, fifo_depths, fifo_required_depths,
    fifo_simulated_cycles, fifo_simulated_latency_cycles, fifo_throttled (true when the FIFOs keep the chain below the
    estimated throughput), fifo_shallow, fifo_simulation_converged."""
    from codesign.dataflow.boards import get_board, utilisation

    rep = Path(build_dir) / "report"
    b = get_board(board) if board is not None else None
    mc = model_cost(model, calibration, b.dsp_family if b else DSP48)
    perf = network_performance(mc, clock_ns)
    if fifo:
        perf.update(fifo)
    paths = [write_json(rep / "estimate_layer_resources.json", layer_resources(mc)),
             write_json(rep / "estimate_layer_cycles.json", {k: v["cycles"] for k, v in mc["nodes"].items()}),
             write_json(rep / "estimate_network_performance.json", perf),
             write_json(rep / "op_and_param_counts.json", op_and_param_counts(model))]
    util = None
    if b is not None:
        util = utilisation(mc["total"], b, util_cap)
        paths.append(write_json(rep / "estimate_utilization.json", util))
    log.info("reports written to %s", rep)
    return {"paths": [str(p) for p in paths], "cost": mc, "performance": perf, "utilisation": util}


def dataflow_info_rows(model: Any, clock_ns: float = 10.0) -> list[dict[str, Any]]:
    """One row per HW node for `codesign info BUILD/dataflow.onnx`: op, folding, cycles and
    resources (identity calibration, DSP48 family)."""
    mc = model_cost(model)
    rows = []
    for n in hw_nodes(model):
        a = node_attrs(n)
        c = mc["nodes"][n.name]
        rows.append({"node": n.name, "op": n.op_type, "PE": a.get("PE", "-"), "SIMD": a.get("SIMD", "-"),
                     "cycles": c["cycles"], "LUT": c["LUT"], "FF": c["FF"], "BRAM18": c["BRAM_18K"],
                     "URAM": c["URAM"], "DSP": c["DSP"]})
    return rows


def table_rows(mc: dict[str, Any], model: Any) -> list[dict[str, Any]]:
    """Rows for the compile command's table (same columns as dataflow_info_rows)."""
    rows = []
    for n in hw_nodes(model):
        a = node_attrs(n)
        c = mc["nodes"][n.name]
        rows.append({"node": n.name, "op": n.op_type, "PE": a.get("PE", "-"), "SIMD": a.get("SIMD", "-"),
                     "cycles": c["cycles"], **{r: c[r] for r in RESOURCES}})
    return rows
