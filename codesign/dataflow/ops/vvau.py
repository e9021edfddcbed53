"""VVAU (vector-vector-activation unit): depthwise convolution, everything about the op in one place.

Golden execution, shapes, the cycle and resource model of ``accel_templates/codesign_vvau.v``,
the folding rules (PE over channels, SIMD over the kernel), FINN names and the RTL generator.

Stream order (the decision, docs/contracts.md "The op interface"): the VVAU reads the sliding
window's output exactly as that op writes it, ``(kh, kw, c)`` with ``c`` innermost, so no
reordering unit sits between them. A word holds ``SIMD*PE`` consecutive elements of that order:
with ``SIMD = 1`` it is PE channels at one kernel position (the sliding window's SIMD equals the
VVAU's PE); ``SIMD > 1`` needs ``PE = C`` (a word is SIMD whole kernel positions, a width converter
widens the window's words). The channel accumulators of one window are kept in a small RAM, one
entry per channel fold, so the unit never buffers the window and needs one clock per word.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import RES_DSP, _i, bram18_count, cdiv, res_code, res_out
from codesign.dataflow.golden import _int, multithreshold
from codesign.dataflow.ops.base import (BRAM18_COST, LUTRAM_COST, HWCustomOp, _clog2, param_dt, pe_rom_memories,
                                        prod_or_int, rom_distinct_columns, rom_variable_bits)
from codesign.dataflow.ops.rtlgen import (HWNodeSpec, NodeRTL, _attr, _codes, _hex_lines, _p, _prod, _ram_style,
                                          _rom_port, _stream, dt_bits, dtype, signed_bits)
from codesign.dataflow.ops.thresholding import popcount_tree_bits
from codesign.errors import FoldingError, UnsupportedError

#: input + weight bits from which Yosys maps a lane's multiply to a DSP48E1 (as for the matrix unit)
DSP_MIN_BITS = 8
#: registers between an input word and its output word around the dot-product tree and the
#: thresholds (codesign_vvau.v: x1, x2, the dot register, the finished sum, the output register);
#: ``vvau_pipeline_depth`` adds the DSP product, the tree levels and the activation
PIPE_DEPTH = 5


# --------------------------------------------------------------------------- golden

def vvau(x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None, act_val: int = 0) -> np.ndarray:
    """Depthwise dot products of sliding windows: x (..., K*C) in (k, c) order, W (K, C);
    acc[..., c] = sum_k x[..., k*C + c] * W[k, c], then optional thresholds T (C, n). Exact."""
    W = _int(W)
    K, C = W.shape
    xi = _int(x)
    acc = (xi.reshape(*xi.shape[:-1], K, C) * W).sum(axis=-2)
    if T is None:
        return acc
    return multithreshold(acc, T, act_val)


# --------------------------------------------------------------------------- cycle and resource model

def vvau_struct(p: Any) -> dict[str, np.ndarray]:
    """What codesign_vvau.v builds per PE, as its localparams: the RTL's DSP multiply (resType
    dsp, whatever Yosys then maps), NLEAF = SIMD * NPP leaves of PW bits (NPP = WBITS
    shift-and-add partial products per LUT multiply, 1 with the DSP product) in one registered
    tree of TL = clog2(NLEAF) levels and TOW = min(PW + TL, ACCW) bits."""
    Q, W_, A_, acc = _i(p["SIMD"]), _i(p["wbits"]), _i(p["abits"]), _i(p["acc_bits"])
    rtl_dsp = _i(res_code(p["resType"])) == RES_DSP
    npp = np.where(rtl_dsp, 1, W_)
    nleaf = Q * npp
    pw = W_ + A_ + 2
    tl = _clog2(nleaf)
    return dict(rtl_dsp=rtl_dsp, nleaf=nleaf, pw=pw, tl=tl, tow=np.minimum(pw + tl, acc))


def vvau_act_depth(n_thr: Any) -> np.ndarray:
    """Stages the thresholds add after the finished sum (codesign_vvau.v, as in
    codesign_thresholding.v): one of registered compares and the clog2(NT) levels of the
    registered popcount tree; 0 without thresholds (the sum is truncated into the output)."""
    nt = _i(n_thr)
    return np.where(nt > 0, 1 + _clog2(np.maximum(nt, 1)), 0)


def vvau_pipeline_depth(p: Any) -> np.ndarray:
    """DEPTH of codesign_vvau.v's header: 5 + DSPL + TL + (NT > 0 ? 1 + clog2(NT) : 0) cycles from
    the input word that completes a channel fold's sum to its output word in the register."""
    s = vvau_struct(p)
    return PIPE_DEPTH + s["rtl_dsp"].astype(np.int64) + s["tl"] + vvau_act_depth(p["n_thr"])


