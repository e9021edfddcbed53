"""Graph-level cost model: the shared formula helpers, calibration, and per-graph totals.

Why this shape:
- Each HW op's cycle and resource formulas live in the op's own module
  (``codesign.dataflow.ops.<op>``, ``HWCustomOp.cycles`` / ``resources``); this module only
  holds what every op shares (memory placement, BRAM/URAM aspect tables, bit widths) and the
  functions that walk a graph and ask each node's op class.
- Every formula is a *pure, array-polymorphic* function of the parameters: it accepts
  Python/numpy scalars or numpy arrays of candidates. The per-node path (`node_cost`) and the
  vectorised search path (`codesign.dataflow.fast`) call the very same op methods, so the two
  can never disagree (DESIGN.md: "cost models that disagree with each other" is an anti-pattern).
- A `Calibration` (per op type, per resource: factor and offset) is applied on top, so the RTL
  engineer can fit the model to Yosys/rtlsim measurements without touching the formulas.

Codes used in the vectorised functions: `ram_style` AUTO=0, BLOCK=1, DISTRIBUTED=2, ULTRA=3;
`resType` LUT=0, DSP=1; DSP family DSP48=0 (xc7 DSP48E1, UltraScale+ DSP48E2), DSP58=1 (Versal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from onnx import NodeProto

from codesign.errors import CodesignError

log = logging.getLogger(__name__)

HW_DOMAIN = "codesign.dataflow.ops"

RAM_AUTO, RAM_BLOCK, RAM_DISTRIBUTED, RAM_ULTRA = 0, 1, 2, 3
RAM_STYLES = {"auto": RAM_AUTO, "block": RAM_BLOCK, "distributed": RAM_DISTRIBUTED, "ultra": RAM_ULTRA}
RES_LUT, RES_DSP = 0, 1
RES_TYPES = {"lut": RES_LUT, "dsp": RES_DSP, "auto": RES_LUT}
DSP48, DSP58 = 0, 1

#: bits held by one BRAM18 (FINN counts 36 x 512 for its efficiency figure)
BRAM18_BITS = 36 * 512
#: bits held by one URAM (4K x 72)
URAM_BITS = 4096 * 72
#: memories at most this deep go to LUTRAM under ram_style=auto (FINN's rule for matrix-unit weights)
LUTRAM_MAX_DEPTH = 128
#: FIFOs up to this many bits are built from SRL shift registers, larger ones from BRAM
FIFO_SRL_MAX_BITS = 16384

RESOURCES = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")
#: names the model that produced an estimate (written into estimate_layer_resources.json)
MODEL_NAME = ("codesign-rtl-model v9 (fitted to Yosys 0.23 synth_xilinx on the pipelined RTL, 174 designs; "
              "benchmarks/bench_costmodel.py)")
CALIBRATED = ("cycles",) + RESOURCES


# --------------------------------------------------------------------------- helpers

def _i(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def cdiv(a: Any, b: Any) -> np.ndarray:
    """Ceiling division on integer scalars/arrays."""
    return -(-_i(a) // _i(b))


def bits_for_range(lo: Any, hi: Any) -> np.ndarray:
    """Bits of the narrowest integer type holding [lo, hi]: unsigned if lo >= 0, else signed.

    Exact integer arithmetic where possible (log2 of floats misses powers of two by a hair).
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    mag_u = np.maximum(hi, 0) + 1  # unsigned: need 2^b >= hi + 1
    ub = np.ceil(np.log2(np.maximum(mag_u, 1)))
    # signed: need 2^(b-1) >= max(-lo, hi + 1)
    mag_s = np.maximum(-lo, hi + 1)
    sb = 1 + np.ceil(np.log2(np.maximum(mag_s, 1)))
    out = np.where(lo >= 0, np.maximum(ub, 1), sb)
    return out.astype(np.int64)


