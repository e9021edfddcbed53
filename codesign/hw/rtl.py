"""Render HW nodes (or a whole compiled dataflow graph) into behavioural Verilog.

Each HW op maps to one parametric core in `accel_templates/codesign_*.v`. Ops with memories
(MVAU, Thresholding) get a generated wrapper (`rom_node.v.j2`) holding one `$readmemh` ROM per
PE, so the memory sits in a plain `reg` array Yosys can infer as LUTRAM/BRAM. The top module
(`top.v.j2`) chains the nodes with FINN's stitched-IP stream names. All generated text goes
through Jinja2; the numbers that matter for bit-exactness (threshold conversion for XNOR,
accumulator width from the exact range, clipping of thresholds) are computed here, once.

`RTLDesign.save()` writes `design.json` beside the Verilog so `codesign rtlsim` / `synth` can
work from `BUILD/rtl/` alone.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import jinja2
import numpy as np

from codesign.atomic import write_json, write_text
from codesign.errors import FoldingError, UnsupportedError

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates"
HW_DOMAIN = "codesign.dataflow.ops"
DEFAULT_TOP = "codesign_top"

CORE_FILES = {
    "MVAU": "codesign_mvau.v",
    "Thresholding": "codesign_thresholding.v",
    "SlidingWindow": "codesign_swg.v",
    "StreamingMaxPool": "codesign_maxpool.v",
    "FMPadding": "codesign_fmpadding.v",
    "LabelSelect": "codesign_labelselect.v",
    "StreamingDataWidthConverter": "codesign_dwc.v",
    "StreamingFIFO": "codesign_fifo.v",
}

_VERILOG_KEYWORDS = set(
    """always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign default
    defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule endprimitive
    endspecify endtable endtask event for force forever fork function generate genvar highz0 highz1 if
    ifnone incdir include initial inout input instance integer join large liblist library localparam
    macromodule medium module nand negedge nmos nor noshowcancelled not notif0 notif1 or output parameter
    pmos posedge primitive pull0 pull1 pulldown pullup pulsestyle_onevent pulsestyle_ondetect rcmos real
    realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small
    specify specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1
    triand trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
    logic bit byte int shortint longint inside step first last type class interface package program
    property sequence clocking string void enum struct union typedef import export final""".split()
)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --------------------------------------------------------------------------- names and types

def sanitize_identifiers(names: list[str]) -> list[str]:
    """Legal, unique Verilog identifiers for `names` (order kept; collisions get _1, _2, ...).

    Lower-cased uniqueness check, because some tools treat file/module names case-insensitively.
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        s = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "n"
        if not re.match(r"[A-Za-z_]", s):
            s = "n_" + s
        if s in _VERILOG_KEYWORDS:
            s = s + "_"
        base, k = s, 1
        while s.lower() in seen:
            s = f"{base}_{k}"
            k += 1
        seen.add(s.lower())
        out.append(s)
    return out


