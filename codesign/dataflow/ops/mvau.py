"""MVAU (matrix-vector-activation unit): everything about the op in one place.

Golden execution, shapes, the cycle and resource model of ``accel_templates/codesign_mvau.v``,
folding rules, FINN names and the RTL generator (weights and thresholds into per-PE ROMs).
"""

from __future__ import annotations

import math
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
    "LUT": [25.0643, 0.8561, 1.3036, 0.1584, 0.9815, 0.416, 2.629, 0.1664, 1.6807, 0.3956],
    "FF": [18.4807, 1.0904, 2.1642, 0.6289, 1.8442, 0.0, 0.9034],
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
    tree = (nleaf - 1) * tow                                 # adder bits = register bits per PE
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


def _rom_lut(depth: Any, width: Any, in_lut: Any) -> np.ndarray:
    """LUTs of a ROM Yosys leaves in logic: one LUT6 per 64 words per output bit."""
    return np.where(in_lut & (_i(depth) > 0), _i(width) * cdiv(depth, 64), 0)


def mvau_resource_features(p: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """Structural LUT / FF features of one MVAU (the columns RESOURCE_COEFFS multiplies).

    LUT: [1, adder-tree bits, leaf logic bits, accumulator bits, compare bits, popcount bits,
    input-buffer LUTRAM, weight/threshold ROM LUTs, output bits, ROM mux-tree LUTs]; all per PE
    times PE except the shared input buffer (SIMD*A bits x 2 vectors, 64 words per LUT) and the
    ROMs (in logic: 64 words per LUT6 per bit, times clog2(depth/64) for the mux tree).
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
           mem["rom_mux"]]
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
    wd, ww = s["wmem"], s["Q"] * s["W"]
    td, tw = s["tmem"], s["nt"] * s["acc"]
    in_bw = (rs == RAM_BLOCK) | ((rs == RAM_AUTO) & rom_auto_in_bram(wd, ww))
    ibuf_bram = np.where(ram_auto_in_bram(s["ibuf_words"], s["Q"] * s["A"]),
                         bram18_count(s["ibuf_words"], s["Q"] * s["A"]), 0)
    bram = P * np.where(in_bw, rom_bram18(wd, ww), 0) + ibuf_bram
    rom_lut = P * _rom_lut(wd, ww, ~in_bw)
    # a ROM deeper than one LUT6 also needs a mux tree of clog2(depth/64) levels per bit
    rom_mux = P * (_rom_lut(wd, ww, ~in_bw) * _clog2(cdiv(wd, 64)))
    thr = _thr_roms(P, rs, td, tw, s["nt"], p.get("thr_var"))
    return {"BRAM_18K": bram + thr["BRAM_18K"], "rom_lut": rom_lut + thr["rom_lut"], "rom_mux": rom_mux + thr["rom_mux"],
            "thr_bits": thr["bits"], "ibuf_bram": ibuf_bram, "bits": P * (wd * ww + td * tw)}


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
    for w in widths:
        if w <= 0:
            continue
        if rs == RAM_BLOCK or (rs == RAM_AUTO and bool(rom_auto_in_bram(depth, w))):
            bram += int(rom_bram18(depth, w))
        else:
            n = w * -(-depth // 64)
            lut += n
            mux += n * int(_clog2(-(-depth // 64)))
    return bram, lut, mux, int(sum(widths))


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
                   xnor: Any = 0, dsp_family: Any = 0, thr_var: Mapping[int, tuple[int, ...]] | None = None,
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
    s = _mvau_struct(MW, MH, PE, SIMD, wbits, abits, obits, acc_bits, n_thr, res_code(res_type), xnor, i_signed,
                     w_signed)
    f = mvau_resource_features(p)
    lut = sum(c * np.asarray(x, np.float64) for c, x in zip(RESOURCE_COEFFS["LUT"], f["LUT"]))
    ff = np.rint(sum(c * np.asarray(x, np.float64) for c, x in zip(RESOURCE_COEFFS["FF"], f["FF"]))).astype(np.int64)
    mem = _mvau_memories(p, s)
    dsp = np.where(s["use_dsp"], s["P"] * s["Q"], 0)
    return res_out(lut, ff, mem["BRAM_18K"], np.zeros_like(dsp), dsp, mem["bits"])


def mvau_cost(MW: Any, MH: Any, PE: Any, SIMD: Any, Nv: Any, wbits: Any, abits: Any, obits: Any,
              acc_bits: Any, n_thr: Any, ram_style: Any = 0, res_type: Any = 0,
              xnor: Any = 0, dsp_family: Any = 0) -> dict[str, np.ndarray]:
    """Cycles and resources in one dict (the formula-level entry point the tests use)."""
    out = mvau_resources(MW, MH, PE, SIMD, wbits, abits, obits, acc_bits, n_thr, ram_style, res_type, xnor,
                         dsp_family)
    out["cycles"] = mvau_cycles(MW, MH, PE, SIMD, Nv)
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
                    w_signed=int(wdt.signed() and wdt != DataType["BIPOLAR"]), thr_var=thr_var)

    @classmethod
    def cycles(cls, p):
        return mvau_cycles(p["MW"], p["MH"], p["PE"], p["SIMD"], p["Nv"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return mvau_resources(p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"],
                              p["acc_bits"], p["n_thr"], ram_code(p["ram_style"]), res_code(p["resType"]),
                              p["xnor"], dsp_family, p.get("thr_var"), p.get("i_signed", 0), p.get("w_signed", 1))

    #: the structural features the fitted RESOURCE_COEFFS multiply (bench_costmodel.py fits them)
    resource_features = staticmethod(mvau_resource_features)

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_mvau.v: the output register holds a fold's result 1 + DEPTH cycles after its
        last step, DEPTH = 4 + DSPL + TL + (NT > 0 ? 1 + clog2(NT) : 0); TL = clog2(SIMD*NPP)
        registered adder-tree levels, NPP = WBITS partial products per LUT multiply (1 for
        bipolar/XNOR/DSP products), DSPL = 1 registered DSP multiply."""
        def bipolar(dt_key: str, bits_key: str) -> np.ndarray:  # 1-bit operands are bipolar in the zoo
            return np.asarray(p[dt_key]) == "BIPOLAR" if dt_key in p else _i(p[bits_key]) == 1

        bip = bipolar("wdt", "wbits") | bipolar("idt", "abits") | (_i(p.get("xnor", 0)) != 0)
        dsp = (res_code(p["resType"]) == RES_DSP) & ~bip
        npp = np.where(bip | dsp, 1, _i(p["wbits"]))
        tl = _clog2(_i(p["SIMD"]) * npp)
        nt = _i(p["n_thr"])
        thr = np.where(nt > 0, 1 + _clog2(nt), 0)
        return 1 + 4 + dsp.astype(np.int64) + tl + thr

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
    wroms = []
    wcodes = _codes(W, wdt.bits, wdt.bipolar)
    for p in range(PE):
        # address nf*SF + sf holds W[sf*SIMD + k, nf*PE + p], k = 0..SIMD-1
        rows = [wcodes[sf * SIMD:(sf + 1) * SIMD, nf * PE + p] for nf in range(NF) for sf in range(SF)]
        fn = ctx.write_data(f"{base}_w{p}.dat", _hex_lines(np.array(rows, dtype=object), wdt.bits, SIMD * wdt.bits))
        wroms.append({"name": f"wrom{p}", "width": SIMD * wdt.bits, "depth": NF * SF, "file": fn, "style": style})
    ports = [_rom_port("wmem", wroms, max(1, math.ceil(math.log2(NF * SF))) if NF * SF > 1 else 1)]
    ties = []
    if NT:
        troms = []
        tcodes = _codes(Tq, accw)
        for p in range(PE):
            rows = [tcodes[nf * PE + p, :] for nf in range(NF)]
            fn = ctx.write_data(f"{base}_t{p}.dat", _hex_lines(np.array(rows, dtype=object), accw, NT * accw))
            troms.append({"name": f"trom{p}", "width": NT * accw, "depth": NF, "file": fn, "style": style})
        ports.append(_rom_port("tmem", troms, max(1, math.ceil(math.log2(NF))) if NF > 1 else 1))
    else:
        ties = [{"name": "tmem_q", "value": f"{PE * accw}'d0"}]
    params = _p({
        "MW": MW, "MH": MH, "PE": PE, "SIMD": SIMD, "IBITS": idt.bits, "WBITS": wdt.bits, "OBITS": odt.bits,
        "ACCW": accw, "I_SIGNED": idt.signed, "I_BIPOLAR": idt.bipolar, "W_SIGNED": wdt.signed,
        "W_BIPOLAR": wdt.bipolar, "XNOR": xnor, "USE_DSP": str(_attr(a, "resType", "lut")).lower() == "dsp",
        "NT": NT, "ACTVAL": act_param,
    })
    in_s = _stream(idt, SIMD, nv * SF)
    out_s = _stream(odt, PE, nv * NF)
    fname = ctx.render("rom_node.v.j2", f"{base}.v", node_name=spec.name, op_type=spec.op_type, module=base,
                       core="codesign_mvau", in_width=in_s.width, out_width=out_s.width, rom_ports=ports,
                       tie_ports=ties, params=params)
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, [fname], MVAU.rtl_cycles(spec))


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

