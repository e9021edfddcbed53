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

from codesign.dataflow.cost import RES_DSP, _i, _memory, cdiv, ram_code, res_code, res_out
from codesign.dataflow.golden import _int, multithreshold
from codesign.dataflow.ops.base import HWCustomOp, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import (HWNodeSpec, NodeRTL, _attr, _codes, _hex_lines, _p, _prod, _ram_style,
                                          _rom_port, _stream, dtype, signed_bits)
from codesign.errors import FoldingError, UnsupportedError

#: input + weight bits from which Yosys maps a lane's multiply to a DSP48E1 (as for the matrix unit)
DSP_MIN_BITS = 8
#: pipeline registers between an input word and its output word (codesign_vvau.v stages 1..5 + out)
PIPE_DEPTH = 6


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

def vvau_cycles(K: Any, C: Any, PE: Any, SIMD: Any, Nv: Any) -> np.ndarray:
    """Nv * (K/SIMD) * (C/PE): one word of SIMD kernel positions x PE channels per clock."""
    return _i(Nv) * (_i(K) // _i(SIMD)) * (_i(C) // _i(PE))


def vvau_resources(K: Any, C: Any, PE: Any, SIMD: Any, wbits: Any, abits: Any, obits: Any, acc_bits: Any,
                   n_thr: Any, ram_style: Any = 0, res_type: Any = 0) -> dict[str, np.ndarray]:
    """Resources of codesign_vvau.v as written.

    Weight ROM: depth K*C/(PE*SIMD), width PE*SIMD*W. Per PE lane: SIMD multiplies (LUT
    shift-and-add as in the matrix unit model, none with DSPs), a SIMD-input adder tree, the
    accumulator RAM of C/PE entries x acc bits (LUTRAM: acc*ceil(CF/64) LUTs) and its adder,
    NT comparators. LUT = 40 + 0.8*PE*(mult + adder + 2*acc + acc_mem + thr_cmp) + ROM LUTRAM
    (base and factor fitted to Yosys 0.23 synth_xilinx xc7 of K=9, C=4, UINT4 x INT4, 3 thresholds:
    PE=1: 122 LUT (model 116), PE=2: 200 (192); the DSP variant PE=4, SIMD=3 maps 181 (model 344,
    an overestimate kept on the safe side).
    FF: the input word, PE*SIMD registered products, PE dot/accumulate/sum registers, the
    output word and ~48 control bits. DSP: PE*SIMD with resType=dsp when W + A >= 8.
    """
    P, Q = _i(PE), _i(SIMD)
    W_, A_ = _i(wbits), _i(abits)
    acc = _i(acc_bits)
    nt = _i(n_thr)
    cf = _i(C) // P
    wmem = (_i(K) * _i(C)) // (P * Q)
    mem = _memory(wmem, P * Q * W_, ram_style)
    wa = W_ + A_ + 2
    use_dsp = (_i(res_type) == RES_DSP) & (W_ + A_ >= DSP_MIN_BITS)
    mult = np.where(use_dsp, 0, Q * (2 * cdiv(wa, 6) - 1) * wa)
    adder = acc * np.maximum(Q - 1, 0)
    acc_mem = acc * cdiv(cf, 64)
    lut = 40 + 0.8 * (P * (mult + adder + 2 * acc + acc_mem + nt * acc)).astype(np.float64) + mem["LUTRAM"]
    out_bits = np.where(nt > 0, _i(obits), acc)
    ff = 48 + Q * P * A_ + P * Q * wa + 3 * P * acc + P * out_bits
    dsp = np.where(use_dsp, P * Q, 0)
    return res_out(lut, ff, mem["BRAM_18K"], mem["URAM"], dsp, mem["bits"])


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
        n_thr = int(np.asarray(T).shape[-1]) if T is not None else (0 if noact else 2 ** odt.bitwidth() - 1)
        if W is not None:
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
                    resType=str(a.get("resType", "lut")), wdt=wdt.name, idt=idt.name, odt=odt.name)

    @classmethod
    def cycles(cls, p):
        return vvau_cycles(p["K"], p["C"], p["PE"], p["SIMD"], p["Nv"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return vvau_resources(p["K"], p["C"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"],
                              p["acc_bits"], p["n_thr"], ram_code(p["ram_style"]), res_code(p["resType"]))

    @classmethod
    def io_pattern(cls, p):
        """One word in per clock; channel fold cf of a window leaves with the window's word of
        the last kernel fold for that cf (the pipeline latency is counted by ``latency``)."""
        kf, cf, nv = int(p["K"]) // int(p["SIMD"]), int(p["C"]) // int(p["PE"]), int(p["Nv"])
        n = nv * kf * cf
        prod_ = ((np.arange(nv) * kf * cf + (kf - 1) * cf)[:, None] + np.arange(cf)[None, :]).ravel()
        return n, np.arange(n), prod_

    @classmethod
    def latency(cls, p):
        """First input word to first output word: the window's last kernel fold plus the pipe."""
        return (int(p["K"]) // int(p["SIMD"]) - 1) * (int(p["C"]) // int(p["PE"])) + PIPE_DEPTH

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
    lo, hi = min(int(acc_lo.min()), 0), max(int(acc_hi.max()), 0)
    NT, Tq = 0, None
    if not no_act:
        T = np.asarray(T, dtype=np.float64)
        if T.ndim != 2:
            raise UnsupportedError(f"{spec.name}: T must be 2-D (C, n)")
        if T.shape[0] == 1 and C != 1:
            T = np.broadcast_to(T, (C, T.shape[1]))
        if T.shape[0] != C:
            raise UnsupportedError(f"{spec.name}: T has {T.shape[0]} rows, Channels={C}")
        NT = T.shape[1]
        Tq = np.clip(np.ceil(T).astype(np.int64), acc_lo[:, None], acc_hi[:, None] + 1)
        lo, hi = min(lo, int(Tq.min())), max(hi, int(Tq.max()))
        if act_val < odt.lo or act_val + NT > odt.hi:
            raise UnsupportedError(f"{spec.name}: activation range [{act_val}, {act_val + NT}] does not fit {odt.name}")
    elif int(acc_lo.min()) < odt.lo or int(acc_hi.max()) > odt.hi:
        raise UnsupportedError(f"{spec.name}: accumulator range [{int(acc_lo.min())}, {int(acc_hi.max())}] "
                               f"does not fit {odt.name}")
    accw = signed_bits(lo, hi)
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
    ports = [_rom_port("wmem", wroms, max(1, math.ceil(math.log2(KF * CF))) if KF * CF > 1 else 1)]
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