@dataclass(frozen=True)
class DType:
    """An integer stream datatype: what the RTL needs from a qonnx DataType name."""

    name: str
    bits: int
    signed: bool
    bipolar: bool

    @property
    def lo(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


def dtype(name: str) -> DType:
    """Parse a qonnx DataType name (UINT4, INT8, BIPOLAR, BINARY, ...)."""
    n = str(name).upper()
    if n == "BIPOLAR":
        return DType(n, 1, False, True)
    if n == "BINARY":
        return DType(n, 1, False, False)
    m = re.fullmatch(r"(U?)INT(\d+)", n)
    if not m:
        raise UnsupportedError(f"datatype {name!r} has no RTL stream encoding (integers and bipolar only)")
    bits = int(m.group(2))
    if bits < 1 or bits > 64:
        raise UnsupportedError(f"datatype {name!r}: 1..64 bits supported")
    return DType(n, bits, m.group(1) == "", False)


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def _codes(values: np.ndarray, bits: int, bipolar: bool = False) -> np.ndarray:
    """Bit patterns (python-int object array) of integer values in `bits` two's complement."""
    v = np.asarray(values).astype(np.int64)
    if bipolar:
        return ((v + 1) // 2).astype(object)
    return (v & ((1 << bits) - 1)).astype(object)


def _hex_lines(rows: np.ndarray, bits: int, width: int) -> str:
    """One hex word per row: element j of a row at bits [j*bits, (j+1)*bits)."""
    digits = max(1, (width + 3) // 4)
    lines = []
    for row in rows:
        w = 0
        for j, c in enumerate(row):
            w |= int(c) << (j * bits)
        lines.append(format(w, f"0{digits}x"))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- data model

@dataclass
class StreamSpec:
    """One AXI stream: `fold` elements of `bits` per word (element 0 in the LSBs)."""

    dtype: str
    bits: int
    fold: int
    signed: bool
    bipolar: bool
    words_per_frame: int

    @property
    def width(self) -> int:
        return self.bits * self.fold

    @property
    def elems_per_frame(self) -> int:
        return self.words_per_frame * self.fold


def _stream(dt: DType, fold: int, words: int) -> StreamSpec:
    return StreamSpec(dt.name, dt.bits, int(fold), dt.signed, dt.bipolar, int(words))


@dataclass
class HWNodeSpec:
    """A HW node as the renderer needs it: op type, FINN-named attributes, initializers."""

    name: str
    op_type: str
    attrs: dict[str, Any]
    inits: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class NodeRTL:
    """A rendered node: which module to instantiate with which parameters."""

    node_name: str
    inst: str
    op_type: str
    module: str
    params: list[tuple[str, str]]
    in_stream: StreamSpec
    out_stream: StreamSpec
    files: list[str]
    exp_cycles: int

    @property
    def in_width(self) -> int:
        return self.in_stream.width

    @property
    def out_width(self) -> int:
        return self.out_stream.width


@dataclass
class RTLDesign:
    """A rendered design in `out_dir`: Verilog files, data files, the stream interface."""

    out_dir: Path
    top: str
    verilog_files: list[str]
    data_files: list[str]
    nodes: list[NodeRTL]

    @property
    def in_stream(self) -> StreamSpec:
        return self.nodes[0].in_stream

    @property
    def out_stream(self) -> StreamSpec:
        return self.nodes[-1].out_stream

    @property
    def s_width(self) -> int:
        return 8 * ((self.in_stream.width + 7) // 8)

    @property
    def m_width(self) -> int:
        return 8 * ((self.out_stream.width + 7) // 8)

    def save(self) -> Path:
        d = {
            "top": self.top,
            "verilog_files": self.verilog_files,
            "data_files": self.data_files,
            "s_width": self.s_width,
            "m_width": self.m_width,
            "nodes": [
                {**{k: v for k, v in asdict(n).items() if k not in ("in_stream", "out_stream")},
                 "in_stream": asdict(n.in_stream), "out_stream": asdict(n.out_stream)}
                for n in self.nodes
            ],
        }
        return write_json(self.out_dir / "design.json", d)

    @classmethod
    def load(cls, rtl_dir: str | Path) -> "RTLDesign":
        rtl_dir = Path(rtl_dir)
        from codesign.atomic import read_json

        d = read_json(rtl_dir / "design.json")
        nodes = []
        for n in d["nodes"]:
            nodes.append(NodeRTL(
                node_name=n["node_name"], inst=n["inst"], op_type=n["op_type"], module=n["module"],
                params=[tuple(p) for p in n["params"]], in_stream=StreamSpec(**n["in_stream"]),
                out_stream=StreamSpec(**n["out_stream"]), files=n["files"], exp_cycles=n["exp_cycles"]))
        return cls(rtl_dir, d["top"], d["verilog_files"], d["data_files"], nodes)


# --------------------------------------------------------------------------- per-op generators

def _attr(attrs: dict[str, Any], key: str, default: Any = None) -> Any:
    if key in attrs:
        v = attrs[key]
        return v.decode() if isinstance(v, bytes) else v
    if default is None:
        raise UnsupportedError(f"HW node attribute {key!r} missing (see docs/contracts.md)")
    return default


def _prod(xs: Any) -> int:
    return int(np.prod([int(v) for v in xs])) if xs is not None and len(xs) else 1


def _ram_style(attrs: dict[str, Any]) -> str | None:
    style = str(_attr(attrs, "ram_style", "auto"))
    return {"auto": None, "block": "block", "distributed": "distributed", "ultra": "block"}.get(style)


def _rom_port(prefix: str, roms: list[dict[str, Any]], addr_width: int) -> dict[str, Any]:
    lsb = 0
    for r in roms:
        r["lsb"] = lsb
        lsb += r["width"]
    return {"prefix": prefix, "roms": roms, "addr_width": addr_width, "q_width": lsb}


class _Ctx:
    """What a generator needs: output folder, Jinja env, the top name (module prefix)."""

    def __init__(self, out_dir: Path, top: str) -> None:
        self.out_dir = out_dir
        self.top = top
        self.env = _env()
        self.data_files: list[str] = []

    def write_data(self, name: str, text: str) -> str:
        write_text(self.out_dir / name, text)
        self.data_files.append(name)
        return name

    def render(self, template: str, name: str, **kw: Any) -> str:
        write_text(self.out_dir / name, self.env.get_template(template).render(**kw))
        return name


def _p(params: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for k, v in params.items():
        if isinstance(v, bool):
            v = int(v)
        out.append((k, str(int(v)) if isinstance(v, (int, np.integer)) else str(v)))
    return out


def _gen_mvau(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
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
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, [fname], nv * SF * NF)


def _gen_thresholding(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
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
    return NodeRTL(spec.name, inst, spec.op_type, base, [], in_s, out_s, [fname], nv * CF)


def _gen_swg(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    kh, kw = [int(v) for v in _attr(a, "ConvKernelDim")]
    C, SIMD = int(_attr(a, "IFMChannels")), int(_attr(a, "SIMD", 1))
    ih, iw = [int(v) for v in _attr(a, "IFMDim")]
    sh, sw = [int(v) for v in _attr(a, "Stride", [1, 1])]
    dil = [int(v) for v in _attr(a, "Dilation", [1, 1])]
    if dil != [1, 1]:
        raise UnsupportedError(f"{spec.name}: SlidingWindow RTL supports Dilation [1, 1] only, got {dil}")
    if C % SIMD:
        raise FoldingError(f"{spec.name}: IFMChannels={C} % SIMD={SIMD} must be 0")
    oh, ow = (ih - kh) // sh + 1, (iw - kw) // sw + 1
    ofm = [int(v) for v in _attr(a, "OFMDim", [oh, ow])]
    if ofm != [oh, ow]:
        raise UnsupportedError(f"{spec.name}: OFMDim {ofm} != computed {[oh, ow]}")
    dt = dtype(_attr(a, "inputDataType"))
    CF = C // SIMD
    params = _p({"IH": ih, "IW": iw, "C": C, "SIMD": SIMD, "KH": kh, "KW": kw, "SH": sh, "SW": sw, "BITS": dt.bits})
    buf = ((kh - 1) * iw + (kw - 1) + 1) * CF
    cyc = buf + oh * max(ow * kw * kh * CF, sw * iw * CF)
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_swg", params,
                   _stream(dt, SIMD, ih * iw * CF), _stream(dt, SIMD, oh * ow * kh * kw * CF), [], cyc)


def _gen_maxpool(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    ih, iw = [int(v) for v in _attr(a, "ImgDim")]
    kh, kw = [int(v) for v in _attr(a, "PoolDim")]
    if kh != kw:
        raise UnsupportedError(f"{spec.name}: StreamingMaxPool RTL needs a square PoolDim, got {[kh, kw]}")
    C, PE = int(_attr(a, "NumChannels")), int(_attr(a, "PE", 1))
    if C % PE:
        raise FoldingError(f"{spec.name}: NumChannels={C} % PE={PE} must be 0")
    dt = dtype(_attr(a, "dataType"))
    CF = C // PE
    params = _p({"IH": ih, "IW": iw, "C": C, "PE": PE, "K": kh, "BITS": dt.bits, "SIGNED": dt.signed})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_maxpool", params,
                   _stream(dt, PE, ih * iw * CF), _stream(dt, PE, (ih // kh) * (iw // kh) * CF), [], ih * iw * CF)


def _gen_fmpadding(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    ih, iw = [int(v) for v in _attr(a, "ImgDim")]
    pt, pl, pb, pr = [int(v) for v in _attr(a, "Padding")]
    C, SIMD = int(_attr(a, "NumChannels")), int(_attr(a, "SIMD", 1))
    if C % SIMD:
        raise FoldingError(f"{spec.name}: NumChannels={C} % SIMD={SIMD} must be 0")
    dt = dtype(_attr(a, "inputDataType"))
    CF = C // SIMD
    oh, ow = ih + pt + pb, iw + pl + pr
    params = _p({"IH": ih, "IW": iw, "C": C, "SIMD": SIMD, "PT": pt, "PL": pl, "PB": pb, "PR": pr, "BITS": dt.bits})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_fmpadding", params,
                   _stream(dt, SIMD, ih * iw * CF), _stream(dt, SIMD, oh * ow * CF), [], oh * ow * CF)


def _gen_labelselect(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    L, PE, K = int(_attr(a, "Labels")), int(_attr(a, "PE", 1)), int(_attr(a, "K"))
    if L % PE:
        raise FoldingError(f"{spec.name}: Labels={L} % PE={PE} must be 0")
    idt, odt = dtype(_attr(a, "inputDataType")), dtype(_attr(a, "outputDataType"))
    if L - 1 > odt.hi:
        raise UnsupportedError(f"{spec.name}: outputDataType {odt.name} cannot hold label {L - 1}")
    params = _p({"L": L, "PE": PE, "K": K, "IBITS": idt.bits, "OBITS": odt.bits,
                 "I_SIGNED": idt.signed and not idt.bipolar})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_labelselect", params,
                   _stream(idt, PE, L // PE), _stream(odt, 1, K), [], L // PE + K)


def _gen_dwc(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    dt = dtype(_attr(a, "dataType"))
    inw, outw = int(_attr(a, "inWidth")), int(_attr(a, "outWidth"))
    if inw % dt.bits or outw % dt.bits:
        raise UnsupportedError(f"{spec.name}: widths {inw}/{outw} are not multiples of {dt.bits}-bit elements")
    frame_bits = _prod(_attr(a, "shape")) * dt.bits
    if frame_bits % inw or frame_bits % outw:
        raise UnsupportedError(f"{spec.name}: frame of {frame_bits} bits does not split into {inw}/{outw}-bit words")
    params = _p({"INW": inw, "OUTW": outw})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_dwc", params,
                   _stream(dt, inw // dt.bits, frame_bits // inw), _stream(dt, outw // dt.bits, frame_bits // outw),
                   [], max(frame_bits // inw, frame_bits // outw))


def _gen_fifo(spec: HWNodeSpec, inst: str, ctx: _Ctx) -> NodeRTL:
    a = spec.attrs
    dt = dtype(_attr(a, "dataType"))
    shape = [int(v) for v in _attr(a, "folded_shape")]
    depth = int(_attr(a, "depth"))
    if depth < 1:
        raise UnsupportedError(f"{spec.name}: FIFO depth must be >= 1")
    fold = shape[-1]
    words = _prod(shape[:-1])
    params = _p({"DEPTH": depth, "WIDTH": fold * dt.bits})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_fifo", params,
                   _stream(dt, fold, words), _stream(dt, fold, words), [], words)


GENERATORS: dict[str, Callable[[HWNodeSpec, str, _Ctx], NodeRTL]] = {
    "MVAU": _gen_mvau,
    "Thresholding": _gen_thresholding,
    "SlidingWindow": _gen_swg,
    "StreamingMaxPool": _gen_maxpool,
    "FMPadding": _gen_fmpadding,
    "LabelSelect": _gen_labelselect,
    "StreamingDataWidthConverter": _gen_dwc,
    "StreamingFIFO": _gen_fifo,
}


# --------------------------------------------------------------------------- whole designs

def render_nodes(nodes: list[HWNodeSpec], out_dir: str | Path, top: str = DEFAULT_TOP) -> RTLDesign:
    """Render a chain of HW nodes into `out_dir` (cleared first) and stitch them into `top`."""
    if not nodes:
        raise UnsupportedError("no HW nodes to render")
    (top,) = sanitize_identifiers([top])
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    # render into a fresh sibling folder and swap it in at the end: a failure or a kill while
    # rendering leaves the previous, working RTL in place (files reference each other by name)
    out_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.new.", dir=final.parent))
    try:
        design = _render_into(nodes, out_dir, top)
        _swap_in(out_dir, final)
    finally:
        if out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
    design.out_dir = final
    log.info("rendered %d HW nodes into %s (top %s)", len(design.nodes), final, top)
    return design


def _swap_in(new: Path, final: Path) -> None:
    """Replace folder `final` by `new` with two renames (the old one is removed afterwards)."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        old.rmdir()
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _render_into(nodes: list[HWNodeSpec], out_dir: Path, top: str) -> RTLDesign:
    ctx = _Ctx(out_dir, top)
    insts = sanitize_identifiers([n.name for n in nodes])
    rendered: list[NodeRTL] = []
    for spec, inst in zip(nodes, insts):
        gen = GENERATORS.get(spec.op_type)
        if gen is None:
            raise UnsupportedError(f"{spec.name}: no RTL for op type {spec.op_type!r} (have {sorted(GENERATORS)})")
        rendered.append(gen(spec, inst, ctx))
    for prev, nxt in zip(rendered, rendered[1:]):
        if prev.out_width != nxt.in_width:
            raise UnsupportedError(
                f"stream width mismatch {prev.node_name} -> {nxt.node_name}: {prev.out_width} != {nxt.in_width} bits "
                "(a StreamingDataWidthConverter is needed between them)")
    cores = []
    for n in rendered:
        core = CORE_FILES[n.op_type]
        if core not in cores:
            cores.append(core)
            shutil.copyfile(TEMPLATE_DIR / core, out_dir / core)
    design = RTLDesign(out_dir, top, [], ctx.data_files, rendered)
    ctx.render("top.v.j2", f"{top}.v", top=top, nodes=rendered, s_width=design.s_width, m_width=design.m_width)
    design.verilog_files = cores + [f for n in rendered for f in n.files] + [f"{top}.v"]
    design.save()
    return design


def hw_node_specs(model: Any) -> list[HWNodeSpec]:
    """The contiguous chain of HW nodes of a compiled dataflow graph (a qonnx ModelWrapper)."""
    from onnx import helper

    specs = []
    for node in model.graph.node:
        if node.domain != HW_DOMAIN:
            continue
        attrs: dict[str, Any] = {}
        try:
            from qonnx.custom_op.registry import getCustomOp

            inst = getCustomOp(node)
            for name in inst.get_nodeattr_types():
                try:
                    attrs[name] = inst.get_nodeattr(name)
                except Exception:  # attribute without a default and not set
                    pass
        except Exception as exc:  # op classes not importable: fall back to the raw attributes
            log.debug("getCustomOp(%s) failed (%s); reading raw attributes", node.name, exc)
        for at in node.attribute:
            if at.name not in attrs:
                v = helper.get_attribute_value(at)
                attrs[at.name] = v.decode() if isinstance(v, bytes) else v
        inits = {}
        if node.op_type in ("MVAU",) and len(node.input) > 1:
            inits["W"] = model.get_initializer(node.input[1])
            if len(node.input) > 2 and node.input[2]:
                inits["T"] = model.get_initializer(node.input[2])
        elif node.op_type == "Thresholding":
            inits["T"] = model.get_initializer(node.input[1])
        specs.append(HWNodeSpec(node.name or node.op_type, node.op_type, attrs, inits))
    return specs


def render_model(model: Any, out_dir: str | Path, top: str = DEFAULT_TOP) -> RTLDesign:
    """Render the HW part of a compiled dataflow graph (ModelWrapper or path) into `out_dir`."""
    if isinstance(model, (str, Path)):
        from qonnx.core.modelwrapper import ModelWrapper

        model = ModelWrapper(str(model))
    specs = hw_node_specs(model)
    if not specs:
        raise UnsupportedError(f"the graph has no nodes of domain {HW_DOMAIN}")
    return render_nodes(specs, out_dir, top)


def design_summary(design: RTLDesign) -> str:
    """One line per node, for logs."""
    return "\n".join(f"{n.inst}: {n.op_type} in {n.in_width}b x{n.in_stream.words_per_frame} "
                     f"out {n.out_width}b x{n.out_stream.words_per_frame}" for n in design.nodes)


__all__ = ["DType", "HWNodeSpec", "NodeRTL", "RTLDesign", "StreamSpec", "dtype", "hw_node_specs",
           "render_model", "render_nodes", "sanitize_identifiers", "signed_bits", "design_summary"]