def bram18_count(depth: Any, width: Any) -> np.ndarray:
    """BRAM18 primitives for a depth x width memory (FINN's aspect-ratio table, finn-reference §3).

    The table reflects the BRAM18 aspect ratios 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36.
    """
    d = _i(depth)
    w = _i(width)
    r = np.where(
        w == 1, cdiv(d, 16384),
        np.where(w == 2, cdiv(d, 8192),
                 np.where(w <= 4, cdiv(d, 4096) * cdiv(w, 4),
                          np.where(w <= 9, cdiv(d, 2048) * cdiv(w, 9),
                                   np.where((w <= 18) | (d > 512), cdiv(d, 1024) * cdiv(w, 18),
                                            cdiv(d, 512) * cdiv(w, 36))))))
    return np.where((d <= 0) | (w <= 0), 0, r).astype(np.int64)


def uram_count(depth: Any, width: Any) -> np.ndarray:
    """URAM primitives (4K x 72 each) for a depth x width memory."""
    d = _i(depth)
    w = _i(width)
    return np.where((d <= 0) | (w <= 0), 0, cdiv(d, 4096) * cdiv(w, 72)).astype(np.int64)


def _memory(depth: Any, width: Any, ram_style: Any) -> dict[str, np.ndarray]:
    """Place a depth x width memory: LUTRAM (64x1 per LUT6), BRAM18 or URAM, per ram_style.

    `distributed` never yields zero of everything: the bits move into LUTs (FINN's estimate
    returns 0 BRAM and forgets the LUTs — a known complaint).
    """
    d = _i(depth)
    w = _i(width)
    rs = _i(ram_style)
    in_uram = rs == RAM_ULTRA
    in_bram = (rs == RAM_BLOCK) | ((rs == RAM_AUTO) & (d > LUTRAM_MAX_DEPTH))
    in_lut = ~in_uram & ~in_bram
    return {
        "BRAM_18K": np.where(in_bram, bram18_count(d, w), 0),
        "URAM": np.where(in_uram, uram_count(d, w), 0),
        "LUTRAM": np.where(in_lut & (d > 0), w * cdiv(d, 64), 0),
        "bits": d * w,
    }


def _finish(cycles: Any, lut: Any, ff: Any, bram: Any, uram: Any, dsp: Any, bits: Any) -> dict[str, np.ndarray]:
    lut = np.floor(np.asarray(lut, dtype=np.float64)).astype(np.int64)
    return {"cycles": _i(cycles), "LUT": lut, "FF": _i(ff), "BRAM_18K": _i(bram),
            "URAM": _i(uram), "DSP": _i(dsp), "mem_bits": _i(bits)}




def res_out(lut: Any, ff: Any, bram: Any, uram: Any, dsp: Any, bits: Any) -> dict[str, np.ndarray]:
    """The resource dict every op's ``resources`` returns (LUT floored to an integer)."""
    out = _finish(0, lut, ff, bram, uram, dsp, bits)
    del out["cycles"]
    return out


