"""`codesign synth BUILD/`: out-of-context Yosys synthesis of the generated Verilog; LUT/FF/BRAM18/DSP
per node next to the analytical estimate, written to BUILD/report/ooc_synth_and_timing.json and
BUILD/report/synth_vs_estimate.json. `--calibrate OUT.json` also fits cost-model factors."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="Yosys out-of-context synthesis of BUILD/ (resources per node vs estimate)",
                       description=__doc__)
    p.add_argument("build", type=Path, help="build folder with dataflow.onnx (from `codesign compile`)")
    p.add_argument("--family", default=None,
                   help="Yosys family or FPGA part (xc7, xcup, xc7z020..., xczu3eg...; default: the build's part, else xc7)")
    p.add_argument("--calibrate", type=Path, default=None, metavar="OUT.json",
                   help="fit per-op-type [factor, offset] from this build and write a Calibration JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.hw.synth import RESOURCES, calibrate, synth_build

    rep = synth_build(args.build, args.family)
    log.info("%s (%s): LUT %d  FF %d  BRAM18 %d  DSP %d", rep["tool"], rep["family_note"], rep["LUT"], rep["FF"],
             rep["BRAM_18K"], rep["DSP"])
    for row in rep["estimate_rows"]:
        cells = "  ".join(f"{r} {row[f'{r}_yosys']}/{row[f'{r}_est']}" for r in RESOURCES)
        log.info("%-28s %-28s yosys/est: %s", row["node"], row["op_type"], cells)
    if args.calibrate is not None:
        res = calibrate(rep["estimate_rows"], args.calibrate, rep["family"])
        log.info("calibration written to %s; mean relative error before %s after %s", args.calibrate,
                 {k: round(v, 3) for k, v in res["error_before"].items()},
                 {k: round(v, 3) for k, v in res["error_after"].items()})
    return 0