def vvau_cycles(K: Any, C: Any, PE: Any, SIMD: Any, Nv: Any) -> np.ndarray:
    """Nv * (K/SIMD) * (C/PE): one word of SIMD kernel positions x PE channels per clock."""
    return _i(Nv) * (_i(K) // _i(SIMD)) * (_i(C) // _i(PE))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``vvau_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single VVAU nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [0.0, 4.7289, 0.0, 0.5109, 1.0072, 0.0, 1.0441, 0.0997, 1.2759, 0.2998, 0.0, 2.0605],
    "FF": [0.0, 0.0, 1.4456, 1.7914, 0.6825, 0.9334, 1.013, 1.0986, 1.1253],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def _acc_mem(P: Any, CF: Any, acc: Any) -> dict[str, np.ndarray]:
    """The channel accumulators of codesign_vvau.v: per PE a RAM of 2^clog2(CF) words x ACCW
    bits (one synchronous write, one asynchronous read from a registered address, no
    ram_style). Yosys 0.23 maps it to RAM32M (6 bits of 32 words, 4 LUTs) or RAM64M (3 bits of
    64 words, 4 LUTs, a mux per bit over the 64-word banks) unless that costs it more than block
    RAM: LUTRAM primitives at 8 each plus one per bit and 4 banks of the mux (LUTs) against 129
    per RAMB18 (``ram_auto_in_bram``'s costs; the mux term from measured mappings: 256 x 11 in a
    RAMB18, 256 x 5 and 128 x 10 in RAM64Ms); CF = 1 is a register."""
    d = np.where(_i(CF) > 1, 1 << _clog2(_i(CF)), 1)
    acc = _i(acc)
    banks = cdiv(d, 64)
    prims = np.where(d <= 32, cdiv(acc, 6), banks * cdiv(acc, 3))
    cost = LUTRAM_COST * prims + acc * cdiv(banks - 1, 4)
    in_bram = (d > 1) & (cost > BRAM18_COST * bram18_count(d, acc))
    lutram = np.where(d <= 1, 0, 4 * prims)
    return {"BRAM_18K": np.where(in_bram, _i(P) * bram18_count(d, acc), 0),
            "LUTRAM": np.where(in_bram, 0, _i(P) * lutram), "reg": np.where(d <= 1, _i(P) * acc, 0)}


def _vvau_memories(p: Any) -> dict[str, np.ndarray]:
    """The wrapper's ROMs (``pe_rom_memories``, shared with the threshold op): per PE a weight ROM
    of K*C/(PE*SIMD) words x SIMD*W bits and, with thresholds, a threshold ROM of C/PE words x
    NT*ACCW bits, each trimmed to its varying bits (``w_var`` for SIMD = 1, ``thr_var``)."""
    P, Q = _i(p["PE"]), _i(p["SIMD"])
    K, C = _i(p["K"]), _i(p["C"])
    wd, ww = (K * C) // (P * Q), Q * _i(p["wbits"])
    simd1 = bool(np.all(Q == 1))  # the weight tables describe the SIMD = 1 layout
    wm = pe_rom_memories(P, p["ram_style"], wd, ww, p.get("w_var") if simd1 else None,
                         p.get("w_cols") if simd1 else None)
    nt = _i(p["n_thr"])
    tm = pe_rom_memories(P, p["ram_style"], np.where(nt > 0, C // P, 0), nt * _i(p["acc_bits"]), p.get("thr_var"),
                         p.get("thr_cols"))
    return {k: wm[k] + tm[k] for k in wm}


def vvau_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_vvau.v in its rom_node wrapper (the columns of
    RESOURCE_COEFFS).

    Synthesis keeps the hierarchy, so the core is generic in its ROM contents: per PE the input
    and weight words registered twice (x1 + the ROM's read register, x2 + wq2), one registered
    adder tree over the SIMD*NPP leaves (``vvau_struct``: shift-and-add partial products, an AND
    of the extended input with a weight bit each; with resType dsp a registered multiply per
    lane instead, in a DSP48 when W + A >= 8, else a LUT multiply), the dot register and the
    accumulate adder (ACCW bits) into the finished sum, then with thresholds the activation as
    in the threshold op: the threshold word registered (all NT*ACCW bits per PE: the core
    never sees the ROM contents), NT registered compares of the sum against it (ACCW bits each)
    and the registered popcount tree of the compare bits (``popcount_tree_bits``, shared with
    the threshold-op model); the accumulator RAM (``_acc_mem``), the counters (kernel fold,
    channel fold, weight address: its register once per PE) and the per-stage control (valid,
    first, last, channel fold).
    The wrapper's ROMs (``_vvau_memories``) keep only their varying bits.
    LUT: [1, PE (per-lane control: the accumulate select, the output enable), LUT-multiply bits
    (resType dsp below the DSP width), adder bits (tree + accumulate), compare bits,
    accumulator-RAM LUTs, ROM LUTs, ROM mux LUTs, counter bits, output bits, popcount bits, leaf
    bits]. FF: [1, input, weight and product registers, the ACCW registers per PE (dotr, sum_s;
    + the accumulator when CF = 1; dotr in the DSP48's PREG with a DSP product and SIMD = 1),
    output bits, counter and per-stage control bits (the weight address once per PE: one copy per
    PE's ROM, so that synthesis cannot merge a shallow ROM's read registers), read registers of
    the ROMs left in logic,
    threshold-word register bits, compare + popcount registers, tree registers]."""
    P, Q = _i(p["PE"]), _i(p["SIMD"])
    W_, A_, acc, nt = _i(p["wbits"]), _i(p["abits"]), _i(p["acc_bits"]), _i(p["n_thr"])
    K, C = _i(p["K"]), _i(p["C"])
    KF, CF = K // Q, C // P
    st = vvau_struct(p)
    rtl_dsp = st["rtl_dsp"]
    use_dsp = rtl_dsp & (W_ + A_ >= DSP_MIN_BITS)
    pw = st["pw"]
    mult = np.where(rtl_dsp & ~use_dsp, P * Q * (W_ + 1) * (A_ + 1), 0)
    leaf = np.where(rtl_dsp, 0, P * st["nleaf"] * (A_ + 1))
    tree = P * (st["nleaf"] - 1) * st["tow"]
    kfw, cfw, waw = (np.maximum(_clog2(x), 1) for x in (KF, CF, KF * CF))
    dl = 2 + rtl_dsp.astype(np.int64) + st["tl"]
    am = _acc_mem(P, CF, acc)
    mem = _vvau_memories(p)
    out_bits = np.where(nt > 0, _i(p["obits"]), np.minimum(_i(p["obits"]), acc))
    pop = np.where(nt > 0, popcount_tree_bits(nt), 0)
    one = np.ones_like(P)
    lut = [one, P, mult, tree + P * acc, P * nt * acc, am["LUTRAM"], mem["LUTRAM"], mem["mux"], kfw + cfw + waw,
           P * out_bits, P * pop, leaf]
    # a DSP product sits in the DSP48 (MREG) and, SIMD = 1, the dot register too (PREG)
    ff = [one, 2 * Q * P * A_ + P * Q * W_ + np.where(rtl_dsp & ~use_dsp, P * Q * pw, 0),
          np.where(use_dsp & (Q == 1), 1, 2) * P * acc + am["reg"], P * out_bits, kfw + P * waw + (dl + 1) * (cfw + 3),
          mem["q_bits"], P * nt * acc, P * (nt + pop), tree]
    return {"LUT": lut, "FF": ff}


def vvau_resources(p: Any) -> dict[str, np.ndarray]:
    """Resources of codesign_vvau.v in its wrapper as Yosys 0.23 maps it: LUT / FF are
    ``vvau_resource_features`` times the fitted RESOURCE_COEFFS; BRAM18 the wrapper ROMs placed
    as Yosys does (``pe_rom_memories``) plus the accumulator RAMs where Yosys prefers block RAM
    (``_acc_mem``: 256 x 11 and up);
    DSP: PE*SIMD with resType=dsp when W + A >= 8 (the products of the DSP variant)."""
    f = vvau_resource_features(p)
    P, Q = _i(p["PE"]), _i(p["SIMD"])
    mem = _vvau_memories(p)
    am = _acc_mem(P, _i(p["C"]) // P, _i(p["acc_bits"]))
    use_dsp = (_i(res_code(p["resType"])) == RES_DSP) & (_i(p["wbits"]) + _i(p["abits"]) >= DSP_MIN_BITS)
    ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
    return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, mem["BRAM_18K"] + am["BRAM_18K"], mem["URAM"],
                   np.where(use_dsp, P * Q, 0), mem["bits"])


def vvau_threshold_codes(W: np.ndarray, T: np.ndarray | None, ilo: int, ihi: int) -> tuple[np.ndarray | None, int]:
    """The thresholds as ``_gen_vvau`` stores them, (C, NT) integers (ceiled, clipped to each
    channel's reachable accumulator range; the ROM holds them as ACCW-bit two's complement),
    and the accumulator width ACCW of the RTL (holds every sum and threshold; T None: the sums
    only). The generator calls this, so the model's ROM contents are the RTL's."""
    W = np.asarray(W, dtype=np.float64).astype(np.int64)
    C = W.shape[1]
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    acc_hi = (Wp * ihi + Wn * ilo).sum(axis=0)
    acc_lo = (Wp * ilo + Wn * ihi).sum(axis=0)
    lo, hi = min(int(acc_lo.min()), 0), max(int(acc_hi.max()), 0)
    if T is None:
        return None, signed_bits(lo, hi)
    T = np.asarray(T, dtype=np.float64)
    if T.shape[0] == 1 and C != 1:
        T = np.broadcast_to(T, (C, T.shape[1]))
    Tq = np.clip(np.ceil(T).astype(np.int64), acc_lo[:, None], acc_hi[:, None] + 1)
    lo, hi = min(lo, int(Tq.min())), max(hi, int(Tq.max()))
    return Tq, signed_bits(lo, hi)


# --------------------------------------------------------------------------- the op

class VVAU(HWCustomOp):
    """Depthwise conv on sliding windows: acc[c] = sum_k x[k, c] * W[k, c], then optionally
    ``out = ActVal + #{acc >= T[c, i]}``; input (N, OH, OW, K*C), output (N, OH, OW, C)."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "Channels": ("i", True, 0),
            "Kernel": ("ints", True, []),
            #: kh*kw (the dimension SIMD folds; a scalar so the folding checks can divide it)
            "KernelSize": ("i", True, 0),
            "PE": ("i", False, 1),
            "SIMD": ("i", False, 1),
            "inputDataType": ("s", True, ""),
            "weightDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "accDataType": ("s", False, "INT32"),
            "noActivation": ("i", False, 0, {0, 1}),
            "ActVal": ("i", False, 0),
            "numInputVectors": ("ints", False, [1]),
            "ram_style": ("s", False, "auto"),
            "resType": ("s", False, "lut", {"auto", "lut", "dsp"}),
            "mem_mode": ("s", False, "internal_embedded"),
        }

    def _k(self) -> int:
        return int(self.get_nodeattr("KernelSize"))

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_weight_datatype(self) -> DataType:
        return DataType[self.get_nodeattr("weightDataType")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self._k() * self.get_nodeattr("Channels"),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("Channels"),)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        w = self.get_nodeattr("SIMD") * self.get_nodeattr("PE")
        return tuple(self._nv()) + (self._k() * self.get_nodeattr("Channels") // w, w)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return tuple(self._nv()) + (self.get_nodeattr("Channels") // pe, pe)

    def verify_folding(self) -> list[str]:
        return folding_errors(self._k(), self.get_nodeattr("Channels"), self.get_nodeattr("PE"),
                              self.get_nodeattr("SIMD"))

    def _execute(self, x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None) -> np.ndarray:
        if self.get_nodeattr("noActivation") == 1:
            return vvau(x, W)
        return vvau(x, W, T, self.get_nodeattr("ActVal"))

    # -- the op's models -----------------------------------------------------------------------
    finn_op_type = "VVAU"
    finn_folding_attrs = ("PE", "SIMD", "ram_style", "resType", "mem_mode")
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("VectorVectorActivation", "Vector_Vector_Activation_Batch")
    fold_dims = {"PE": ("Channels", "C"), "SIMD": ("KernelSize", "K")}
    in_fold_attr, out_fold_attr = "PE", "PE"
    layer_role = "weights"
    template = "codesign_vvau.v"
    extra_templates = ("codesign_adder_tree.v",)
    rtl_inputs = ("W", "T")

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        inits = inits or {}
        what = str(a.get("name", "VVAU node"))
        idt = param_dt(a, "inputDataType", tensor_dt, "input", what)
        wdt = param_dt(a, "weightDataType", None, "weight", what)
        odt = param_dt(a, "outputDataType", tensor_dt, "output", what)
        K, C = int(a["KernelSize"]), int(a["Channels"])
        W, T = inits.get("W"), inits.get("T")
        noact = int(a.get("noActivation", 0 if T is not None else 1))
        n_thr = 0 if noact else (int(np.asarray(T).shape[-1]) if T is not None else 2 ** odt.bitwidth() - 1)
        extra: dict[str, Any] = {}
        if W is not None and np.asarray(W).shape == (K, C) and wdt.name != "BIPOLAR" and idt.name != "BIPOLAR":
            # the RTL's own accumulator width and ROM words (``vvau_threshold_codes``, what the
            # generator writes), so the ROM model sees the bits Yosys keeps
            Tq, acc = vvau_threshold_codes(W, T if not noact else None, int(idt.min()), int(idt.max()))
            wcodes = np.asarray(W, np.float64).astype(np.int64) & ((1 << wdt.bitwidth()) - 1)
            extra["w_var"] = rom_variable_bits(wcodes.reshape(K * C, 1), wdt.bitwidth())
            extra["w_cols"] = rom_distinct_columns(wcodes.reshape(K * C, 1), wdt.bitwidth(),
                                                   [d for d in range(1, C + 1) if C % d == 0])
            if Tq is not None and Tq.size:
                extra["thr_var"] = rom_variable_bits(Tq & ((1 << acc) - 1), acc)
                extra["thr_cols"] = rom_distinct_columns(Tq & ((1 << acc) - 1), acc)
        elif W is not None:
            lo, hi = acc_range(np.asarray(W, np.float64), idt.min(), idt.max(), T)
            acc = signed_bits(lo, hi)
        elif a.get("accDataType"):
            acc = DataType[a["accDataType"]].bitwidth()
        else:
            m = max(abs(wdt.min()), abs(wdt.max())) * max(abs(idt.min()), abs(idt.max())) * K
            acc = signed_bits(-int(m), int(m))
        return dict(K=K, C=C, PE=int(a.get("PE", 1)), SIMD=int(a.get("SIMD", 1)),
                    Nv=prod_or_int(a.get("numInputVectors", [1])), wbits=wdt.bitwidth(), abits=idt.bitwidth(),
                    obits=odt.bitwidth(), acc_bits=acc, n_thr=n_thr, ram_style=str(a.get("ram_style", "auto")),
                    resType=str(a.get("resType", "lut")), wdt=wdt.name, idt=idt.name, odt=odt.name, **extra)

    @classmethod
    def cycles(cls, p):
        return vvau_cycles(p["K"], p["C"], p["PE"], p["SIMD"], p["Nv"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return vvau_resources(p)

    resource_features = staticmethod(vvau_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """One word in per clock; channel fold cf of a window leaves with the window's word of
        the last kernel fold for that cf (the pipeline latency is counted by ``latency``)."""
        kf, cf, nv = int(p["K"]) // int(p["SIMD"]), int(p["C"]) // int(p["PE"]), int(p["Nv"])
        n = nv * kf * cf
        prod_ = ((np.arange(nv) * kf * cf + (kf - 1) * cf)[:, None] + np.arange(cf)[None, :]).ravel()
        return n, np.arange(n), prod_

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_vvau.v: an output word is in the output register ``vvau_pipeline_depth``
        cycles after the input word that completes its sum (5 + DSPL + TL, + 1 + clog2(NT) with
        NT thresholds). The latency (base class) adds the window's first KF - 1 kernel folds
        from ``io_pattern``."""
        return vvau_pipeline_depth(p)

    @classmethod
    def fold_candidates(cls, p, grids, mvau_wwidth_max):
        """SIMD > 1 needs PE = C (a word of whole kernel positions), which a per-attribute grid
        cannot express; the folding search therefore folds over channels (SIMD = 1) and a
        pinned folding config may set SIMD with PE = C."""
        grids = dict(grids)
        grids["SIMD"] = [1]
        return grids

    @classmethod
    def op_and_param_counts(cls, p):
        ent = {f"op_mac_{p['idt']}_{p['wdt']}": p["K"] * p["C"] * p["Nv"],
               f"param_weight_{p['wdt']}": p["K"] * p["C"]}
        if p["n_thr"]:
            ent[f"param_threshold_INT{p['acc_bits']}"] = p["C"] * p["n_thr"]
        return ent

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_vvau(spec, inst, ctx)

    #: short name of the single-node example builder (``codesign.hw.opspecs.vvau_spec``)
    example_name = "vvau"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (the cost-model corpus, synthesis tests)."""
        return _example_node(*args, **kw)


def folding_errors(K: int, C: int, PE: int, SIMD: int) -> list[str]:
    """The VVAU folding rules, one message each: PE | C, SIMD | K, SIMD > 1 only with PE = C."""
    msgs = []
    if C % PE:
        msgs.append(f"Channels={C} is not divisible by PE={PE}")
    if K % SIMD:
        msgs.append(f"kernel size K={K} is not divisible by SIMD={SIMD}")
    if SIMD > 1 and PE != C:
        msgs.append(f"SIMD={SIMD} > 1 needs PE = Channels = {C} (a word holds whole kernel positions), got PE={PE}")
    return msgs


def acc_range(W: np.ndarray, amin: float, amax: float, T: np.ndarray | None = None) -> tuple[int, int]:
    """Exact accumulator range over all channels (per channel: sum over k of the extreme
    products), widened to the finite thresholds (they are compared with it)."""
    hi = np.maximum(W * amin, W * amax).sum(axis=0)
    lo = np.minimum(W * amin, W * amax).sum(axis=0)
    lo_v, hi_v = float(min(lo.min(), 0.0)), float(max(hi.max(), 0.0))
    if T is not None and np.asarray(T).size:
        finite = np.asarray(T, np.float64)[np.isfinite(np.asarray(T, np.float64))]
        if finite.size:
            lo_v, hi_v = min(lo_v, float(np.floor(finite.min()))), max(hi_v, float(np.ceil(finite.max())) + 1)
    return int(math.floor(lo_v)), int(math.ceil(hi_v))


# --------------------------------------------------------------------------- RTL generator

def _gen_vvau(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    C = int(_attr(a, "Channels"))
    K = int(_attr(a, "KernelSize"))
    PE, SIMD = int(_attr(a, "PE", 1)), int(_attr(a, "SIMD", 1))
    errs = folding_errors(K, C, PE, SIMD)
    if errs:
        raise FoldingError(f"{spec.name}: {'; '.join(errs)}")
    idt, wdt, odt = dtype(_attr(a, "inputDataType")), dtype(_attr(a, "weightDataType")), dtype(_attr(a, "outputDataType"))
    if idt.bipolar or wdt.bipolar:
        raise UnsupportedError(f"{spec.name}: VVAU takes integer (not bipolar) inputs and weights; "
                               f"use >= 2-bit activations/weights for depthwise layers")
    W = np.asarray(spec.inits["W"]).astype(np.float64)
    if W.shape != (K, C) or not np.all(W == np.round(W)):
        raise UnsupportedError(f"{spec.name}: W must be an integer ({K}, {C}) array, got {W.shape}")
    W = W.astype(np.int64)
    if W.min() < wdt.lo or W.max() > wdt.hi:
        raise UnsupportedError(f"{spec.name}: weights outside {wdt.name}")
    T = spec.inits.get("T")
    no_act = int(_attr(a, "noActivation", 0)) == 1 or T is None
    act_val = int(_attr(a, "ActVal", 0))
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    acc_hi = (Wp * idt.hi + Wn * idt.lo).sum(axis=0)
    acc_lo = (Wp * idt.lo + Wn * idt.hi).sum(axis=0)
    NT, Tq = 0, None
    if not no_act:
        T = np.asarray(T, dtype=np.float64)
        if T.ndim != 2:
            raise UnsupportedError(f"{spec.name}: T must be 2-D (C, n)")
        if T.shape[0] not in (1, C):
            raise UnsupportedError(f"{spec.name}: T has {T.shape[0]} rows, Channels={C}")
        NT = T.shape[1]
        if act_val < odt.lo or act_val + NT > odt.hi:
            raise UnsupportedError(f"{spec.name}: activation range [{act_val}, {act_val + NT}] does not fit {odt.name}")
    elif int(acc_lo.min()) < odt.lo or int(acc_hi.max()) > odt.hi:
        raise UnsupportedError(f"{spec.name}: accumulator range [{int(acc_lo.min())}, {int(acc_hi.max())}] "
                               f"does not fit {odt.name}")
    # the thresholds' ROM words and the accumulator width, as the cost model reads them
    Tq, accw = vvau_threshold_codes(W, None if no_act else T, idt.lo, idt.hi)
    KF, CF = K // SIMD, C // PE
    style = _ram_style(a)
    base = f"{ctx.top}_{inst}"
    wcodes = _codes(W, wdt.bits)
    wroms = []
    for p in range(PE):
        # address i = kf*CF + cf holds W[kf*SIMD + j, cf*PE + p], j = 0..SIMD-1
        rows = [[wcodes[kf * SIMD + j, cf * PE + p] for j in range(SIMD)] for kf in range(KF) for cf in range(CF)]
        fn = ctx.write_data(f"{base}_w{p}.dat", _hex_lines(np.array(rows, dtype=object), wdt.bits, SIMD * wdt.bits))
        wroms.append({"name": f"wrom{p}", "width": SIMD * wdt.bits, "depth": KF * CF, "file": fn, "style": style})
    # one address copy per PE's ROM (codesign_vvau.v's wmem_addr)
    ports = [_rom_port("wmem", wroms, max(1, math.ceil(math.log2(KF * CF))) if KF * CF > 1 else 1, addr_per_rom=True)]
    ties = []
    if NT:
        tcodes = _codes(Tq, accw)
        troms = []
        for p in range(PE):
            rows = [tcodes[cf * PE + p, :] for cf in range(CF)]
            fn = ctx.write_data(f"{base}_t{p}.dat", _hex_lines(np.array(rows, dtype=object), accw, NT * accw))
            troms.append({"name": f"trom{p}", "width": NT * accw, "depth": CF, "file": fn, "style": style})
        ports.append(_rom_port("tmem", troms, max(1, math.ceil(math.log2(CF))) if CF > 1 else 1))
    else:
        ties = [{"name": "tmem_q", "value": f"{PE * accw}'d0"}]
    params = _p({"K": K, "C": C, "PE": PE, "SIMD": SIMD, "IBITS": idt.bits, "WBITS": wdt.bits, "OBITS": odt.bits,
                 "ACCW": accw, "I_SIGNED": idt.signed, "W_SIGNED": wdt.signed,
                 "USE_DSP": str(_attr(a, "resType", "lut")).lower() == "dsp", "NT": NT,
                 "ACTVAL": act_val if NT else 0})
    nv = _prod(_attr(a, "numInputVectors", [1]))
    in_s = _stream(idt, SIMD * PE, nv * KF * CF)
    out_s = _stream(odt, PE, nv * CF)
    fname = ctx.render("rom_node.v.j2", f"{base}.v", node_name=spec.name, op_type=spec.op_type, module=base,
                       core="codesign_vvau", in_width=in_s.width, out_width=out_s.width, rom_ports=ports,
                       tie_ports=ties, params=params)
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, [fname], VVAU.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "vvau", K: int = 9, C: int = 8, PE: int = 1, SIMD: int = 1, idt: str = "UINT4",
                  wdt: str = "INT4", odt: str | None = None, nthr: int | None = None, thresholds: str = "channel",
                  ram_style: str = "auto", res_type: str = "lut", seed: int = 0,
                  weights: str = "random") -> HWNodeSpec:
    """A depthwise node with seeded random weights in ``wdt`` and, unless ``nthr = 0``, NT
    thresholds shaped like a folded batch norm (per channel an offset and a step inside the
    reachable accumulator range; ``thresholds="tensor"``: one row for all C channels, as a
    per-tensor activation gives). ``nthr`` None: 2^obits - 1; ``nthr = 0``: no activation, the
    accumulator leaves as a signed integer just wide enough (``odt`` None). ``weights="ones"``:
    every weight 1 (the exact window sum an average pool lowers to, BINARY weights)."""
    rng = np.random.default_rng(seed)
    wd, idd = dtype(wdt), dtype(idt)
    W = np.ones((K, C), np.int64) if weights == "ones" else rng.integers(wd.lo, wd.hi + 1, size=(K, C))
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    hi = (Wp * idd.hi + Wn * idd.lo).sum(axis=0)
    lo = (Wp * idd.lo + Wn * idd.hi).sum(axis=0)
    inits: dict[str, np.ndarray] = {"W": W.astype(np.float64)}
    if nthr is None:
        nthr = (1 << dt_bits(odt or "UINT4")) - 1
    if nthr:
        odt = odt or f"UINT{max(1, int(nthr).bit_length())}"
        rows = 1 if thresholds == "tensor" else C
        # one row: inside every channel's range, so no channel clips it (the ROM words are equal)
        tlo, thi = (np.array([lo.max()]), np.array([hi.min()])) if rows == 1 else (lo, hi)
        span = np.maximum(thi - tlo, 1)
        mid = tlo + span * rng.uniform(0.3, 0.7, size=rows)
        step = span * rng.uniform(0.3, 0.9, size=rows) / (2 * nthr)
        T = np.ceil(mid[:, None] + step[:, None] * (np.arange(nthr)[None, :] - nthr / 2))
        inits["T"] = np.repeat(T, C, axis=0) if rows == 1 else T
    else:
        odt = odt or f"INT{signed_bits(min(int(lo.min()), 0), max(int(hi.max()), 0))}"
    attrs = dict(Channels=C, Kernel=[K, 1], KernelSize=K, PE=PE, SIMD=SIMD, inputDataType=idt, weightDataType=wdt,
                 outputDataType=odt, ActVal=0, noActivation=int(nthr == 0), numInputVectors=[1],
                 ram_style=ram_style, resType=res_type)
    return HWNodeSpec(name, "VVAU", attrs, inits)