# --------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Per op type and resource: estimate = factor * formula + offset (identity by default).

    JSON form: `{"<OpType>": {"LUT": [1.07, 150], "cycles": [1.0, 12]}, "*": {...}}`; `"*"` applies
    to op types without an entry of their own. Measured factors live in `codesign/calibration/`.
    """

    factors: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    source: str = "identity"

    def get(self, op_type: str, resource: str) -> tuple[float, float]:
        for key in (op_type, "*"):
            ent = self.factors.get(key)
            if ent and resource in ent:
                return ent[resource]
        return (1.0, 0.0)

    def is_identity(self) -> bool:
        return all(tuple(v) == (1.0, 0.0) for ent in self.factors.values() for v in ent.values())

    def apply(self, op_type: str, est: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated copy of `est` (integers, rounded half-to-even, never negative)."""
        out = dict(est)
        for res in CALIBRATED:
            a, b = self.get(op_type, res)
            if (a, b) != (1.0, 0.0):
                out[res] = np.maximum(np.rint(a * np.asarray(est[res], np.float64) + b), 0).astype(np.int64)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "dict") -> "Calibration":
        factors: dict[str, dict[str, tuple[float, float]]] = {}
        for op, ent in d.items():
            if op.startswith("_"):
                continue  # comments / metadata
            if not isinstance(ent, Mapping):
                raise CodesignError(f"calibration {source}: entry {op!r} must map resource -> [factor, offset]")
            for res, val in ent.items():
                if res not in CALIBRATED:
                    raise CodesignError(f"calibration {source}: unknown resource {res!r} for {op}; "
                                        f"known: {', '.join(CALIBRATED)}")
                try:
                    a, b = (float(val[0]), float(val[1]))
                except (TypeError, ValueError, IndexError) as exc:
                    raise CodesignError(f"calibration {source}: {op}.{res} must be [factor, offset]") from exc
                factors.setdefault(op, {})[res] = (a, b)
        return cls(factors, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Calibration":
        """Load a calibration JSON; None -> `codesign/calibration/default.json` if present."""
        if path is None:
            path = Path(__file__).resolve().parent.parent / "calibration" / "default.json"
            if not path.is_file():
                return cls()
        from codesign.atomic import read_json

        return cls.from_dict(read_json(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {op: {r: list(v) for r, v in ent.items()} for op, ent in self.factors.items()}


IDENTITY = Calibration()


# --------------------------------------------------------------------------- graph level

def is_hw_node(node: NodeProto) -> bool:
    """HW nodes are the project's custom ops (domain codesign.dataflow.ops[...])."""
    return node.domain.startswith(HW_DOMAIN)


def hw_nodes(model: Any) -> list[NodeProto]:
    return [n for n in model.graph.node if is_hw_node(n)]


def node_attrs(node: NodeProto) -> dict[str, Any]:
    """All attributes of a node as plain Python values (bytes decoded to str)."""
    from codesign.dataflow.ops.base import node_attrs as _node_attrs

    return _node_attrs(node)


def op_instance(node: NodeProto) -> Any:
    """The op class instance of a HW node (the registry names every op type)."""
    from codesign.dataflow.ops import op_class

    return op_class(node.op_type, node.name)(node)


def node_params(model: Any, node: NodeProto) -> dict[str, Any]:
    """The numbers the cost functions need, extracted once from a node (and its initializers)
    by the node's op class (`HWCustomOp.cost_params`).

    Folding attributes (PE, SIMD, ram_style, resType) are included so a caller can override
    them in the returned dict and re-evaluate without touching the graph.
    """
    return op_instance(node).cost_params(model)


def ram_code(s: Any) -> int:
    """ram_style name -> code (FINN's FIFO impl_style names map to distributed/block)."""
    if not isinstance(s, str):
        return s  # already a code (or an array of codes)
    s = {"rtl": "distributed", "vivado": "block"}.get(s, s)
    if s not in RAM_STYLES:
        raise CodesignError(f"unknown ram_style {s!r}; valid: {', '.join(RAM_STYLES)}")
    return RAM_STYLES[s]


def res_code(s: Any) -> int:
    """resType name -> code."""
    if not isinstance(s, str):
        return s
    if s not in RES_TYPES:
        raise CodesignError(f"unknown resType {s!r}; valid: {', '.join(RES_TYPES)}")
    return RES_TYPES[s]


_ram, _res = ram_code, res_code  # older names


def op_cost(p: Mapping[str, Any], dsp_family: int = DSP48) -> dict[str, np.ndarray]:
    """Uncalibrated cycles and resources of a parameter dict (scalars or candidate arrays)."""
    from codesign.dataflow.ops import op_class

    return op_class(p["op_type"], p.get("name", "?")).cost(p, dsp_family)


def params_cost(p: Mapping[str, Any], calibration: Calibration | None = None,
                dsp_family: int = DSP48) -> dict[str, Any]:
    """Cost of one node from its parameter dict (see `node_params`), calibrated, as Python ints."""
    op = p["op_type"]
    est = (calibration or IDENTITY).apply(op, op_cost(p, dsp_family))
    out: dict[str, Any] = {"op_type": op}
    for k in CALIBRATED + ("mem_bits", "pipeline_depth"):
        out[k] = int(est[k])
    out["BRAM_efficiency"] = (out["mem_bits"] / (out["BRAM_18K"] * BRAM18_BITS)) if out["BRAM_18K"] else 1.0
    out["URAM_efficiency"] = (out["mem_bits"] / (out["URAM"] * URAM_BITS)) if out["URAM"] else 1.0
    return out


def node_cost(model: Any, node: NodeProto, calibration: Calibration | None = None,
              dsp_family: int = DSP48) -> dict[str, Any]:
    """Cycles and resources of one HW node: {op_type, cycles, LUT, FF, BRAM_18K, URAM, DSP,
    mem_bits, BRAM_efficiency, URAM_efficiency}."""
    return params_cost(node_params(model, node), calibration, dsp_family)


def model_cost(model: Any, calibration: Calibration | None = None, dsp_family: int = DSP48) -> dict[str, Any]:
    """Per-node costs plus totals and the pipeline figures.

    Returns {"nodes": {name: cost}, "total": {resource: sum}, "max_cycles", "max_cycles_node_name",
    "critical_path_cycles", "model", "calibration"}. The critical path is the longest path
    through the HW graph (a chain: all nodes; a branching graph: the longer branch between a
    fork and its join) of the node cycles (each node's initiation interval bounds its latency
    from above; FINN reports the same figure) plus the register stages of the pipelined RTL
    (``pipeline_latency_cycles``, the ops' ``pipeline_depth``, along the same longest path).
    The throughput bound is the slowest node (``max_cycles``) on a chain and a DAG alike.
    """
    nodes: dict[str, Any] = {}
    for n in hw_nodes(model):
        if not n.name:
            raise CodesignError(f"a {n.op_type} node has no name; name the HW nodes (e.g. {n.op_type}_0)")
        nodes[n.name] = node_cost(model, n, calibration, dsp_family)
    total = {r: int(sum(c[r] for c in nodes.values())) for r in RESOURCES}
    if nodes:
        mx_name = max(nodes, key=lambda k: nodes[k]["cycles"])
        mx = nodes[mx_name]["cycles"]
    else:
        mx_name, mx = "", 0
    cp, lat = _longest_path(model, {k: (c["cycles"] + c["pipeline_depth"], c["pipeline_depth"])
                                    for k, c in nodes.items()})
    return {"nodes": nodes, "total": total, "max_cycles": int(mx), "max_cycles_node_name": mx_name,
            "critical_path_cycles": int(cp), "pipeline_latency_cycles": int(lat),
            "model": MODEL_NAME, "calibration": (calibration or IDENTITY).source}


def _longest_path(model: Any, weight: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """Longest path through the HW nodes (graph order is topological) by the first weight, and
    the second weight summed along that same path: (critical path, its pipeline latency)."""
    best: dict[str, tuple[int, int]] = {}
    made: dict[str, str] = {}
    for n in hw_nodes(model):
        if n.name not in weight:
            continue
        preds = [best[made[t]] for t in n.input if t in made and made[t] in best]
        w, d = weight[n.name]
        base = max(preds) if preds else (0, 0)
        best[n.name] = (base[0] + int(w), base[1] + int(d))
        for t in n.output:
            made[t] = n.name
    return max(best.values()) if best else (0, 0)


def __getattr__(name: str) -> Any:
    """Older import paths: the per-op formulas (``<op>_cost``, ``<op>_cycles``, ...) now live in
    the op modules; look the name up there."""
    import sys

    if name.startswith("__"):
        raise AttributeError(name)
    from codesign.dataflow.ops import OPS

    for cls in OPS:
        mod = sys.modules[cls.__module__]
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
