"""Analytical cycle and resource model of the HW dataflow ops.

Why this shape:
- Every formula is a *pure, array-polymorphic* function of the node attributes: it accepts
  Python/numpy scalars or numpy arrays of candidates. The per-node path (`node_cost`) and the
  vectorised search path (`codesign.dataflow.fast`) call the very same functions, so the two
  can never disagree (DESIGN.md: "cost models that disagree with each other" is an anti-pattern).
- FINN's published estimates (finn-reference §3) are the baseline; where FINN gives nothing
  (FF, FIFOs, distributed weight memories) the formula is stated in the docstring.
- A `Calibration` (per op type, per resource: factor and offset) is applied on top, so the RTL
  engineer can fit the model to Yosys/rtlsim measurements without touching the formulas.

Codes used in the vectorised functions: `ram_style` AUTO=0, BLOCK=1, DISTRIBUTED=2, ULTRA=3;
`resType` LUT=0, DSP=1; DSP family DSP48=0 (xc7 DSP48E1, UltraScale+ DSP48E2), DSP58=1 (Versal).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from onnx import NodeProto, helper

from codesign.errors import CodesignError, UnsupportedError

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
#: memories at most this deep go to LUTRAM under ram_style=auto (FINN's rule for MVAU weights)
LUTRAM_MAX_DEPTH = 128
#: FIFOs up to this many bits are built from SRL shift registers, larger ones from BRAM
FIFO_SRL_MAX_BITS = 16384

RESOURCES = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")
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


# --------------------------------------------------------------------------- per-op formulas

def mvau_cycles(MW: Any, MH: Any, PE: Any, SIMD: Any, Nv: Any) -> np.ndarray:
    """(MH/PE) * (MW/SIMD) * Nv: one SIMD x PE tile of the weight matrix per clock."""
    return (_i(MH) // _i(PE)) * (_i(MW) // _i(SIMD)) * _i(Nv)


def mvau_acc_bits_worst(MW: Any, wmin: Any, wmax: Any, amin: Any, amax: Any) -> np.ndarray:
    """Accumulator bits when the weights are unknown: MW times the widest single product."""
    prods = [np.asarray(a, np.float64) * np.asarray(b, np.float64)
             for a in (wmin, wmax) for b in (amin, amax)]
    pmin = np.minimum(np.minimum(prods[0], prods[1]), np.minimum(prods[2], prods[3]))
    pmax = np.maximum(np.maximum(prods[0], prods[1]), np.maximum(prods[2], prods[3]))
    mw = np.asarray(MW, np.float64)
    return bits_for_range(np.minimum(mw * pmin, 0), np.maximum(mw * pmax, 0))


def mvau_acc_bits_exact(W: np.ndarray, amin: float, amax: float, T: np.ndarray | None = None) -> int:
    """Accumulator bits from the exact range: per output column, sum over rows of the extreme
    products w*a (a in [amin, amax]); widened to cover the thresholds (they are compared
    against the accumulator, so they must be representable)."""
    W = np.asarray(W, dtype=np.float64)
    hi = np.maximum(W * amin, W * amax).sum(axis=0)
    lo = np.minimum(W * amin, W * amax).sum(axis=0)
    lo_v, hi_v = float(min(lo.min(), 0.0)), float(max(hi.max(), 0.0))
    if T is not None and np.asarray(T).size:
        T = np.asarray(T, dtype=np.float64)
        finite = T[np.isfinite(T)]
        if finite.size:
            lo_v, hi_v = min(lo_v, float(finite.min())), max(hi_v, float(finite.max()))
    return int(bits_for_range(math.floor(lo_v), math.ceil(hi_v)))


def mvau_cost(MW: Any, MH: Any, PE: Any, SIMD: Any, Nv: Any, wbits: Any, abits: Any, obits: Any,
              acc_bits: Any, n_thr: Any, ram_style: Any = RAM_AUTO, res_type: Any = RES_LUT,
              xnor: Any = 0, dsp_family: Any = DSP48) -> dict[str, np.ndarray]:
    """Matrix-vector(-activation) unit.

    Weight memory: depth WMEM = MW*MH/(PE*SIMD), width PE*SIMD*W (finn-reference §3).
    LUT (FINN-R): 300 + 1.1*PE*(mult + addertree + acc + thr_mem + thr_cmp) + weight LUTRAM,
      mult = SIMD*(2*ceil((W+A)/6)-1)*(W+A) (0 with resType=dsp), addertree = (W+A)*(2*SIMD-1),
      acc = accumulator bits, thr_mem = n_thr*acc*ceil(TMEM/64), thr_cmp = n_thr*acc.
    FF (not in FINN): input word SIMD*A + weight word PE*SIMD*W + PE accumulators + PE outputs + 64
      control bits.
    DSP (resType=dsp, not XNOR): DSP48 packs 4 lanes for <= 4-bit, 2 for <= 8-bit operands:
      ceil(PE/lanes)*SIMD; DSP58: PE*ceil(SIMD/3).
    """
    P, Q = _i(PE), _i(SIMD)
    W_, A_ = _i(wbits), _i(abits)
    acc = _i(acc_bits)
    nt = _i(n_thr)
    wmem = (_i(MW) * _i(MH)) // (P * Q)
    tmem = _i(MH) // P
    width = P * Q * W_
    mem = _memory(wmem, width, ram_style)
    wa = W_ + A_
    use_dsp = (_i(res_type) == RES_DSP) & (_i(xnor) == 0)
    mult = np.where(use_dsp, 0, Q * (2 * cdiv(wa, 6) - 1) * wa)
    adder = wa * (2 * Q - 1)
    thr_mem = nt * acc * cdiv(tmem, 64)
    thr_cmp = nt * acc
    lut = 300 + 1.1 * (P * (mult + adder + acc + thr_mem + thr_cmp)).astype(np.float64) + mem["LUTRAM"]
    out_bits = np.where(nt > 0, _i(obits), acc)
    ff = 64 + Q * A_ + width + P * acc + P * out_bits
    opw = np.maximum(W_, A_)
    lanes = np.where(opw <= 4, 4, np.where(opw <= 8, 2, 1))
    dsp = np.where(_i(dsp_family) == DSP58, P * cdiv(Q, 3), cdiv(P, lanes) * Q)
    dsp = np.where(use_dsp, dsp, 0)
    return _finish(mvau_cycles(MW, MH, PE, SIMD, Nv), lut, ff, mem["BRAM_18K"], mem["URAM"], dsp,
                   mem["bits"])


def thresholding_cost(C: Any, PE: Any, n_steps: Any, ibits: Any, obits: Any, Nv: Any,
                      ram_style: Any = RAM_AUTO) -> dict[str, np.ndarray]:
    """Standalone multi-threshold: Nv*C/PE cycles; PE lanes of n_steps comparators of ibits;
    threshold memory depth C/PE, width PE*n_steps*ibits. LUT = 100 + 1.1*PE*n_steps*ibits +
    LUTRAM; FF = 32 + PE*(ibits+obits)."""
    P = _i(PE)
    tdepth = _i(C) // P
    mem = _memory(tdepth, P * _i(n_steps) * _i(ibits), ram_style)
    lut = 100 + 1.1 * (P * _i(n_steps) * _i(ibits)).astype(np.float64) + mem["LUTRAM"]
    ff = 32 + P * (_i(ibits) + _i(obits))
    cycles = _i(Nv) * (_i(C) // P)
    return _finish(cycles, lut, ff, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])


def sliding_window_cycles(C: Any, SIMD: Any, IH: Any, IW: Any, OH: Any, OW: Any, kh: Any, kw: Any,
                          sh: Any, sw: Any, dh: Any = 1, dw: Any = 1) -> np.ndarray:
    """buf + OH*max(OW*kw*kh*CF, sw*IW*CF), buf = ((kh-1)*dh*IW + (kw-1)*dw + 1)*CF, CF = C/SIMD
    (finn-reference §3; IH enters only through OH)."""
    CF = _i(C) // _i(SIMD)
    buf = ((_i(kh) - 1) * _i(dh) * _i(IW) + (_i(kw) - 1) * _i(dw) + 1) * CF
    return buf + _i(OH) * np.maximum(_i(OW) * _i(kw) * _i(kh) * CF, _i(sw) * _i(IW) * CF)


def sliding_window_cost(C: Any, SIMD: Any, IH: Any, IW: Any, OH: Any, OW: Any, kh: Any, kw: Any,
                        sh: Any, sw: Any, dh: Any, dw: Any, abits: Any,
                        ram_style: Any = RAM_AUTO) -> dict[str, np.ndarray]:
    """Line buffer of ((kh-1)*dh+1) image rows: depth ((kh-1)*dh+1)*IW*C/SIMD words of SIMD*A
    bits. LUT = 300 + 2*SIMD*A (read/write data path) + LUTRAM; FF = 64 + 2*SIMD*A."""
    Q = _i(SIMD)
    depth = ((_i(kh) - 1) * _i(dh) + 1) * _i(IW) * (_i(C) // Q)
    width = Q * _i(abits)
    mem = _memory(depth, width, ram_style)
    lut = 300 + 2.0 * width.astype(np.float64) + mem["LUTRAM"]
    ff = 64 + 2 * width
    cyc = sliding_window_cycles(C, SIMD, IH, IW, OH, OW, kh, kw, sh, sw, dh, dw)
    return _finish(cyc, lut, ff, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])


def maxpool_cost(H: Any, W: Any, k: Any, C: Any, PE: Any, bits: Any,
                 ram_style: Any = RAM_AUTO) -> dict[str, np.ndarray]:
    """Streaming max-pool (stride = kernel): every input pixel is read once, PE channels per
    clock: H*W*C/PE cycles. One output row of running maxima: depth (W//k)*C/PE, width PE*b.
    LUT = 100 + 2.2*PE*b (compare + select) + LUTRAM; FF = 32 + 2*PE*b."""
    P = _i(PE)
    depth = (_i(W) // _i(k)) * (_i(C) // P)
    width = P * _i(bits)
    mem = _memory(depth, width, ram_style)
    lut = 100 + 2.2 * width.astype(np.float64) + mem["LUTRAM"]
    cyc = _i(H) * _i(W) * (_i(C) // P)
    return _finish(cyc, lut, 32 + 2 * width, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])


def fmpadding_cost(H: Any, W: Any, pad_t: Any, pad_l: Any, pad_b: Any, pad_r: Any, C: Any,
                   SIMD: Any, bits: Any) -> dict[str, np.ndarray]:
    """Zero padding: (C/SIMD)*OH*OW cycles; a mux per output bit: LUT = 50 + SIMD*b,
    FF = 32 + SIMD*b."""
    OH = _i(H) + _i(pad_t) + _i(pad_b)
    OW = _i(W) + _i(pad_l) + _i(pad_r)
    width = _i(SIMD) * _i(bits)
    cyc = (_i(C) // _i(SIMD)) * OH * OW
    return _finish(cyc, 50 + width.astype(np.float64), 32 + width, 0, 0, 0, 0)


def label_select_cost(L: Any, PE: Any, K: Any, vbits: Any) -> dict[str, np.ndarray]:
    """Top-K: L/PE cycles; K sorted (value, index) registers, each new lane compared with all K:
    LUT = 100 + 1.1*(PE*K*vb + K*(vb+ib)), FF = K*(vb+ib) + PE*vb, ib = ceil(log2 L)."""
    Li, P, Ki, vb = _i(L), _i(PE), _i(K), _i(vbits)
    ib = np.maximum(np.ceil(np.log2(np.maximum(Li, 2))).astype(np.int64), 1)
    lut = 100 + 1.1 * (P * Ki * vb + Ki * (vb + ib)).astype(np.float64)
    ff = Ki * (vb + ib) + P * vb
    return _finish(Li // P, lut, ff, 0, 0, 0, 0)


def dwc_cost(total_bits: Any, in_width: Any, out_width: Any) -> dict[str, np.ndarray]:
    """Width converter: passes the narrower side one word per clock: total_bits/min(in,out)
    cycles; a shift register of max(in,out) bits plus a mux: LUT = 20 + in + out,
    FF = max(in, out) + min(in, out)."""
    iw, ow = _i(in_width), _i(out_width)
    lo, hi = np.minimum(iw, ow), np.maximum(iw, ow)
    cyc = cdiv(total_bits, lo)
    return _finish(cyc, 20 + (iw + ow).astype(np.float64), hi + lo, 0, 0, 0, 0)


def fifo_cost(depth: Any, width: Any, words: Any, style: Any = RAM_AUTO) -> dict[str, np.ndarray]:
    """FIFO: one word per clock (`words` cycles per frame). depth <= 2: plain registers.
    Up to FIFO_SRL_MAX_BITS bits (or style distributed): SRL32 shift registers,
    LUT = 10 + width*ceil(depth/32); otherwise BRAM18 by the aspect table plus 30 LUT control.
    FF = width + 2*ceil(log2(depth+1)) (output register + pointers), registers: depth*width."""
    d, w = _i(depth), _i(width)
    st = _i(style)
    ptr = np.ceil(np.log2(d + 1.0)).astype(np.int64)
    regs = d <= 2
    srl = ~regs & ((st == RAM_DISTRIBUTED) | ((st == RAM_AUTO) & (d * w <= FIFO_SRL_MAX_BITS)))
    bram_ = ~regs & ~srl
    lut = np.where(regs, 4, np.where(srl, 10 + w * cdiv(d, 32), 30)).astype(np.float64)
    ff = np.where(regs, d * w, w + 2 * ptr)
    bram = np.where(bram_, bram18_count(d, w), 0)
    return _finish(_i(words), lut, ff, bram, 0, 0, d * w)


# --------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Per op type and resource: estimate = factor * formula + offset (identity by default).

    JSON form: `{"MVAU": {"LUT": [1.07, 150], "cycles": [1.0, 12]}, "*": {...}}`; `"*"` applies
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
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


def _dt(name: str | None):
    from qonnx.core.datatype import DataType

    if not name:
        return None
    try:
        return DataType[name]
    except KeyError as exc:
        raise UnsupportedError(f"unknown datatype {name!r}") from exc


def _node_dt(model: Any, node: NodeProto, attrs: dict, attr: str, tensor: str | None):
    dt = _dt(attrs.get(attr))
    if dt is None and tensor is not None and model is not None:
        dt = model.get_tensor_datatype(tensor)
    if dt is None:
        raise UnsupportedError(f"{node.name}: no datatype for {attr} (set the attribute)")
    return dt


def _with_op_defaults(node: NodeProto, a: dict[str, Any]) -> dict[str, Any]:
    """Fill attributes the node leaves out with the op class's declared defaults, so the cost
    model sees what the op executes with (e.g. SlidingWindow's ram_style). accDataType is left
    out on purpose: its declared default (INT32) is a placeholder, not a computed width."""
    try:
        from qonnx.custom_op.registry import getCustomOp

        types = getCustomOp(node).get_nodeattr_types()
    except Exception:  # ops not importable: the attributes on the node are all we have
        return a
    for k, spec in types.items():
        if k not in a and k != "accDataType" and not spec[1]:
            a[k] = spec[2]
    return a


def _prod(v: Any) -> int:
    return int(np.prod(v)) if isinstance(v, (list, tuple)) else int(v)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) >= 2 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


def node_params(model: Any, node: NodeProto) -> dict[str, Any]:
    """The numbers the cost functions need, extracted once from a node (and its initializers).

    Folding attributes (PE, SIMD, ram_style, resType) are included so a caller can override
    them in the returned dict and re-evaluate without touching the graph.
    """
    a = _with_op_defaults(node, node_attrs(node))
    op = node.op_type
    p: dict[str, Any] = {"op_type": op, "name": node.name}
    if op == "MVAU":
        idt = _node_dt(model, node, a, "inputDataType", node.input[0])
        wdt = _node_dt(model, node, a, "weightDataType", node.input[1] if len(node.input) > 1 else None)
        odt = _node_dt(model, node, a, "outputDataType", node.output[0])
        W = model.get_initializer(node.input[1]) if (model is not None and len(node.input) > 1) else None
        T = model.get_initializer(node.input[2]) if (model is not None and len(node.input) > 2 and node.input[2]) else None
        noact = int(a.get("noActivation", 0 if T is not None else 1))
        if T is not None:
            n_thr = int(np.asarray(T).shape[-1])
        elif noact:
            n_thr = 0
        else:
            n_thr = 2 ** odt.bitwidth() - 1
        if W is not None:
            acc = mvau_acc_bits_exact(W, idt.min(), idt.max(), T)
        elif a.get("accDataType"):
            acc = _dt(a["accDataType"]).bitwidth()
        else:
            acc = int(mvau_acc_bits_worst(a["MW"], wdt.min(), wdt.max(), idt.min(), idt.max()))
        p.update(MW=int(a["MW"]), MH=int(a["MH"]), PE=int(a.get("PE", 1)), SIMD=int(a.get("SIMD", 1)),
                 Nv=_prod(a.get("numInputVectors", [1])), wbits=wdt.bitwidth(), abits=idt.bitwidth(),
                 obits=odt.bitwidth(), acc_bits=acc, n_thr=n_thr,
                 ram_style=str(a.get("ram_style", "auto")), resType=str(a.get("resType", "lut")),
                 xnor=int(a.get("binaryXnorMode", 0)), wdt=wdt.name, idt=idt.name, odt=odt.name)
    elif op == "Thresholding":
        idt = _node_dt(model, node, a, "inputDataType", node.input[0])
        odt = _node_dt(model, node, a, "outputDataType", node.output[0])
        p.update(C=int(a["NumChannels"]), PE=int(a.get("PE", 1)), n_steps=int(a["numSteps"]),
                 ibits=idt.bitwidth(), obits=odt.bitwidth(), Nv=_prod(a.get("numInputVectors", [1])),
                 ram_style=str(a.get("ram_style", "auto")))
    elif op == "SlidingWindow":
        idt = _node_dt(model, node, a, "inputDataType", node.input[0])
        kh, kw = _pair(a["ConvKernelDim"])
        ih, iw = _pair(a["IFMDim"])
        oh, ow = _pair(a["OFMDim"])
        sh, sw = _pair(a.get("Stride", [1, 1]))
        dh, dw = _pair(a.get("Dilation", [1, 1]))
        p.update(C=int(a["IFMChannels"]), SIMD=int(a.get("SIMD", 1)), IH=ih, IW=iw, OH=oh, OW=ow,
                 kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, abits=idt.bitwidth(),
                 ram_style=str(a.get("ram_style", "auto")))
    elif op == "StreamingMaxPool":
        dt = _node_dt(model, node, a, "dataType", node.input[0])
        h, w = _pair(a["ImgDim"])
        p.update(H=h, W=w, k=_pair(a["PoolDim"])[0], C=int(a["NumChannels"]), PE=int(a.get("PE", 1)),
                 bits=dt.bitwidth(), ram_style=str(a.get("ram_style", "auto")))
    elif op == "FMPadding":
        dt = _node_dt(model, node, a, "inputDataType", node.input[0])
        h, w = _pair(a["ImgDim"])
        t, l, b, r = (list(a["Padding"]) + [0, 0, 0, 0])[:4]
        p.update(H=h, W=w, pad_t=int(t), pad_l=int(l), pad_b=int(b), pad_r=int(r),
                 C=int(a["NumChannels"]), SIMD=int(a.get("SIMD", 1)), bits=dt.bitwidth())
    elif op == "LabelSelect":
        dt = _node_dt(model, node, a, "inputDataType", node.input[0])
        p.update(L=int(a["Labels"]), PE=int(a.get("PE", 1)), K=int(a.get("K", 1)), vbits=dt.bitwidth())
    elif op == "StreamingDataWidthConverter":
        dt = _node_dt(model, node, a, "dataType", node.input[0])
        p.update(total_bits=_prod(a["shape"]) * dt.bitwidth(), in_width=int(a["inWidth"]),
                 out_width=int(a["outWidth"]))
    elif op == "StreamingFIFO":
        dt = _node_dt(model, node, a, "dataType", node.input[0])
        fs = list(a["folded_shape"])
        p.update(depth=int(a["depth"]), width=int(fs[-1]) * dt.bitwidth(), words=_prod(fs[:-1]),
                 ram_style=str(a.get("ram_style", a.get("impl_style", "auto"))))
    else:
        raise UnsupportedError(f"{node.name}: no cost model for op {op!r}; known: {', '.join(OP_COST)}")
    return p


def _ram(s: str) -> int:
    s = {"rtl": "distributed", "vivado": "block"}.get(s, s)
    if s not in RAM_STYLES:
        raise CodesignError(f"unknown ram_style {s!r}; valid: {', '.join(RAM_STYLES)}")
    return RAM_STYLES[s]


def _res(s: str) -> int:
    if s not in RES_TYPES:
        raise CodesignError(f"unknown resType {s!r}; valid: {', '.join(RES_TYPES)}")
    return RES_TYPES[s]


OP_COST = {
    "MVAU": lambda p, fam: mvau_cost(p["MW"], p["MH"], p["PE"], p["SIMD"], p["Nv"], p["wbits"], p["abits"],
                                     p["obits"], p["acc_bits"], p["n_thr"], _ram(p["ram_style"]),
                                     _res(p["resType"]), p["xnor"], fam),
    "Thresholding": lambda p, fam: thresholding_cost(p["C"], p["PE"], p["n_steps"], p["ibits"], p["obits"],
                                                     p["Nv"], _ram(p["ram_style"])),
    "SlidingWindow": lambda p, fam: sliding_window_cost(p["C"], p["SIMD"], p["IH"], p["IW"], p["OH"], p["OW"],
                                                        p["kh"], p["kw"], p["sh"], p["sw"], p["dh"], p["dw"],
                                                        p["abits"], _ram(p["ram_style"])),
    "StreamingMaxPool": lambda p, fam: maxpool_cost(p["H"], p["W"], p["k"], p["C"], p["PE"], p["bits"],
                                                    _ram(p["ram_style"])),
    "FMPadding": lambda p, fam: fmpadding_cost(p["H"], p["W"], p["pad_t"], p["pad_l"], p["pad_b"], p["pad_r"],
                                               p["C"], p["SIMD"], p["bits"]),
    "LabelSelect": lambda p, fam: label_select_cost(p["L"], p["PE"], p["K"], p["vbits"]),
    "StreamingDataWidthConverter": lambda p, fam: dwc_cost(p["total_bits"], p["in_width"], p["out_width"]),
    "StreamingFIFO": lambda p, fam: fifo_cost(p["depth"], p["width"], p["words"], _ram(p["ram_style"])),
}


def params_cost(p: Mapping[str, Any], calibration: Calibration | None = None,
                dsp_family: int = DSP48) -> dict[str, Any]:
    """Cost of one node from its parameter dict (see `node_params`), calibrated, as Python ints."""
    op = p["op_type"]
    if op not in OP_COST:
        raise UnsupportedError(f"{p.get('name', '?')}: no cost model for op {op!r}; known: {', '.join(OP_COST)}")
    est = OP_COST[op](p, dsp_family)
    est = (calibration or IDENTITY).apply(op, est)
    out: dict[str, Any] = {"op_type": op}
    for k in CALIBRATED + ("mem_bits",):
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
    "critical_path_cycles"}. The HW nodes form a chain, so the critical path is the sum of the
    node cycles (each node's initiation interval bounds its latency from above).
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
    return {"nodes": nodes, "total": total, "max_cycles": int(mx), "max_cycles_node_name": mx_name,
            "critical_path_cycles": int(sum(c["cycles"] for c in nodes.values()))}
