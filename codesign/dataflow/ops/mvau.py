"""MVAU (matrix-vector-activation unit): everything about the op in one place.

Golden execution, shapes, the cycle and resource model of ``accel_templates/codesign_mvau.v``,
folding rules, FINN names and the RTL generator (weights and thresholds into per-PE ROMs).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import (RAM_AUTO, RAM_BLOCK, RAM_ULTRA, RES_DSP, _i, bits_for_range, bram18_count,
                                    cdiv, ram_code, res_code, res_out)
from codesign.dataflow.golden import _int, multithreshold
from codesign.dataflow.ops.base import (HWCustomOp, _clog2, bipolar_from_count, param_dt, prod, prod_or_int,
                                        ram_auto_in_bram, rom_auto_in_bram, rom_bram18, rom_variable_bits)
from codesign.dataflow.ops.rtlgen import (dt_bits, rand_values, HWNodeSpec, NodeRTL, _attr, _codes, _hex_lines, _p, _prod, _ram_style,
                                          _rom_port, _stream, dtype, signed_bits)
from codesign.errors import FoldingError, UnsupportedError


# --------------------------------------------------------------------------- golden

def mvau(x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None, act_val: int = 0) -> np.ndarray:
    """Matrix-vector(-activation): acc = x @ W over the last axis, then optional thresholds.

    x (..., MW) and W (MW, MH) hold integers (bipolar as -1/+1); exact in int64.
    """
    acc = _int(x) @ _int(W)
    if T is None:
        return acc
    return multithreshold(acc, T, act_val)


# --------------------------------------------------------------------------- cycle and resource model

#: input + weight bits from which Yosys maps a lane's multiply to a DSP48E1 (measured with
#: unsigned inputs and signed weights; the general rule is DSP_MIN_PRODUCT_BITS)
DSP_MIN_BITS = 8
#: Yosys 0.23 synth_xilinx maps a $mul to a DSP48E1 only when its product is at least 9 bits
#: wide (mul2dsp DSP_Y_MINWIDTH) after wreduce: the RTL sign-extends both operands by one bit,
#: which wreduce drops again for a signed operand, so the product is (A + !signed_in) +
#: (W + !signed_w) bits (INT2 x INT6: 8 bits, LUTs; UINT2 x INT6: 9 bits, a DSP)
DSP_MIN_PRODUCT_BITS = 9

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


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``mvau_resource_features``: non-negative least squares over the
#: training half of the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single MVAUs
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [24.9015, 0.9699, 1.1383, 1.4437, 0.8855, 0.0823, 1.6033, 0.2626, 0.7462, 0.3863, 8.5964, 0.0],
    "FF": [0.0, 0.9951, 1.4201, 1.0383, 1.3274, 0.0, 1.9123],
}
# ---- resource coefficients (end) ----



def _mvau_struct(MW: Any, MH: Any, PE: Any, SIMD: Any, wbits: Any, abits: Any, obits: Any, acc_bits: Any,
                 n_thr: Any, res_type: Any, xnor: Any, i_signed: Any = 0, w_signed: Any = 1) -> dict[str, np.ndarray]:
    """What codesign_mvau.v builds, counted stage by stage (arrays broadcast)."""
    P, Q = _i(PE), _i(SIMD)
    W_, A_ = _i(wbits), _i(abits)
    acc = _i(acc_bits)
    nt = _i(n_thr)
    xn = (_i(xnor) != 0) | ((W_ == 1) & (A_ == 1))
    wbip, ibip = (W_ == 1) & ~xn, (A_ == 1) & ~xn
    prod_bits = A_ + (_i(i_signed) == 0) + W_ + (_i(w_signed) == 0)
    use_dsp = ((_i(res_type) == RES_DSP) & ~xn & ~wbip & ~ibip & (W_ >= 2) & (A_ >= 2)
               & (prod_bits >= DSP_MIN_PRODUCT_BITS))
    npp = np.where(xn | wbip | ibip | use_dsp, 1, W_)
    nleaf = Q * npp
    pw = np.where(xn, 1, A_ + W_ + 2)                       # leaf width (EIW + EWW)
    tl = _clog2(nleaf)
    tow = np.minimum(pw + tl, acc)                           # tree width (mod 2^ACCW)
    # adder bits = register bits per PE. Every node of codesign_mvau_tree is TOW bits wide; with
    # XNOR leaves (zero-extended 1-bit counts) Yosys drops the constant-zero high bits, so a node
    # at height k above the leaves keeps min(1 + k, TOW) (CNV w1a1, PE 16 x SIMD 16: the full width
    # counted 44 % more flip-flops than Yosys keeps); sign-extended leaves keep the full width
    full = (nleaf - 1) * tow
    trim = np.zeros_like(full)
    for k in range(1, int(np.max(tl)) + 1 if np.size(tl) else 1):
        trim = trim + np.where(k <= tl, cdiv(nleaf, 1 << k) * np.minimum(pw + k, tow), 0)
    tree = np.where(xn, trim, full)
    # leaf logic: AND of the extended input with a weight bit (LUT mult), +-x (bipolar), xnor
    leaf = np.where(use_dsp, 0, np.where(xn, nleaf, np.where(wbip | ibip, nleaf * pw, nleaf * (A_ + 1))))
    cw = _clog2(np.maximum(nt, 1)) + 1
    pop = np.maximum(nt - 1, 0) * cw                         # popcount tree of the compare bits
    sf = _i(MW) // Q
    nf = _i(MH) // P
    sfw = np.maximum(_clog2(sf), 1)
    nfw = np.maximum(_clog2(nf), 1)
    dl = 1 + use_dsp.astype(np.int64) + tl
    return dict(P=P, Q=Q, W=W_, A=A_, acc=acc, nt=nt, use_dsp=use_dsp, tree=tree, leaf=leaf, pop=pop,
                ibuf_words=2 * (1 << sfw), sfw=sfw, nfw=nfw, dl=dl, wmem=sf * nf, tmem=nf)


def bram_depth(width: Any) -> np.ndarray:
    """Words one BRAM18 (and one ECP5 DP16KD) holds at this width: 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18."""
    w = _i(width)
    return np.where(w <= 1, 16384, np.where(w == 2, 8192, np.where(w <= 4, 4096, np.where(w <= 9, 2048, 1024))))


def wrom_out_reg(MW: Any, MH: Any, PE: Any, SIMD: Any, wbits: Any, ram_style: Any) -> np.ndarray:
    """Whether each weight ROM is banked: a block-RAM ROM deeper than one BRAM at its width
    (``bram_depth``) would be split in depth by synthesis, with the split's read mux right after
    the BRAM's slow clock-to-out (5.6 ns on ECP5: 93 MHz measured on CNV's MVAU_4, a 9216 x 16
    ROM; a register after that mux does not help, measured 90 MHz). So the generator writes the
    ROM as banks one BRAM deep, each read into its own fabric register, and the bank select mux
    follows those registers: one more pipeline stage (read latency 2), PE x banks x SIMD x W
    flip-flops, and the banks' BRAM18 counted bank by bank (``_mvau_memories``)."""
    rs = _i(ram_style)
    rs = np.where(rs == RAM_ULTRA, RAM_BLOCK, rs)
    wd = (_i(MW) // _i(SIMD)) * (_i(MH) // _i(PE))
    ww = _i(SIMD) * _i(wbits)
    return _banked(wd, ww, _rom_in_bram(rs, wd, ww))


#: banks per group of a pipelined bank select (``rom_node.v.j2``): more banks than this are
#: selected in two registered levels (stitched CNV w1a1: one 36:1 select from banks spread over
#: the device's block-RAM columns was the top's critical path, 96.0 MHz, 7.9 ns of routing)
BANK_GROUP = 4


def wrom_extra_latency(MW: Any, MH: Any, PE: Any, SIMD: Any, wbits: Any, ram_style: Any) -> np.ndarray:
    """Read cycles the weight ROM adds to the plain one: 0 (one memory), 1 (banked: each bank
    read into its own register, ``wrom_out_reg``), 2 (more than BANK_GROUP banks: the select is a
    registered group level, then the group select)."""
    banked = wrom_out_reg(MW, MH, PE, SIMD, wbits, ram_style)
    nb = cdiv((_i(MW) // _i(SIMD)) * (_i(MH) // _i(PE)), bram_depth(_i(SIMD) * _i(wbits)))
    return np.where(banked, np.where(nb > BANK_GROUP, 2, 1), 0).astype(np.int64)


def _rom_in_bram(rs: Any, depth: Any, width: Any) -> np.ndarray:
    """A weight ROM in block RAM: ram_style block, or auto where Yosys prefers it (``rom_auto_in_bram``)."""
    return (rs == RAM_BLOCK) | ((rs == RAM_AUTO) & rom_auto_in_bram(depth, width))


def _banked(depth: Any, width: Any, in_bram: Any) -> np.ndarray:
    """A block-RAM ROM deeper than one BRAM at its width is banked (``wrom_out_reg``)."""
    return in_bram & (_i(depth) > bram_depth(width))


def _rom_lut(depth: Any, width: Any, in_lut: Any) -> np.ndarray:
    """LUTs of a ROM Yosys leaves in logic: one LUT6 per 64 words per output bit."""
    return np.where(in_lut & (_i(depth) > 0), _i(width) * cdiv(depth, 64), 0)


def mvau_resource_features(p: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """Structural LUT / FF features of one MVAU (the columns RESOURCE_COEFFS multiplies).

    LUT: [1, adder-tree bits, leaf logic bits, accumulator bits, compare bits, popcount bits,
    input-buffer LUTRAM, weight/threshold ROM LUTs, output bits, ROM mux-tree LUTs, bank
    selects, bank-select mux bits]; all per PE times PE except the shared input buffer (SIMD*A
    bits x 2 vectors, 64 words per LUT) and the ROMs (in logic: 64 words per LUT6 per bit, times
    clog2(depth/64) for the mux tree). A banked weight ROM (``wrom_out_reg``) adds the wrapper's
    bank select, a case over nb banks: nb decoded selects and an nb:1 mux per word bit (PE x nb
    and PE x nb x SIMD*W; CNV's FC layers: 36 banks of 2K x 9, 190 LUT that the other columns
    do not have).
    FF: [1, tree registers, accumulators, stage-1/2 data registers (x1, x2, weight and threshold
    words; of the threshold word only the bits that vary, ``_mvau_memories``), compare + popcount
    registers, output register, delay-line control bits]."""
    s = _mvau_struct(p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"], p["acc_bits"],
                     p["n_thr"], res_code(p["resType"]), p.get("xnor", 0), p.get("i_signed", 0), p.get("w_signed", 1))
    P, Q, A_, W_, acc, nt = s["P"], s["Q"], s["A"], s["W"], s["acc"], s["nt"]
    mem = _mvau_memories(p, s)
    out_bits = np.where(nt > 0, _i(p["obits"]), np.minimum(_i(p["obits"]), acc))
    one = np.ones_like(P)
    lut = [one, P * s["tree"], P * s["leaf"], P * acc, P * nt * acc, P * s["pop"],
           np.where(mem["ibuf_bram"] > 0, 0, Q * A_ * cdiv(s["ibuf_words"], 64)), mem["rom_lut"], P * out_bits,
           mem["rom_mux"], P * mem["banks"], P * mem["banks"] * mem["wword"]]
    ff = [one, P * s["tree"], P * acc, 2 * Q * A_ + P * Q * W_ + mem["thr_bits"], P * (nt + s["pop"]),
          P * out_bits, s["dl"] * (3 + s["nfw"]) + 2 * s["sfw"] + s["nfw"]]
    return {"LUT": lut, "FF": ff}


def _mvau_memories(p: Mapping[str, Any], s: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight ROMs (PE of depth SF*NF, width SIMD*W) and threshold ROMs (PE of depth NF, width
    NT*ACCW): BRAM18 by the aspect table where the style puts them in block RAM, else logic.
    ram_style auto (no attribute in the RTL): Yosys 0.23 keeps a ROM in logic below
    its bits cost more in logic than in RAMB18s (``rom_auto_in_bram``). The input buffer (2 vectors
    of SF words of SIMD*A bits, a RAM without a ram_style) goes to block RAM when its LUTRAM costs
    Yosys more (``ram_auto_in_bram``)."""
    rs = _i(ram_code(p["ram_style"]))
    rs = np.where(rs == RAM_ULTRA, RAM_BLOCK, rs)  # the generator writes ram_style "block" for ultra
    P = s["P"]
    # the weight ROM word: SIMD codes of W bits (rom), of k index bits (codebook), none (constants)
    wd, ww = s["wmem"], s["Q"] * _i(p.get("rom_wbits", s["W"]))
    td, tw = s["tmem"], s["nt"] * s["acc"]
    in_bw = _rom_in_bram(rs, wd, ww)
    ibuf_bram = np.where(ram_auto_in_bram(s["ibuf_words"], s["Q"] * s["A"]),
                         bram18_count(s["ibuf_words"], s["Q"] * s["A"]), 0)
    # a banked ROM (``wrom_out_reg``) is one memory per bank of bram_depth words
    bd = bram_depth(ww)
    banked = _banked(wd, ww, in_bw)
    # the last, partial bank is a ROM of its own: with ram_style auto Yosys keeps it in logic when
    # that is cheaper (CNV w1a1 MVAU_4: 4 banks of 2048 x 8 + 1024 x 8 in LUTs: 17 BRAM18, not 21)
    rem = np.where(banked, wd % bd, 0)
    rem_in_bram = (rem > 0) & _rom_in_bram(rs, rem, ww)
    rem_lut = _rom_lut(rem, ww, ~rem_in_bram)
    wbram = np.where(banked, (wd // bd) * rom_bram18(bd, ww) + np.where(rem_in_bram, rom_bram18(rem, ww), 0),
                     rom_bram18(wd, ww))
    bram = P * np.where(in_bw, wbram, 0) + ibuf_bram
    rom_lut = P * (_rom_lut(wd, ww, ~in_bw) + rem_lut)
    # a ROM deeper than one LUT6 also needs a mux tree of clog2(depth/64) levels per bit
    rom_mux = P * (_rom_lut(wd, ww, ~in_bw) * _clog2(cdiv(wd, 64)) + rem_lut * _clog2(cdiv(rem, 64)))
    thr = _thr_roms(P, rs, td, tw, s["nt"], p.get("thr_var"))
    return {"BRAM_18K": bram + thr["BRAM_18K"], "rom_lut": rom_lut + thr["rom_lut"], "rom_mux": rom_mux + thr["rom_mux"],
            "thr_bits": thr["bits"], "ibuf_bram": ibuf_bram, "bits": P * (wd * ww + td * tw),
            "banks": np.where(banked, cdiv(wd, bd), 0), "wword": ww}


def _thr_rom_one(pe: int, rs: int, depth: int, width: int, nt: int,
                 table: Mapping[int, tuple[int, ...]] | None) -> tuple[int, int, int, int]:
    """(BRAM18, ROM LUTs, mux LUTs, stored bits) of the PE threshold ROMs at one folding: each
    ROM only as wide as its varying bits (``rom_variable_bits``: Yosys drops the constant ones),
    in block RAM by ram_style or, for auto, by ``rom_auto_in_bram`` on the trimmed width."""
    if nt <= 0 or depth <= 0:
        return 0, 0, 0, 0
    widths = table.get(pe) if table else None
    if widths is None:  # thresholds unknown (no initializer): the full NT * ACCW bits
        widths = (width,) * pe
    bram = lut = mux = 0
    for w, count in Counter(widths).items():  # PEs of one width cost the same: one lookup each
        b, l, m = _thr_rom_width(rs, depth, w)
        bram, lut, mux = bram + count * b, lut + count * l, mux + count * m
    return bram, lut, mux, int(sum(widths))


@lru_cache(maxsize=65536)
def _thr_rom_width(rs: int, depth: int, w: int) -> tuple[int, int, int]:
    """(BRAM18, ROM LUTs, mux LUTs) of one threshold ROM of `depth` x `w` bits. Cached: the
    folding search asks the same few shapes thousands of times (scalar numpy calls cost ~0.2 ms each)."""
    if w <= 0:
        return 0, 0, 0
    if bool(_rom_in_bram(rs, depth, w)):
        return int(rom_bram18(depth, w)), 0, 0
    n = int(_rom_lut(depth, w, True))
    return 0, n, n * int(_clog2(cdiv(depth, 64)))


def _thr_roms(P: Any, rs: Any, depth: Any, width: Any, nt: Any, table: Any) -> dict[str, np.ndarray]:
    """``_thr_rom_one`` over broadcast folding arrays (the vectorised search passes arrays)."""
    f = np.vectorize(lambda a, b, c, d, e: _thr_rom_one(int(a), int(b), int(c), int(d), int(e), table),
                     otypes=[np.int64] * 4)
    bram, lut, mux, bits = f(P, rs, depth, width, nt)
    return {"BRAM_18K": bram, "rom_lut": lut, "rom_mux": mux, "bits": bits}


def mvau_threshold_codes(W: np.ndarray, T: np.ndarray, ilo: int, ihi: int, xnor: bool) -> tuple[np.ndarray, int]:
    """The threshold words as ``_gen_mvau`` writes them: (MH, NT) two's-complement codes and
    their width ACCW (thresholds ceiled, clipped to each column's reachable accumulator range;
    XNOR: counts of matching bits). Tested against the generated ROM files (tests/test_costmodel.py)."""
    W = np.asarray(W, dtype=np.float64).astype(np.int64)
    mw, mh = W.shape
    T = np.asarray(T, dtype=np.float64)
    if T.shape[0] == 1 and mh != 1:
        T = np.broadcast_to(T, (mh, T.shape[1]))
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    acc_hi = (Wp * ihi + Wn * ilo).sum(axis=0)
    acc_lo = (Wp * ilo + Wn * ihi).sum(axis=0)
    lo, hi = int(acc_lo.min()), int(acc_hi.max())
    Tc = np.ceil(T).astype(np.int64)
    if xnor:
        lo, hi = 0, mw + 1
        Tq = np.clip(-((-(Tc + mw)) // 2), 0, mw + 1)
    else:
        Tq = np.clip(Tc, acc_lo[:, None], acc_hi[:, None] + 1)
        lo, hi = min(lo, int(Tq.min())), max(hi, int(Tq.max()))
    accw = signed_bits(lo, hi)
    return Tq & ((1 << accw) - 1), accw


def mvau_resources(MW: Any, MH: Any, PE: Any, SIMD: Any, wbits: Any, abits: Any, obits: Any,
                   acc_bits: Any, n_thr: Any, ram_style: Any = 0, res_type: Any = 0,
                   xnor: Any = 0, dsp_family: Any = 0, rom_wbits: Any = None,
                   thr_var: Mapping[int, tuple[int, ...]] | None = None,
                   i_signed: Any = 0, w_signed: Any = 1) -> dict[str, np.ndarray]:
    """Resources of codesign_mvau.v as Yosys maps it (model of the RTL, not of FINN's HLS unit).

    LUT / FF: ``mvau_resource_features`` (the adder tree of SIMD*NPP leaves per PE with a
    register after every level, the accumulator, NT compares of ACCW bits and the popcount tree,
    the input buffer and the data registers) times the fitted RESOURCE_COEFFS.
    BRAM18: weight and threshold ROMs per PE as Yosys packs them (``rom_bram18``) when in block RAM; a threshold
    ROM only as wide as its varying bits (`thr_var`, ``rom_variable_bits`` of the thresholds;
    without it the full NT*ACCW bits).
    DSP (resType=dsp): one registered signed (A+1) x (W+1) multiply per (PE, SIMD) lane, packed
    nothing: PE*SIMD DSP48E1 when the product is DSP_MIN_PRODUCT_BITS wide (A + W >= 8 for
    unsigned inputs and signed weights; Yosys' synth_xilinx leaves narrower products in LUTs),
    none with a bipolar operand (no multiply: a negation). Checked against Yosys 0.23 by
    benchmarks/bench_dsp_map.py and bench_costmodel.py; the same count is assumed on DSP58.
    """
    p = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, wbits=wbits, abits=abits, obits=obits, acc_bits=acc_bits,
             n_thr=n_thr, ram_style=ram_style, resType=res_type, xnor=xnor, thr_var=thr_var, i_signed=i_signed,
             w_signed=w_signed)
    if rom_wbits is not None:
        p["rom_wbits"] = rom_wbits
    s = _mvau_struct(MW, MH, PE, SIMD, wbits, abits, obits, acc_bits, n_thr, res_code(res_type), xnor, i_signed,
                     w_signed)
    f = mvau_resource_features(p)
    lut = sum(c * np.asarray(x, np.float64) for c, x in zip(RESOURCE_COEFFS["LUT"], f["LUT"]))
    ff = np.rint(sum(c * np.asarray(x, np.float64) for c, x in zip(RESOURCE_COEFFS["FF"], f["FF"]))).astype(np.int64)
    mem = _mvau_memories(p, s)
    dsp = np.where(s["use_dsp"], s["P"] * s["Q"], 0)
    # counted exactly, outside the fit: a banked weight ROM's bank output registers and bank
    # select, the input word's matching stage and one more delay-line stage
    rb = _i(wbits if rom_wbits is None else rom_wbits)  # stored bits per weight (k for a codebook)
    nb = cdiv(s["wmem"], bram_depth(s["Q"] * rb))  # banks of a banked weight ROM
    ff = ff + np.where(wrom_out_reg(MW, MH, PE, SIMD, rb, ram_style) & (rb > 0),
                       s["P"] * (nb * s["Q"] * rb + 2 * _clog2(nb)) + s["Q"] * s["A"] + 3 + s["nfw"], 0)
    # a grouped bank select: the group registers and the group index register per ROM, and one
    # more input-word and delay-line stage
    ng = cdiv(nb, BANK_GROUP)
    ff = ff + np.where((wrom_extra_latency(MW, MH, PE, SIMD, rb, ram_style) == 2) & (rb > 0),
                       s["P"] * (ng * s["Q"] * rb + _clog2(nb) - _clog2(BANK_GROUP)) + s["Q"] * s["A"] + 3 + s["nfw"],
                       0)
    return res_out(lut, ff, mem["BRAM_18K"], np.zeros_like(dsp), dsp, mem["bits"])


# ---- weight-storage coefficients (fitted by `nice -n 10 python benchmarks/bench_weight_storage.py --fit`,
# non-negative least squares over 4 codebook and 5 constants layers; begin) ----
#: codebook storage: LUT/FF on top of the plain model with k-bit ROM words, times
#: [centroid-lookup bits P*SIMD*W*ceil(2^k/64)] and [index + delayed-input + stage-control
#: register bits]; Yosys 0.23 ``synth_xilinx -family xc7``
CODEBOOK_COEFFS: dict[str, list[float]] = {"LUT": [0.4699], "FF": [0.2255]}
#: constants storage: LUT = . [1, adder bits, activation bits, input-buffer/threshold-ROM LUTs],
#: FF = . [1, datapath register bits, control/activation register bits]
CONSTANTS_COEFFS: dict[str, list[float]] = {"LUT": [0.0, 0.8663, 0.609, 0.0], "FF": [0.0, 0.825, 0.971]}
# ---- weight-storage coefficients (end) ----


def mvau_codebook_features(p: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """What codebook storage adds to the plain datapath: one lookup of 2^k centroids per lane
    (a LUT6 per weight bit up to k = 6, twice per extra index bit above), the registered index
    word, the input delayed one stage and one more stage of control bits."""
    P, Q, W_, A_ = _i(p["PE"]), _i(p["SIMD"]), _i(p["wbits"]), _i(p["abits"])
    k = _i(p["cb_bits"])
    nfw = np.maximum(_clog2(_i(p["MH"]) // P), 1)
    return {"LUT": [P * Q * W_ * cdiv(1 << k, 64)], "FF": [P * Q * k + Q * A_ + 3 + nfw]}


def mvau_constants_features(p: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """Features of a fully unfolded MVAU with constant weights: the adder / register bits of
    the constant datapath left after zero weights vanish and equal magnitudes share a product
    (``constant_dot_features``), the activation logic, the input buffer and threshold ROMs."""
    s = _mvau_struct(p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"], p["acc_bits"],
                     p["n_thr"], 0, p.get("xnor", 0))
    P, Q, A_, acc, nt = s["P"], s["Q"], s["A"], s["acc"], s["nt"]
    mem = _mvau_memories({**p, "rom_wbits": 0}, s)
    out_bits = np.where(nt > 0, _i(p["obits"]), np.minimum(_i(p["obits"]), acc))
    one = np.ones_like(P)
    act = P * acc + P * nt * acc + P * s["pop"] + P * out_bits
    mem_lut = Q * A_ * cdiv(s["ibuf_words"], 64) + mem["rom_lut"] + mem["rom_mux"]
    dl = 1 + _i(p["const_extl"])
    ctl = P * acc + P * (nt + s["pop"]) + P * out_bits + 2 * Q * A_ + P * nt * acc + dl * (3 + s["nfw"])
    return {"LUT": [one, _i(p["const_add_bits"]), act, mem_lut], "FF": [one, _i(p["const_reg_bits"]), ctl]}


def _dot(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def mvau_storage_resources(p: Mapping[str, Any], dsp_family: Any = 0) -> dict[str, np.ndarray]:
    """Resources of an MVAU by its weight storage: rom is ``mvau_resources``; codebook is the
    plain model with k-bit ROM words plus the fitted lookup; constants counts the constant
    datapath that remains (no weight ROM, no partial products of zero weights)."""
    storage = str(p.get("weight_storage", STORAGE_ROM))
    args = (p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"], p["acc_bits"], p["n_thr"],
            ram_code(p["ram_style"]), res_code(p["resType"]), p.get("xnor", 0), dsp_family)
    kw = dict(thr_var=p.get("thr_var"), i_signed=p.get("i_signed", 0), w_signed=p.get("w_signed", 1))
    if storage == STORAGE_CODEBOOK and "cb_bits" in p:
        out = mvau_resources(*args, rom_wbits=p["cb_bits"], **kw)
        f = mvau_codebook_features(p)
        lut = np.asarray(out["LUT"], np.float64) + _dot(CODEBOOK_COEFFS["LUT"], f["LUT"])
        ff = np.rint(np.asarray(out["FF"], np.float64) + _dot(CODEBOOK_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(lut, ff, out["BRAM_18K"], out["URAM"], out["DSP"], out["mem_bits"])
    if storage == STORAGE_CONSTANTS and "const_add_bits" in p:
        # the constant datapath was counted at full unfolding; other candidate foldings (a search
        # varying PE/SIMD) are costed as rom, which is what they would have to be
        full = (_i(p["MW"]) // _i(p["SIMD"])) * (_i(p["MH"]) // _i(p["PE"])) == 1
        if not np.all(full):
            rom = mvau_resources(*args, **kw)
            if not np.any(full):
                return rom
            cst = mvau_storage_resources({**p, "MW": p["MW"], "SIMD": p["MW"], "PE": p["MH"]}, dsp_family)
            return {k: np.where(full, cst[k], rom[k]) for k in rom}
        f = mvau_constants_features(p)
        s = _mvau_struct(p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"], p["acc_bits"],
                         p["n_thr"], 0, p.get("xnor", 0))
        mem = _mvau_memories({**p, "rom_wbits": 0}, s)
        lut = _dot(CONSTANTS_COEFFS["LUT"], f["LUT"])
        ff = np.rint(_dot(CONSTANTS_COEFFS["FF"], f["FF"])).astype(np.int64)
        zero = np.zeros_like(np.asarray(ff))
        return res_out(lut, ff, mem["BRAM_18K"], zero, zero, mem["bits"])
    return mvau_resources(*args, **kw)


def mvau_cost(MW: Any, MH: Any, PE: Any, SIMD: Any, Nv: Any, wbits: Any, abits: Any, obits: Any,
              acc_bits: Any, n_thr: Any, ram_style: Any = 0, res_type: Any = 0,
              xnor: Any = 0, dsp_family: Any = 0) -> dict[str, np.ndarray]:
    """Cycles and resources in one dict (the formula-level entry point the tests use)."""
    out = mvau_resources(MW, MH, PE, SIMD, wbits, abits, obits, acc_bits, n_thr, ram_style, res_type, xnor,
                         dsp_family)
    out["cycles"] = mvau_cycles(MW, MH, PE, SIMD, Nv)
    return out


# --------------------------------------------------------------------------- weight storage

#: ``weight_storage`` values: per-PE ROMs of weight codes (FINN's internal_embedded memory),
#: ROMs of k-bit cluster indices with a table of integer centroids, or the weights as constants
#: in the node's logic (fully unfolded layers only)
STORAGE_ROM, STORAGE_CODEBOOK, STORAGE_CONSTANTS = "rom", "codebook", "constants"
WEIGHT_STORAGES = (STORAGE_ROM, STORAGE_CODEBOOK, STORAGE_CONSTANTS)
#: widest codebook index (a centroid lookup of 2^8 entries per lane is already larger than the
#: ROM bits it saves on any layer this project builds)
CODEBOOK_MAX_BITS = 8


@dataclass(frozen=True)
class WeightStorage:
    """How a node's weights are stored in the RTL; for a codebook, the table and the indices.

    The centroids are the layer's distinct integer weights (sorted, padded to 2^k with the last
    one), so the ONNX graph keeps the plain integer W and its golden matmul: the codebook is a
    property of W, derived where the RTL is generated, and can never disagree with it."""

    mode: str
    kbits: int = 0
    centroids: np.ndarray | None = None
    indices: np.ndarray | None = None

    def cbook_literal(self, wbits: int, bipolar: bool = False) -> str:
        """The centroid table as one Verilog literal: entry i at bits [i*wbits, (i+1)*wbits)."""
        assert self.centroids is not None
        word = 0
        for i, c in enumerate(_codes(self.centroids, wbits, bipolar)):
            word |= int(c) << (i * wbits)
        return f"{len(self.centroids) * wbits}'h{word:x}"


def codebook_bits_needed(W: np.ndarray) -> int:
    """Index bits of the smallest codebook holding every distinct value of W (at least 1)."""
    return max(1, _clog2_int(len(np.unique(np.asarray(W)))))


def _clog2_int(n: int) -> int:
    return max(0, int(math.ceil(math.log2(max(int(n), 1)))))


def codebook_of(W: np.ndarray, kbits: int = 0) -> WeightStorage:
    """Codebook of an integer weight matrix: sorted distinct values padded to 2^k, and the index
    of every weight in it (``centroids[indices] == W`` exactly)."""
    W = np.asarray(W).astype(np.int64)
    vals = np.unique(W)
    k = int(kbits) or codebook_bits_needed(W)
    if len(vals) > (1 << k):
        raise UnsupportedError(f"the weights have {len(vals)} distinct values, more than a {k}-bit codebook "
                               f"holds; cluster the layer to <= {1 << k} centroids or raise codebook_bits")
    cents = np.concatenate([vals, np.full((1 << k) - len(vals), vals[-1], dtype=np.int64)])
    return WeightStorage(STORAGE_CODEBOOK, k, cents, np.searchsorted(vals, W).astype(np.int64))


def weight_storage_of(name: str, attrs: Mapping[str, Any], W: np.ndarray, wdt: Any, xnor: bool, SF: int,
                      NF: int) -> WeightStorage:
    """The node's weight storage, checked against its weights and folding (one line if refused)."""
    mode = str(_attr(dict(attrs), "weight_storage", STORAGE_ROM))
    if mode == "auto":  # not resolved by ChooseWeightStorage: the plain ROM
        mode = STORAGE_ROM
    if mode not in WEIGHT_STORAGES:
        raise UnsupportedError(f"{name}: weight_storage={mode!r} is not valid; valid: {', '.join(WEIGHT_STORAGES)}")
    if mode == STORAGE_CONSTANTS:
        if SF * NF != 1:
            raise UnsupportedError(f"{name}: weight_storage=constants needs a fully unfolded layer "
                                   f"(SIMD=MW and PE=MH, here {SF * NF} weight words); use rom or codebook")
        if xnor:
            raise UnsupportedError(f"{name}: weight_storage=constants does not take XNOR (bipolar x bipolar) "
                                   "layers; use rom")
        return WeightStorage(STORAGE_CONSTANTS)
    if mode == STORAGE_CODEBOOK:
        if wdt.bipolar or xnor or wdt.bits < 2:
            raise UnsupportedError(f"{name}: weight_storage=codebook needs multi-bit weights, not {wdt.name}")
        kb = int(_attr(dict(attrs), "codebook_bits", 0))
        try:
            cb = codebook_of(W, kb)
        except UnsupportedError as exc:
            raise UnsupportedError(f"{name}: {exc}") from None
        if cb.kbits >= wdt.bits or cb.kbits > CODEBOOK_MAX_BITS:
            raise UnsupportedError(f"{name}: a {cb.kbits}-bit codebook saves nothing over {wdt.name} weights "
                                   f"(needs fewer than {min(wdt.bits, CODEBOOK_MAX_BITS + 1)} index bits); "
                                   "use weight_storage=rom")
        return cb
    return WeightStorage(STORAGE_ROM)


def csd_digits(a: int) -> list[tuple[int, int]]:
    """Canonical signed digits of a positive integer: [(shift, +1/-1)], fewest non-zero digits
    (so x * a costs len - 1 adders of shifted copies of x)."""
    out, j, a = [], 0, int(a)
    while a:
        if a & 1:
            d = 2 - (a & 3)  # +1 if a = 1 mod 4, -1 if a = 3 mod 4
            out.append((j, d))
            a -= d
        a >>= 1
        j += 1
    return out


@dataclass
class ConstantDot:
    """The constant-weight datapath of a fully unfolded layer, as the generator builds it and
    the cost model counts it: shared products (lane k, magnitude a) and per PE the products of
    its positive and of its negative weights."""

    products: list[tuple[int, int]]           # (lane, magnitude), one registered product each
    pos: list[list[int]]                      # per PE: indices into products (positive weights)
    neg: list[list[int]]                      # per PE: negative weights
    tree_levels: int                          # registered levels of every PE's trees (padded)
    prod_bits: int                            # width of a product (and of a tree leaf)

    @property
    def latency(self) -> int:
        """EXTL: product register + tree levels + the registered subtraction."""
        return 1 + self.tree_levels + 1


def constant_dot(W: np.ndarray, ibits: int, wbits: int, wsigned: bool = True) -> ConstantDot:
    """Plan the constant datapath of W (MW, MH): zero weights vanish, equal magnitudes on one
    input are one product shared by every PE that uses them."""
    W = np.asarray(W).astype(np.int64)
    idx: dict[tuple[int, int], int] = {}
    products: list[tuple[int, int]] = []
    pos: list[list[int]] = []
    neg: list[list[int]] = []
    for p in range(W.shape[1]):
        pp, nn = [], []
        for k in range(W.shape[0]):
            w = int(W[k, p])
            if w == 0:
                continue
            key = (k, abs(w))
            if key not in idx:
                idx[key] = len(products)
                products.append(key)
            (pp if w > 0 else nn).append(idx[key])
        pos.append(pp)
        neg.append(nn)
    n_max = max([len(t) for t in pos + neg] + [1])
    # |w| <= 2^wbits (unsigned) or 2^(wbits-1): the product of an (ibits+1)-bit signed input fits
    return ConstantDot(products, pos, neg, _clog2_int(n_max), ibits + 1 + wbits + (0 if wsigned else 1))


def constant_dot_features(cd: ConstantDot, accw: int) -> dict[str, int]:
    """Adder and register bits of the constant datapath (what is left after zero weights and
    shared products; the fitted CONSTANTS_COEFFS multiply them)."""
    add = sum((len(csd_digits(a)) - 1) * cd.prod_bits for _, a in cd.products)
    reg = len(cd.products) * cd.prod_bits
    for tree in cd.pos + cd.neg:
        n = len(tree)
        if n > 1:
            ow = min(cd.prod_bits + _clog2_int(n), accw)
            add += (n - 1) * ow
            reg += (n - 1) * ow + (cd.tree_levels - _clog2_int(n)) * ow
        elif n == 1:
            reg += cd.tree_levels * cd.prod_bits
    add += len(cd.pos) * accw   # the per-PE subtraction
    reg += len(cd.pos) * accw
    return {"add_bits": int(add), "reg_bits": int(reg), "products": len(cd.products),
            "nonzero": int(sum(len(t) for t in cd.pos + cd.neg))}


def _product_expr(var: str, a: int) -> str:
    terms = []
    for j, d in sorted(csd_digits(a), reverse=True):
        t = f"({var} <<< {j})" if j else var
        terms.append((d, t))
    expr = ("" if terms[0][0] > 0 else "-") + terms[0][1]
    for d, t in terms[1:]:
        expr += (" + " if d > 0 else " - ") + t
    return expr


def _gen_constant_dot(ctx: Any, base: str, node_name: str, W: np.ndarray, idt: Any, wdt: Any,
                      accw: int) -> tuple[str, ConstantDot]:
    """Render the constant datapath module of a fully unfolded MVAU (``mvau_const_dot.v.j2``)."""
    cd = constant_dot(W, idt.bits, wdt.bits, wdt.signed or wdt.bipolar)
    names = [f"m{k}_{a}" for k, a in cd.products]
    products = [{"name": n, "expr": _product_expr(f"xs{k}", a)} for n, (k, a) in zip(names, cd.products)]
    pes = []
    for p, (pp, nn) in enumerate(zip(cd.pos, cd.neg)):
        trees = []
        for tag, t in (("pos", pp), ("neg", nn)):
            n = len(t)
            ow = min(cd.prod_bits + _clog2_int(n), accw) if n else 0
            trees.append({"name": f"{tag}{p}", "n": n, "ow": ow, "leaves": [names[i] for i in t],
                          "pad": cd.tree_levels - _clog2_int(n) if n else 0})
        pes.append({"p": p, "trees": trees})
    lanes = sorted({k for k, _ in cd.products})
    fname = ctx.render("mvau_const_dot.v.j2", f"{base}_cdot.v", node_name=node_name, module=f"{base}_cdot",
                       simd=W.shape[0], ibits=idt.bits, pe=W.shape[1], accw=accw, mw=cd.prod_bits, lanes=lanes,
                       ibipolar=idt.bipolar, isigned=idt.signed, products=products, pes=pes,
                       tl=cd.tree_levels, extl=cd.latency)
    return fname, cd


def _storage_params(a: Mapping[str, Any], W: Any, wdt: Any, idt: Any, acc_bits: int) -> dict[str, Any]:
    """The model numbers of a node's weight storage: the codebook's index bits, or the counts of
    the constant datapath (from W when it is known; without W a constants node is costed as rom)."""
    storage = str(a.get("weight_storage", STORAGE_ROM))
    out: dict[str, Any] = {"weight_storage": storage}
    if storage == STORAGE_CODEBOOK:
        kb = int(a.get("codebook_bits", 0) or 0)
        out["cb_bits"] = kb or (codebook_bits_needed(W) if W is not None else max(1, wdt.bitwidth() - 1))
    elif storage == STORAGE_CONSTANTS and W is not None:
        cd = constant_dot(W, idt.bitwidth(), wdt.bitwidth(), wdt.signed() or wdt.name == "BIPOLAR")
        f = constant_dot_features(cd, acc_bits)
        out.update(const_add_bits=f["add_bits"], const_reg_bits=f["reg_bits"], const_extl=cd.latency,
                   const_products=f["products"], const_nonzero=f["nonzero"])
    return out


# --------------------------------------------------------------------------- the op

class MVAU(HWCustomOp):
    """acc = x @ W, then optionally ``out = ActVal + #{acc >= T[c, i]}``.

    A BIPOLAR ``outputDataType`` (one threshold, ActVal 0) means the count {0, 1} is the bit
    of a bipolar value, so the tensor holds 2*count - 1 (-1/+1), as the contract requires of
    every bipolar tensor. An input of shape ``(N, H, W, C)`` with ``numInputVectors == [1]``
    and ``H*W*C == MW`` is read as its NHWC flattening: the stream order is the same, which is
    how a conv feature map feeds the first FC layer without a reshape node on the chain.
    """

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "MW": ("i", True, 0),
            "MH": ("i", True, 0),
            "PE": ("i", False, 1),
            "SIMD": ("i", False, 1),
            "inputDataType": ("s", True, ""),
            "weightDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "accDataType": ("s", False, "INT32"),
            "noActivation": ("i", False, 0, {0, 1}),
            "ActVal": ("i", False, 0),
            "binaryXnorMode": ("i", False, 0, {0, 1}),
            "numInputVectors": ("ints", False, [1]),
            "ram_style": ("s", False, "auto"),
            "resType": ("s", False, "lut", {"auto", "lut", "dsp"}),
            "mem_mode": ("s", False, "internal_embedded"),
            "runtime_writeable_weights": ("i", False, 0, {0, 1}),
            # how the RTL stores W (see WEIGHT_STORAGES; "auto": ChooseWeightStorage picks one
            # after folding, costed and rendered as rom until then); the golden execution is the same
            "weight_storage": ("s", False, STORAGE_ROM, set(WEIGHT_STORAGES) | {"auto"}),
            # codebook index bits (0: the fewest that hold W's distinct values)
            "codebook_bits": ("i", False, 0),
        }

    def get_weight_datatype(self) -> DataType:
        return DataType[self.get_nodeattr("weightDataType")]

    def get_accumulator_datatype(self) -> DataType:
        return DataType[self.get_nodeattr("accDataType")]

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("MW"),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("MH"),)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        return tuple(self._nv()) + (self.get_nodeattr("MW") // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return tuple(self._nv()) + (self.get_nodeattr("MH") // pe, pe)

    def calc_wmem(self) -> int:
        """Weight memory depth: MW*MH/(PE*SIMD) words of PE*SIMD*W bits."""
        return (self.get_nodeattr("MW") * self.get_nodeattr("MH")
                // (self.get_nodeattr("PE") * self.get_nodeattr("SIMD")))

    def calc_tmem(self) -> int:
        """Threshold memory depth MH/PE (0 without activation)."""
        if self.get_nodeattr("noActivation") == 1:
            return 0
        return self.get_nodeattr("MH") // self.get_nodeattr("PE")

    def verify_folding(self) -> list[str]:
        msgs = []
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        if mw % self.get_nodeattr("SIMD") != 0:
            msgs.append(f"MW={mw} is not divisible by SIMD={self.get_nodeattr('SIMD')}")
        if mh % self.get_nodeattr("PE") != 0:
            msgs.append(f"MH={mh} is not divisible by PE={self.get_nodeattr('PE')}")
        n_in = 2 if self.get_nodeattr("noActivation") == 1 else 3
        if len(self.onnx_node.input) != n_in:
            msgs.append(f"expected {n_in} inputs, found {len(self.onnx_node.input)}")
        return msgs

    def _execute(self, x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None) -> np.ndarray:
        mw = self.get_nodeattr("MW")
        if x.shape[-1] != mw:
            if self._nv() == [1] and prod(x.shape[1:]) == mw:
                x = x.reshape(x.shape[0], mw)
            else:
                raise ValueError(f"{self.onnx_node.name}: input {x.shape} does not end in MW={mw}")
        if self.get_nodeattr("noActivation") == 1:
            return mvau(x, W)
        y = mvau(x, W, T, self.get_nodeattr("ActVal"))
        if self.get_output_datatype() == DataType["BIPOLAR"]:
            y = bipolar_from_count(y)
        return y

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE", "SIMD", "ram_style", "resType", "mem_mode", "runtime_writeable_weights")
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("MatrixVectorActivation", "StreamingFCLayer_Batch")

    def emits_activation(self) -> bool:
        """With thresholds (a third input) the MVAU emits the next layer's activation codes."""
        return len(self.onnx_node.input) > 2 and bool(self.onnx_node.input[2])

    @classmethod
    def finn_difference_notes(cls, ours: Mapping[str, Any], finn_main: Mapping[str, Any],
                              mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
        """FINN minimises the accumulator and may retype the weights; its weight memory follows
        the weight-stream width cap; its LUT formula is that of its HLS unit."""
        if not finn_main:
            return []
        why: list[str] = []
        if ours.get("accDataType") != finn_main.get("accDataType"):
            why.append(f"accumulator: FINN minimised it to {finn_main.get('accDataType')} "
                       f"(ours {ours.get('accDataType')})")
        if ours.get("weightDataType") != finn_main.get("weightDataType"):
            why.append(f"weights: FINN {finn_main.get('weightDataType')} vs ours {ours.get('weightDataType')}")
        if mine["BRAM_18K"] != theirs["BRAM_18K"]:
            try:
                wbits = DataType[str(ours.get("weightDataType", ""))].bitwidth()
            except KeyError:
                wbits = 0
            width = int(ours.get("PE", 1)) * int(ours.get("SIMD", 1)) * wbits
            why.append(f"weight memory: stream width PE*SIMD*wbits = {width} bits (cap mvau_wwidth_max 36 per PE), "
                       f"FINN ram_style {finn_main.get('ram_style')}, mem_mode {finn_main.get('mem_mode')}")
        if mine["LUT"] != theirs["LUT"]:
            why.append("LUT model: ours models our RTL, FINN+'s is its HLS unit's formula")
        return why
    fold_dims = {"SIMD": ("MW", "MW"), "PE": ("MH", "MH")}
    in_fold_attr, out_fold_attr = "SIMD", "PE"
    layer_role = "weights"
    template = "codesign_mvau.v"
    rtl_inputs = ("W", "T")

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        inits = inits or {}
        what = str(a.get("name", "MVAU node"))
        idt = param_dt(a, "inputDataType", tensor_dt, "input", what)
        wdt = param_dt(a, "weightDataType", None, "weight", what)
        odt = param_dt(a, "outputDataType", tensor_dt, "output", what)
        W, T = inits.get("W"), inits.get("T")
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
            acc = DataType[a["accDataType"]].bitwidth()
        else:
            acc = int(mvau_acc_bits_worst(a["MW"], wdt.min(), wdt.max(), idt.min(), idt.max()))
        thr_var = None
        if W is not None and T is not None and n_thr and np.asarray(T).ndim == 2:
            bip = idt == DataType["BIPOLAR"] and wdt == DataType["BIPOLAR"]
            codes, accw = mvau_threshold_codes(W, T, int(idt.min()), int(idt.max()), bip)
            thr_var = rom_variable_bits(codes, accw)
        return dict(MW=int(a["MW"]), MH=int(a["MH"]), PE=int(a.get("PE", 1)), SIMD=int(a.get("SIMD", 1)),
                    Nv=prod_or_int(a.get("numInputVectors", [1])), wbits=wdt.bitwidth(), abits=idt.bitwidth(),
                    obits=odt.bitwidth(), acc_bits=acc, n_thr=n_thr,
                    ram_style=str(a.get("ram_style", "auto")), resType=str(a.get("resType", "lut")),
                    xnor=int(a.get("binaryXnorMode", 0)), wdt=wdt.name, idt=idt.name, odt=odt.name,
                    i_signed=int(idt.signed() and idt != DataType["BIPOLAR"]),
                    w_signed=int(wdt.signed() and wdt != DataType["BIPOLAR"]), thr_var=thr_var,
                    **_storage_params(a, W, wdt, idt, acc))

    @classmethod
    def cycles(cls, p):
        return mvau_cycles(p["MW"], p["MH"], p["PE"], p["SIMD"], p["Nv"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return mvau_storage_resources(p, dsp_family)

    #: the structural features the fitted RESOURCE_COEFFS multiply (bench_costmodel.py fits them)
    resource_features = staticmethod(mvau_resource_features)

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_mvau.v: the output register holds a fold's result 1 + DEPTH cycles after its
        last step, DEPTH = 4 + DSPL + TL + (NT > 0 ? 1 + clog2(NT) : 0); TL = clog2(SIMD*NPP)
        registered adder-tree levels, NPP = WBITS partial products per LUT multiply (1 for
        bipolar/XNOR/DSP products), DSPL = 1 registered DSP multiply; + 1 where the weight ROM
        is banked (read latency 2, ``wrom_out_reg``), + 2 with more than BANK_GROUP banks
        (``wrom_extra_latency``)."""
        def bipolar(dt_key: str, bits_key: str) -> np.ndarray:  # 1-bit operands are bipolar in the zoo
            return np.asarray(p[dt_key]) == "BIPOLAR" if dt_key in p else _i(p[bits_key]) == 1

        bip = bipolar("wdt", "wbits") | bipolar("idt", "abits") | (_i(p.get("xnor", 0)) != 0)
        dsp = (res_code(p["resType"]) == RES_DSP) & ~bip
        npp = np.where(bip | dsp, 1, _i(p["wbits"]))
        tl = _clog2(_i(p["SIMD"]) * npp)
        nt = _i(p["n_thr"])
        thr = np.where(nt > 0, 1 + _clog2(nt), 0)
        storage = str(p.get("weight_storage", STORAGE_ROM))
        if storage == STORAGE_CONSTANTS and "const_extl" in p:
            full = (_i(p["MW"]) // _i(p["SIMD"])) * (_i(p["MH"]) // _i(p["PE"])) == 1
            # DL = 1 + EXTL (the constant datapath) at full unfolding; other foldings are rom
            return np.where(full, 1 + 4 + _i(p["const_extl"]) + thr, 1 + 4 + dsp.astype(np.int64) + tl + thr)
        cbl = 1 if storage == STORAGE_CODEBOOK else 0  # the registered centroid lookup
        rom_bits = p.get("cb_bits", p["wbits"]) if storage == STORAGE_CODEBOOK else p["wbits"]
        rom = wrom_extra_latency(p["MW"], p["MH"], p["PE"], p["SIMD"], rom_bits, ram_code(p["ram_style"]))
        return 1 + 4 + cbl + rom + dsp.astype(np.int64) + tl + thr

    @classmethod
    def io_pattern(cls, p):
        """Per input vector: SF words taken during the first of the NF neuron-fold passes (the
        vector is then replayed from the input buffer), one PE word out at the end of each pass."""
        sf, nf, nv = int(p["MW"]) // int(p["SIMD"]), int(p["MH"]) // int(p["PE"]), int(p["Nv"])
        base = (np.arange(nv) * sf * nf)[:, None]
        cons = (base + np.arange(sf)[None, :]).ravel()
        prod_ = (base + (np.arange(nf) * sf + sf - 1)[None, :]).ravel()
        return nv * sf * nf, cons, prod_

    @classmethod
    def input_buffer_words(cls, p):
        """The RTL's input buffer holds two vectors: the next one loads while this one replays."""
        return int(p["MW"]) // int(p["SIMD"])

    @classmethod
    def fold_candidates(cls, p, grids, mvau_wwidth_max):
        """SIMD * weight bits stays within the weight-stream width cap (FINN's mvau_wwidth_max)."""
        grids = dict(grids)
        grids["SIMD"] = [s for s in grids["SIMD"] if s == 1 or s * int(p["wbits"]) <= mvau_wwidth_max]
        return grids

    @classmethod
    def op_and_param_counts(cls, p):
        ent = {f"op_mac_{p['idt']}_{p['wdt']}": p["MW"] * p["MH"] * p["Nv"],
               f"param_weight_{p['wdt']}": p["MW"] * p["MH"]}
        if p["n_thr"]:
            ent[f"param_threshold_INT{p['acc_bits']}"] = p["MH"] * p["n_thr"]
        return ent

    #: short name of the single-node example builder (``codesign.hw.opspecs.mvau_spec``)
    example_name = "mvau"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_mvau(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_mvau(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    MW, MH = int(_attr(a, "MW")), int(_attr(a, "MH"))
    PE, SIMD = int(_attr(a, "PE", 1)), int(_attr(a, "SIMD", 1))
    if MW % SIMD or MH % PE:
        raise FoldingError(f"{spec.name}: MW={MW} % SIMD={SIMD} and MH={MH} % PE={PE} must be 0")
    idt, wdt, odt = dtype(_attr(a, "inputDataType")), dtype(_attr(a, "weightDataType")), dtype(_attr(a, "outputDataType"))
    W = np.asarray(spec.inits["W"]).astype(np.float64)
    if W.shape != (MW, MH) or not np.all(W == np.round(W)):
        raise UnsupportedError(f"{spec.name}: W must be an integer ({MW}, {MH}) array, got {W.shape}")
    W = W.astype(np.int64)
    if W.min() < wdt.lo or W.max() > wdt.hi or (wdt.bipolar and not np.all(np.abs(W) == 1)):
        raise UnsupportedError(f"{spec.name}: weights outside {wdt.name}")
    T = spec.inits.get("T")
    no_act = int(_attr(a, "noActivation", 0)) == 1 or T is None
    xnor = idt.bipolar and wdt.bipolar
    if int(_attr(a, "binaryXnorMode", 0)) == 1 and not xnor:
        raise UnsupportedError(f"{spec.name}: binaryXnorMode=1 needs bipolar inputs and weights")
    act_val = int(_attr(a, "ActVal", 0))
    SF, NF = MW // SIMD, MH // PE
    nv = _prod(_attr(a, "numInputVectors", [1]))

    # exact accumulator range per column
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    acc_hi = (Wp * idt.hi + Wn * idt.lo).sum(axis=0)
    acc_lo = (Wp * idt.lo + Wn * idt.hi).sum(axis=0)
    lo, hi = int(acc_lo.min()), int(acc_hi.max())
    NT = 0
    Tq = None
    if xnor:
        lo, hi = 0, MW + 1
    if not no_act:
        T = np.asarray(T, dtype=np.float64)
        if T.ndim != 2:
            raise UnsupportedError(f"{spec.name}: T must be 2-D (MH, n)")
        if T.shape[0] == 1 and MH != 1:
            T = np.broadcast_to(T, (MH, T.shape[1]))
        if T.shape[0] != MH:
            raise UnsupportedError(f"{spec.name}: T has {T.shape[0]} rows, MH={MH}")
        NT = T.shape[1]
        Tc = np.ceil(T).astype(np.int64)  # acc is an integer: acc >= t  <=>  acc >= ceil(t)
        if xnor:
            # acc = 2p - MW  =>  acc >= t  <=>  p >= ceil((t + MW) / 2)
            Tq = np.clip(-((-(Tc + MW)) // 2), 0, MW + 1)
        else:
            Tq = np.clip(Tc, acc_lo[:, None], acc_hi[:, None] + 1)
            lo, hi = min(lo, int(Tq.min())), max(hi, int(Tq.max()))
        if odt.bipolar:
            if NT != 1:
                raise UnsupportedError(f"{spec.name}: bipolar output needs exactly 1 threshold, got {NT}")
            out_lo, out_hi = 0, 1
            act_param = 0
        else:
            out_lo, out_hi = act_val, act_val + NT
            act_param = act_val
        if out_lo < odt.lo and not odt.bipolar or (out_hi > odt.hi and not odt.bipolar):
            raise UnsupportedError(f"{spec.name}: activation range [{out_lo}, {out_hi}] does not fit {odt.name}")
    else:
        act_param = 0
        olo, ohi = int(acc_lo.min()), int(acc_hi.max())
        if olo < odt.lo or ohi > odt.hi:
            raise UnsupportedError(f"{spec.name}: accumulator range [{olo}, {ohi}] does not fit {odt.name}")
    accw = signed_bits(lo, hi)

    style = _ram_style(a)
    base = f"{ctx.top}_{inst}"
    storage = weight_storage_of(spec.name, a, W, wdt, xnor, SF, NF)
    ports, ties = [], []
    cb_params: dict[str, Any] = {}
    cdot = None
    wrom_lat, wrom_reg = 1, False
    extra_files: list[str] = []
    if storage.mode == STORAGE_CONSTANTS:
        # SF = NF = 1: the weights become constant shift-add logic beside the core, no ROM
        ties += [{"name": "wmem_q", "value": f"{PE * SIMD * wdt.bits}'d0"},
                 {"name": "wmem_addr", "value": ""}, {"name": "wmem_en", "value": ""}]
        cfile, cd = _gen_constant_dot(ctx, base, spec.name, W, idt, wdt, accw)
        extra_files.append(cfile)
        cdot = {"module": f"{base}_cdot", "x_width": SIMD * idt.bits, "q_width": PE * accw}
        cb_params = {"EXTDOT": 1, "EXTL": cd.latency}
    else:
        ties += [{"name": "dot_x", "value": ""}, {"name": "dot_en", "value": ""},
                 {"name": "dot_q", "value": "0"}]
        if storage.mode == STORAGE_CODEBOOK:
            wcodes, ebits = storage.indices.astype(object), storage.kbits
            cb_params = {"CB": 1, "KBITS": storage.kbits, "CBOOK": storage.cbook_literal(wdt.bits)}
        else:
            wcodes, ebits = _codes(W, wdt.bits, wdt.bipolar), wdt.bits
        wroms = []
        wrom_lat = 1 + int(wrom_extra_latency(MW, MH, PE, SIMD, ebits, ram_code(str(_attr(a, "ram_style", "auto")))))
        wrom_reg = wrom_lat > 1
        bd = int(bram_depth(SIMD * ebits))  # banked ROM: one block RAM deep per bank
        for p in range(PE):
            # address nf*SF + sf holds W[sf*SIMD + k, nf*PE + p], k = 0..SIMD-1 (its code or index)
            rows = [wcodes[sf * SIMD:(sf + 1) * SIMD, nf * PE + p] for nf in range(NF) for sf in range(SF)]
            rom = {"name": f"wrom{p}", "width": SIMD * ebits, "depth": NF * SF, "style": style}
            if wrom_reg:
                rom["banks"] = [{"depth": len(rows[b:b + bd]), "file": ctx.write_data(
                    f"{base}_w{p}_b{b // bd}.dat",
                    _hex_lines(np.array(rows[b:b + bd], dtype=object), ebits, SIMD * ebits))}
                    for b in range(0, len(rows), bd)]
                rom["bank_bits"] = bd.bit_length() - 1
                if wrom_lat == 3:  # the bank select in two registered levels (``BANK_GROUP``)
                    nb = len(rom["banks"])
                    rom["groups"] = [list(range(g, min(g + BANK_GROUP, nb))) for g in range(0, nb, BANK_GROUP)]
                    rom["group_bits"] = BANK_GROUP.bit_length() - 1
            else:
                rom["file"] = ctx.write_data(f"{base}_w{p}.dat",
                                             _hex_lines(np.array(rows, dtype=object), ebits, SIMD * ebits))
            wroms.append(rom)
        ports = [_rom_port("wmem", wroms, max(1, math.ceil(math.log2(NF * SF))) if NF * SF > 1 else 1)]
    if NT:
        troms = []
        tcodes = _codes(Tq, accw)
        for p in range(PE):
            rows = [tcodes[nf * PE + p, :] for nf in range(NF)]
            fn = ctx.write_data(f"{base}_t{p}.dat", _hex_lines(np.array(rows, dtype=object), accw, NT * accw))
            troms.append({"name": f"trom{p}", "width": NT * accw, "depth": NF, "file": fn, "style": style})
        ports.append(_rom_port("tmem", troms, max(1, math.ceil(math.log2(NF))) if NF > 1 else 1))
    else:
        ties.append({"name": "tmem_q", "value": f"{PE * accw}'d0"})
    params = _p({
        "MW": MW, "MH": MH, "PE": PE, "SIMD": SIMD, "IBITS": idt.bits, "WBITS": wdt.bits, "OBITS": odt.bits,
        "ACCW": accw, "I_SIGNED": idt.signed, "I_BIPOLAR": idt.bipolar, "W_SIGNED": wdt.signed,
        "W_BIPOLAR": wdt.bipolar, "XNOR": xnor, "USE_DSP": str(_attr(a, "resType", "lut")).lower() == "dsp",
        "NT": NT, "ACTVAL": act_param, "WROM_LAT": wrom_lat, **cb_params,
    })
    in_s = _stream(idt, SIMD, nv * SF)
    out_s = _stream(odt, PE, nv * NF)
    fname = ctx.render("rom_node.v.j2", f"{base}.v", node_name=spec.name, op_type=spec.op_type, module=base,
                       core="codesign_mvau", in_width=in_s.width, out_width=out_s.width, rom_ports=ports,
                       tie_ports=ties, params=params, cdot=cdot)
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, extra_files + [fname], MVAU.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "mvau", MW: int = 16, MH: int = 8, PE: int = 1, SIMD: int = 1, idt: str = "UINT4",
              wdt: str = "INT4", odt: str = "UINT4", nthr: int | None = None, res_type: str = "lut",
              ram_style: str = "auto", seed: int = 0) -> HWNodeSpec:
    """An MVAU with random weights; `nthr` thresholds per row (default 2**bits(odt) - 1; 0: no activation)."""
    rng = np.random.default_rng(seed)
    W = rand_values(rng, wdt, (MW, MH))
    xnor = idt == wdt == "BIPOLAR"
    if nthr is None:
        nthr = 1 if odt == "BIPOLAR" else (1 << dt_bits(odt)) - 1
    attrs: dict[str, Any] = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt,
                                 outputDataType=odt, ActVal=0, noActivation=int(nthr == 0), binaryXnorMode=int(xnor),
                                 numInputVectors=[1], resType=res_type, ram_style=ram_style, mem_mode="const")
    inits: dict[str, np.ndarray] = {"W": W}
    if nthr:
        if xnor:
            lo, hi = -MW, MW
        else:
            xl = -1 if idt == "BIPOLAR" else (-(1 << (dt_bits(idt) - 1)) if idt.startswith("INT") else 0)
            xh = 1 if idt == "BIPOLAR" else ((1 << (dt_bits(idt) - 1)) - 1 if idt.startswith("INT") else (1 << dt_bits(idt)) - 1)
            acc_hi = (np.maximum(W, 0) * xh + np.minimum(W, 0) * xl).sum(0)
            acc_lo = (np.maximum(W, 0) * xl + np.minimum(W, 0) * xh).sum(0)
            lo, hi = int(acc_lo.min()), int(acc_hi.max())
        span = max(hi - lo, 1)
        # thresholds spread over the middle of the accumulator range, sorted per row
        T = np.sort(rng.integers(lo + span // 4, hi - span // 4 + 1, size=(MH, nthr)), axis=1)
        inits["T"] = T.astype(np.float64)
    return HWNodeSpec(name, "MVAU", attrs, inits)

