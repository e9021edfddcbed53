"""Thresholding (standalone channel-wise multi-threshold): everything about the op in one place."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import _i, res_out
from codesign.dataflow.golden import multithreshold
from codesign.dataflow.ops.base import (HWCustomOp, _clog2, bipolar_from_count, param_dt, pe_rom_memories,
                                        prod_or_int, rom_distinct_columns, rom_variable_bits)
from codesign.dataflow.ops.rtlgen import (dt_bits, HWNodeSpec, NodeRTL, _attr, _codes, _hex_lines, _p, _prod, _ram_style,
                                          _rom_port, _stream, dtype, signed_bits)
from codesign.errors import FoldingError, UnsupportedError


def thresholding(x: np.ndarray, T: np.ndarray, act_val: int = 0) -> np.ndarray:
    """Channel-wise multi-threshold on the last axis (golden execution of the op)."""
    return multithreshold(x, T, act_val)


def thresholding_cost(C: Any, PE: Any, n_steps: Any, ibits: Any, obits: Any, Nv: Any,
                      ram_style: Any = 0) -> dict[str, np.ndarray]:
    """Formula-level entry point: cycles and resources of the threshold op."""
    return Thresholding.cost(dict(C=C, PE=PE, n_steps=n_steps, ibits=ibits, obits=obits, Nv=Nv,
                                  ram_style=ram_style))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``thresholding_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single Thresholding nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [7.5561, 0.0, 2.0641, 0.589, 1.0223, 0.0136, 0.0],
    "FF": [7.6701, 1.0432, 1.0377, 1.0497, 1.0225, 0.0],
}
# ---- resource coefficients (end) ----



def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def popcount_tree_bits(nt: Any) -> np.ndarray:
    """Register (= adder) bits of codesign_adder_tree over NT compare bits (this op's and the
    depthwise unit's activation) as Yosys keeps them: every node is clog2(NT) + 1 bits wide,
    but the leaves are zero-extended single bits, so a node k levels above them keeps
    min(1 + k, clog2(NT) + 1) bits, and nodes over the zero leaves past NT vanish
    (ceil(NT / 2^k) nodes at level k)."""
    nt = np.maximum(_i(nt), 1)
    lv = _clog2(nt)
    out = np.zeros_like(nt)
    for k in range(1, int(np.max(lv)) + 1 if np.size(lv) else 1):
        out = out + np.where(k <= lv, -(-nt // (1 << k)) * np.minimum(1 + k, lv + 1), 0)
    return out


def thresholding_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_thresholding.v in its rom_node wrapper (columns
    of RESOURCE_COEFFS).

    Synthesis keeps the hierarchy, so the core never sees the ROM contents: per PE it compares
    against NT thresholds of TW = ibits + 1 bits from a register (tq2, PE*NT*TW bits) whatever
    the thresholds are, even one per-tensor row (constant ROM words); then a registered popcount
    tree of NT bits (``popcount_tree_bits``) and the output register, after the two
    input word registers. The wrapper's threshold ROMs (``pe_rom_memories``) keep only their
    varying bits: logic LUTs (64 words per LUT per bit) and a mux tree, their read registers
    when in logic, nothing of either for per-tensor thresholds.
    LUT: [1, compare bits, compares x min(max(TW - 4, 0), 3), popcount bits, ROM LUTs, ROM mux
    LUTs, output bits] (the second compare column: what Yosys/abc spends per compare grows from
    ~1 LUT at TW = 5 to ~6 at TW >= 7, measured on per-tensor designs where no ROM hides it);
    FF: [1, input
    registers, threshold-word register (all NT*TW bits), ROM read registers (varying bits in
    logic), compare + popcount registers, output bits]. TW and the varying ROM bits come from
    the thresholds when known (``threshold_codes``)."""
    P, nt, ib, ob = _i(p["PE"]), _i(p["n_steps"]), _i(p["ibits"]), _i(p["obits"])
    tw = _i(p.get("tw", ib + 1))
    pop = popcount_tree_bits(nt)
    mem = _thr_memories(p)
    one = np.ones_like(P)
    return {"LUT": [one, P * nt * tw, P * nt * np.clip(tw - 4, 0, 3), P * pop, mem["LUTRAM"], mem["mux"], P * ob],
            "FF": [one, 2 * P * ib, P * nt * tw, mem["q_bits"], P * (nt + pop), P * ob]}


def _thr_memories(p: Any) -> dict[str, np.ndarray]:
    """The PE threshold ROMs (depth C/PE, width NT*TW, trimmed to their varying bits
    ``thr_var``) as Yosys places them: ``pe_rom_memories``, shared with the depthwise unit."""
    P = _i(p["PE"])
    width = _i(p["n_steps"]) * _i(p.get("tw", _i(p["ibits"]) + 1))
    return pe_rom_memories(P, p["ram_style"], _i(p["C"]) // P, width, p.get("thr_var"), p.get("thr_cols"))


def threshold_codes(T: np.ndarray, C: int, ilo: int, ihi: int, ibits: int) -> tuple[np.ndarray, int]:
    """The threshold words as ``_gen_thresholding`` writes them: (C, NT) two's-complement codes
    (ceiled, clipped to [min, max + 1] of the input) and their width TW. Tested against the
    generated ROM files (tests/test_costmodel.py)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[0] == 1 and C != 1:
        T = np.broadcast_to(T, (C, T.shape[1]))
    Tq = np.clip(np.ceil(T).astype(np.int64), ilo, ihi + 1)
    tw = max(signed_bits(min(ilo, int(Tq.min())), max(ihi, int(Tq.max()))), ibits + 1)
    return Tq & ((1 << tw) - 1), tw


class Thresholding(HWCustomOp):
    """Channel-wise multi-threshold on the last axis: ``ActVal + #{x >= T[c, i]}``."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "numSteps": ("i", True, 1),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "ActVal": ("i", False, 0),
            "numInputVectors": ("ints", False, [1]),
            "mem_mode": ("s", False, "internal_embedded"),
            "ram_style": ("s", False, "distributed"),
        }

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("NumChannels"),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return tuple(self._nv()) + (self.get_nodeattr("NumChannels") // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_folded_input_shape()

    def calc_tmem(self) -> int:
        return self.get_nodeattr("NumChannels") // self.get_nodeattr("PE")

    def verify_folding(self) -> list[str]:
        c, pe = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE")
        return [] if c % pe == 0 else [f"NumChannels={c} is not divisible by PE={pe}"]

    def _execute(self, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        y = thresholding(x, T, self.get_nodeattr("ActVal"))
        if self.get_output_datatype() == DataType["BIPOLAR"]:
            y = bipolar_from_count(y)
        return y

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("PE", "ram_style", "mem_mode", "runtime_writeable_weights")
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("Thresholding_Batch",)
    #: FINN+ 1.6.1 puts the float input quantizer in hardware as a Thresholding node
    finn_host_ops_before = ("Quant",)
    fold_dims = {"PE": ("NumChannels", "C")}
    in_fold_attr, out_fold_attr = "PE", "PE"
    template = "codesign_thresholding.v"
    extra_templates = ("codesign_adder_tree.v",)
    rtl_inputs = ("T",)

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        what = str(a.get("name", "Thresholding node"))
        idt = param_dt(a, "inputDataType", tensor_dt, "input", what)
        odt = param_dt(a, "outputDataType", tensor_dt, "output", what)
        out = dict(C=int(a["NumChannels"]), PE=int(a.get("PE", 1)), n_steps=int(a["numSteps"]),
                   ibits=idt.bitwidth(), obits=odt.bitwidth(), Nv=prod_or_int(a.get("numInputVectors", [1])),
                   ram_style=str(a.get("ram_style", "auto")))
        T = (inits or {}).get("T")
        if T is not None and np.asarray(T).ndim == 2 and np.asarray(T).size:
            codes, tw = threshold_codes(T, out["C"], int(idt.min()), int(idt.max()), out["ibits"])
            out["tw"], out["thr_var"] = tw, rom_variable_bits(codes, tw)
            out["thr_cols"] = rom_distinct_columns(codes, tw)
        return out

    @classmethod
    def cycles(cls, p):
        """Nv * C / PE: one PE-wide word per clock."""
        return _i(p["Nv"]) * (_i(p["C"]) // _i(p["PE"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``thresholding_resource_features`` times the fitted RESOURCE_COEFFS; BRAM18 of the
        PE threshold ROMs (each depth C/PE, width its varying bits of NT*TW) by the aspect table."""
        f = thresholding_resource_features(p)
        mem = _thr_memories(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])

    resource_features = staticmethod(thresholding_resource_features)

    def emits_activation(self) -> bool:
        return True

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_thresholding.v: registered input and threshold word, NT compares, a
        clog2(NT)-level popcount tree, output register: 4 + clog2(NT) cycles."""
        return 4 + _clog2(p["n_steps"])

    @classmethod
    def io_pattern(cls, p):
        """One word in and one word out on every clock."""
        n = int(cls.cycles(p))
        return n, np.arange(n), np.arange(n)

    @classmethod
    def op_and_param_counts(cls, p):
        return {f"param_threshold_INT{p['ibits']}": p["C"] * p["n_steps"]}

    #: short name of the single-node example builder (``codesign.hw.opspecs.thresholding_spec``)
    example_name = "thresholding"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_thresholding(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_thresholding(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    C, PE = int(_attr(a, "NumChannels")), int(_attr(a, "PE", 1))
    if C % PE:
        raise FoldingError(f"{spec.name}: NumChannels={C} % PE={PE} must be 0")
    idt, odt = dtype(_attr(a, "inputDataType")), dtype(_attr(a, "outputDataType"))
    act_val = int(_attr(a, "ActVal", 0))
    T = np.asarray(spec.inits["T"], dtype=np.float64)
    if T.shape[0] == 1 and C != 1:
        T = np.broadcast_to(T, (C, T.shape[1]))
    if T.ndim != 2 or T.shape[0] != C:
        raise UnsupportedError(f"{spec.name}: T must be (C, numSteps), got {T.shape}")
    NT = T.shape[1]
    Tq = np.clip(np.ceil(T).astype(np.int64), idt.lo, idt.hi + 1)
    tw = max(signed_bits(min(idt.lo, int(Tq.min())), max(idt.hi, int(Tq.max()))), idt.bits + 1)
    if odt.bipolar:
        if NT != 1:
            raise UnsupportedError(f"{spec.name}: bipolar output needs exactly 1 threshold")
        act_param = 0
    else:
        act_param = act_val
        if act_val < odt.lo or act_val + NT > odt.hi:
            raise UnsupportedError(f"{spec.name}: output range [{act_val}, {act_val + NT}] does not fit {odt.name}")
    CF = C // PE
    nv = _prod(_attr(a, "numInputVectors", [1]))
    base = f"{ctx.top}_{inst}"
    style = _ram_style(a)
    tcodes = _codes(Tq, tw)
    troms = []
    for p in range(PE):
        rows = [tcodes[cf * PE + p, :] for cf in range(CF)]
        fn = ctx.write_data(f"{base}_t{p}.dat", _hex_lines(np.array(rows, dtype=object), tw, NT * tw))
        troms.append({"name": f"trom{p}", "width": NT * tw, "depth": CF, "file": fn, "style": style})
    ports = [_rom_port("tmem", troms, max(1, math.ceil(math.log2(CF))) if CF > 1 else 1)]
    params = _p({"C": C, "PE": PE, "NT": NT, "IBITS": idt.bits, "OBITS": odt.bits, "TW": tw,
                 "I_SIGNED": idt.signed, "I_BIPOLAR": idt.bipolar, "ACTVAL": act_param})
    in_s, out_s = _stream(idt, PE, nv * CF), _stream(odt, PE, nv * CF)
    fname = ctx.render("rom_node.v.j2", f"{base}.v", node_name=spec.name, op_type=spec.op_type, module=base,
                       core="codesign_thresholding", in_width=in_s.width, out_width=out_s.width,
                       rom_ports=ports, tie_ports=[], params=params)
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, [fname], Thresholding.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "thr", C: int = 8, PE: int = 1, idt: str = "INT8", odt: str = "UINT4",
                      nthr: int | None = None, ram_style: str = "auto", seed: int = 0,
                      per_tensor: bool = False) -> HWNodeSpec:
    """``per_tensor``: one threshold row for every channel (C identical rows, as a per-tensor
    quantizer folds to): the ROM words are all equal and Yosys keeps none of its bits."""
    rng = np.random.default_rng(seed)
    if nthr is None:
        nthr = (1 << dt_bits(odt)) - 1
    b = dt_bits(idt)
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if idt.startswith("INT") else (0, (1 << b) - 1)
    T = np.sort(rng.integers(lo, hi + 1, size=(1 if per_tensor else C, nthr)), axis=1).astype(np.float64)
    T = np.repeat(T, C, axis=0) if per_tensor else T
    attrs = dict(NumChannels=C, PE=PE, numSteps=nthr, inputDataType=idt, outputDataType=odt, ActVal=0,
                 numInputVectors=[1], ram_style=ram_style, mem_mode="const")
    return HWNodeSpec(name, "Thresholding", attrs, {"T": T})

