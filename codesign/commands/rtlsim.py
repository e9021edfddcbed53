"""`codesign rtlsim BUILD/ --frames N [--backpressure]`: Verilog of the compiled graph, simulated
with Verilator, every output element checked against execute_onnx of BUILD/dataflow.onnx."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from codesign.errors import CodesignError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtlsim", help="simulate the generated Verilog of BUILD/ with Verilator (bit-exact check)",
                       description=__doc__)
    p.add_argument("build", type=Path, help="build folder with dataflow.onnx (from `codesign compile`)")
    p.add_argument("--frames", type=int, default=10, help="number of frames to simulate (default 10)")
    p.add_argument("--input", type=Path, default=None,
                   help=".npy of float graph inputs (N, ...); default: seeded uniform [0, 1] inputs")
    p.add_argument("--backpressure", action="store_true", help="random input bubbles and output backpressure")
    p.add_argument("--per-node", action="store_true",
                   help="also simulate every HW node alone against its own golden tensors (one build per node)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fclk-mhz", type=float, default=None, help="clock for the throughput figures "
                   "(default: the clock of the build's estimate report, else 100)")
    p.set_defaults(func=run)


def load_inputs(path: Path, onnx_path: Path) -> np.ndarray:
    """A numeric .npy of graph inputs (N, ...) matching the graph's input shape, without NaN/inf;
    one clear line otherwise (never unpickles: allow_pickle=False)."""
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CodesignError(f"{path}: not a numeric .npy array ({exc})") from exc
    except OSError as exc:
        raise CodesignError(f"{path}: not a readable .npy file ({exc})") from exc
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number) or x.dtype.kind == "c":
        raise CodesignError(f"{path}: expected a real numeric array, got dtype {getattr(x, 'dtype', type(x))}")
    if not np.all(np.isfinite(x)):
        raise CodesignError(f"{path}: contains NaN or infinite values")
    if onnx_path.is_file():
        import onnx

        m = onnx.load(str(onnx_path), load_external_data=False)
        want = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim][1:]
        if list(x.shape[1:]) != want:
            raise CodesignError(f"{path}: inputs of shape {list(x.shape)}, the graph needs (N, "
                                f"{', '.join(map(str, want))})")
    return x


def run(args: argparse.Namespace) -> int:
    from codesign.hw.rtlsim import rtlsim_build

    if args.frames < 1:
        raise CodesignError("--frames must be >= 1")
    inputs = None
    if args.input is not None:
        if not args.input.is_file():
            raise CodesignError(f"{args.input}: file not found")
        inputs = load_inputs(args.input, args.build / "dataflow.onnx")[: args.frames]
    if inputs is None:
        from qonnx.core.modelwrapper import ModelWrapper

        from codesign.hw.rtlsim import default_inputs

        onnx_path = args.build / "dataflow.onnx"
        if not onnx_path.is_file():
            raise CodesignError(f"{onnx_path} not found: run `codesign compile` first")
        inputs = default_inputs(ModelWrapper(str(onnx_path)), args.frames, args.seed)
    perf = rtlsim_build(args.build, inputs, args.frames, backpressure=args.backpressure, seed=args.seed,
                        fclk_mhz=args.fclk_mhz)
    log.info("%s", json.dumps(perf, indent=1))
    if args.per_node:
        from codesign.hw.rtlsim import rtlsim_nodes

        nodes = rtlsim_nodes(args.build, inputs, backpressure=args.backpressure,
                             seed=args.seed)
        for name, r in nodes.items():
            log.info("%-28s %-28s bit-exact, %.0f cycles/frame (estimate %d)", name, r["op_type"],
                     r["cycles_per_frame"], r["exp_cycles"])
    log.info("wrote %s", args.build / "report" / "rtlsim_performance.json")
    return 0
