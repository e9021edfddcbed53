"""FINN's cost model for the co-design loop's final candidates (`search.cost_model: finn`).

FINN+'s estimate flow costs ~1 s per MLP and ~4 s per CNN plus ~4 s of import per subprocess
(benchmarks/bench_finn.py measures it), against microseconds for our vectorised cost model, so it
cannot score every trial. It fits where the loop has few, expensive designs anyway: the Pareto
finalists after their full QAT. Each finalist is compiled (our folding at the run's target),
all of them are estimated by FINN+ in one subprocess, and each row gets a `finn` entry with
FINN's totals, FPS and feasibility against the same limits; a design FINN+ finds over budget is
no longer `feasible`, so the loop's existing choice (feasible, val accuracy, LUT) takes FINN's
view into account while the report keeps both.

Wiring (one line in search/loop.py `finalize`, before `chosen = max(...)`):
    if s.cost_model == "finn": from codesign.search.finn_rerank import rerank; rerank(ctx, rows, _final_key(cfg))
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from codesign.backends.finn_plus import RESOURCES, FinnConfig, estimate_designs

log = logging.getLogger(__name__)


def rerank(ctx: Any, rows: list[dict[str, Any]], final_key: str, finn_cfg: FinnConfig | None = None) -> list[dict[str, Any]]:
    """Add FINN+'s estimates to each finalist row (in place) and return the rows, best first.

    `ctx`: the loop's SearchContext (out, hw with board/clock_ns/target_fps/limits, cfg.search.util);
    a row's design is `ctx.out/final/<plan_hash>-<final_key>/model.onnx`. Rows keep our figures;
    `row["feasible_embedded"]` is our verdict, `row["feasible"]` becomes ours AND FINN's.
    """
    from codesign.dataflow.build import BuildConfig, build_dataflow

    cfg = finn_cfg or FinnConfig.from_env()
    work = Path(ctx.out) / "search_finn"
    designs = []
    t0 = time.perf_counter()
    for r in rows:
        folder = Path(ctx.out) / "final" / f"{r['plan_hash']}-{final_key}"
        build = work / r["plan_hash"]
        build_dataflow(folder / "model.onnx", BuildConfig(
            output_dir=build, board=ctx.hw.board.name, clock_ns=ctx.hw.clock_ns, target_fps=ctx.hw.target_fps,
            max_fps=ctx.hw.target_fps is None, util=float(getattr(ctx.cfg.search, "util", 1.0))))
        designs.append({"qonnx": folder / "model.onnx", "folding": build / "folding_config.json",
                        "board": ctx.hw.board.name, "clock_ns": ctx.hw.clock_ns})
    compile_s = time.perf_counter() - t0
    est = estimate_designs(designs, cfg, work / "finn")
    for r, e in zip(rows, est["designs"]):
        r["feasible_embedded"] = r.get("feasible", True)
        if not e.get("ok"):
            r["finn"] = {"ok": False, "error": e.get("error")}
            log.warning("FINN+ could not estimate %s: %s", r.get("describe"), e.get("error"))
            continue
        over = [f"{k} {e[k]:,.0f} > {ctx.hw.limits[k]:,.0f}" for k in RESOURCES
                if ctx.hw.limits.get(k) is not None and e[k] > ctx.hw.limits[k]]
        if ctx.hw.target_fps and e["fps"] < ctx.hw.target_fps:
            over.append(f"fps {e['fps']:,.0f} < {ctx.hw.target_fps:,.0f}")
        r["finn"] = {**e, "feasible": not over, "reason": "; ".join(over) or None}
        r["feasible"] = bool(r["feasible_embedded"] and not over)
    rows.sort(key=lambda r: (r["feasible"], r.get("val_acc") or 0, -r["finn"].get("LUT", r.get("LUT", 0))),
              reverse=True)
    log.info("FINN+ re-ranked %d finalists in %.1f s (compile %.1f s, FINN+ %.2f s per design + %.1f s import)",
             len(rows), time.perf_counter() - t0, compile_s, est["seconds_per_design"], est["import_seconds"])
    return rows
