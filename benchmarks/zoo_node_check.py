"""Per-node cost estimate vs the Yosys counts of the zoo builds (VVAU, Thresholding, ...).

Why: the single-node corpus (bench_costmodel.py) is where coefficients are fitted; this script
checks the current model against nodes of real compiled networks that were never fitted: each
build's dataflow.onnx is re-estimated with the model in this checkout and compared with the
``*_yosys`` columns of its report/synth_vs_estimate.json (Yosys 0.23 synth_xilinx xc7 per node).

Run: ``python benchmarks/zoo_node_check.py [--ops VVAU,Thresholding] [--nodes] BUILD_DIR...``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codesign.dataflow.cost import hw_nodes, node_params, op_instance  # noqa: E402

RES = ("LUT", "FF", "BRAM_18K", "DSP")


def check(build: Path, ops: set[str] | None) -> list[dict]:
    """Rows {node, op, params, est, yosys} of one build."""
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(build / "dataflow.onnx"))
    meas = {r["node"]: r for r in json.loads((build / "report" / "synth_vs_estimate.json").read_text())["nodes"]}
    out = []
    for n in hw_nodes(model):
        if (ops and n.op_type not in ops) or n.name not in meas:
            continue
        p = node_params(model, n)
        r = type(op_instance(n)).resources(p)
        out.append({"node": n.name, "op": n.op_type, "params": p,
                    "est": {k: float(np.asarray(r[k])) for k in RES},
                    "yosys": {k: int(meas[n.name][f"{k}_yosys"]) for k in RES}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", type=Path)
    ap.add_argument("--ops", default="VVAU,Thresholding")
    ap.add_argument("--nodes", action="store_true", help="print every node")
    args = ap.parse_args(argv)
    ops = set(args.ops.split(",")) if args.ops else None
    shown = ("K", "C", "PE", "SIMD", "wbits", "abits", "ibits", "n_thr", "n_steps", "acc_bits", "tw")
    for b in args.builds:
        rs = check(b, ops)
        print(f"== {b}")
        if args.nodes:
            for r in rs:
                f = " ".join(f"{k}={r['params'][k]}" for k in shown if k in r["params"])
                print(f"  {r['node']:16s} {f:60s} " + "  ".join(
                    f"{k} {r['est'][k]:.0f}/{r['yosys'][k]}" for k in RES))
        for op in sorted({r["op"] for r in rs}):
            sel = [r for r in rs if r["op"] == op]
            cells = []
            for k in RES:
                e, y = sum(r["est"][k] for r in sel), sum(r["yosys"][k] for r in sel)
                cells.append(f"{k} {e:.0f}/{y} ({(e - y) / y:+.0%})" if y else f"{k} {e:.0f}/{y}")
            print(f"  {op:14s} n={len(sel):2d}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
