"""`codesign info`: a per-layer table of a QONNX model or a compiled dataflow graph.

For QONNX models the numbers come from qonnx's `inference_cost` (MACs, weight bits per
node); compiled graphs (HW nodes) are described by the dataflow package's own rows.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from codesign.errors import CodesignError

log = logging.getLogger(__name__)
HW_DOMAIN = "codesign.dataflow.ops"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="per-layer table of an ONNX model",
                       description="Print a per-layer table (op, shapes, weight/activation bits, MACs, weight "
                                   "memory) of a QONNX model, or folding and estimates of a compiled dataflow.onnx.",
                       epilog="example: codesign info runs/tfc/model.onnx")
    p.add_argument("model", type=Path, help="QONNX .onnx or BUILD/dataflow.onnx")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.set_defaults(func=run)


def _bits(dt: str) -> str:
    m = re.search(r"(\d+)>?$", dt.replace(">", ""))
    if dt.startswith("BIPOLAR") or dt.startswith("BINARY"):
        return "1"
    return m.group(1) if m else dt


def qonnx_rows(path: Path) -> tuple[list[dict], dict]:
    """Rows per compute node and the totals, from qonnx's inference cost analysis."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    model = ModelWrapper(str(path))
    dense = inference_cost(str(path), cost_breakdown=True, discount_sparsity=False)
    sparse = inference_cost(str(path), cost_breakdown=True, discount_sparsity=True)
    rows = []
    for node in model.graph.node:
        cost = dense["node_cost"].get(node.name)
        if cost is None:
            continue
        mac_keys = [k for k in cost if k.startswith("op_mac_")]
        w_keys = [k for k in cost if k.startswith("mem_w_")]
        abits = wbits = "-"
        if mac_keys:
            parts = mac_keys[0][len("op_mac_"):].split("_")
            abits = _bits(parts[0])
        if w_keys:
            wbits = _bits(w_keys[0][len("mem_w_"):])

        def shape(name: str) -> str:
            try:
                return "x".join(str(d) for d in model.get_tensor_shape(name))
            except Exception:  # noqa: BLE001 - shape may be unknown for an intermediate
                return "?"

        nz = sparse["node_cost"].get(node.name, {}).get("total_mem_w_elems", 0.0)
        total_w = cost.get("total_mem_w_elems", 0.0)
        rows.append({
            "node": node.name, "op": node.op_type, "in": shape(node.input[0]), "out": shape(node.output[0]),
            "in_bits": abits, "weight_bits": wbits, "macs": int(cost.get("total_macs", 0)),
            "weights": int(total_w), "sparsity": round(1 - nz / total_w, 4) if total_w else 0.0,
            "weight_mem_bits": int(cost.get("total_mem_w_bits", 0)),
        })
    tot = dense["total_cost"]
    totals = {"macs": int(tot.get("total_macs", 0)), "weights": int(tot.get("total_mem_w_elems", 0)),
              "weight_mem_bits": int(tot.get("total_mem_w_bits", 0)), "bops": int(tot.get("total_bops", 0))}
    return rows, totals


def print_table(title: str, rows: list[dict], totals: dict | None = None) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)

    table = Table(title=title)
    if not rows:
        console.print(f"{title}: no compute layers")
        return
    cols = list(rows[0].keys())
    for c in cols:
        table.add_column(c, justify="right" if isinstance(rows[0][c], (int, float)) else "left")
    for r in rows:
        table.add_row(*[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols])
    if totals:
        table.add_row(*["total" if i == 0 else (f"{totals[c]:,}" if c in totals else "") for i, c in enumerate(cols)])
    console.print(table)


def run(args: argparse.Namespace) -> int:
    import onnx

    from codesign.atomic import write_json

    if not args.model.is_file():
        raise CodesignError(f"{args.model}: file not found")
    try:
        proto = onnx.load(str(args.model), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise CodesignError(f"{args.model} is not a readable ONNX file ({exc})") from exc
    if not proto.graph.node or not proto.graph.input:
        raise CodesignError(f"{args.model} holds no ONNX graph (empty or not a model file)")
    if any(n.domain == HW_DOMAIN for n in proto.graph.node):
        from codesign.dataflow.reports import dataflow_info_rows
        from qonnx.core.modelwrapper import ModelWrapper

        rows = dataflow_info_rows(ModelWrapper(str(args.model)))
        totals = None
        title = f"{args.model} (dataflow graph)"
    else:
        rows, totals = qonnx_rows(args.model)
        title = f"{args.model} (QONNX)"
    print_table(title, rows, totals)
    if totals:
        print(f"total: {totals['macs']:,} MACs, {totals['weights']:,} weights, "
              f"{totals['weight_mem_bits']:,} weight bits ({totals['weight_mem_bits'] / 8192:.1f} KiB)")
    if args.json:
        write_json(args.json, {"rows": rows, "totals": totals})
    return 0
