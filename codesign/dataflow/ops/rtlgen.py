"""Helpers the ops' RTL generators share (moved here from ``codesign.hw.rtl`` so the op modules
can own their generators while ``dataflow`` still imports nothing from ``hw``).

Stream datatypes, ROM hex files, the rendered-node record and parameter formatting. The
render context itself (output folder, Jinja environment) stays in ``codesign.hw.rtl`` and is
passed to ``HWCustomOp.generate_rtl``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codesign.errors import UnsupportedError


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
    #: the node's stream input / output tensors in the dataflow graph (how the top stitches a
    #: branching graph); empty: the nodes form a chain in list order
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


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
    #: streams of the further ports (``in1_V`` ... of a join, ``out1_V`` ... of a fork)
    extra_in: list[StreamSpec] = field(default_factory=list)
    extra_out: list[StreamSpec] = field(default_factory=list)
    #: the dataflow tensors on the ports (``HWNodeSpec.inputs/outputs``; empty: a chain)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def in_streams(self) -> list[StreamSpec]:
        return [self.in_stream, *self.extra_in]

    @property
    def out_streams(self) -> list[StreamSpec]:
        return [self.out_stream, *self.extra_out]

    @property
    def in_width(self) -> int:
        return self.in_stream.width

    @property
    def out_width(self) -> int:
        return self.out_stream.width


def port_name(direction: str, k: int) -> str:
    """RTL port prefix of stream input/output ``k`` (docs/contracts.md, "Streams"): ``in<k>_V``,
    ``out_V`` for output 0 and ``out<k>_V`` for the further outputs of a fork."""
    if direction == "in":
        return f"in{k}_V"
    return "out_V" if k == 0 else f"out{k}_V"


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
    # "distributed": a ROM in LUT logic ("logic"); Yosys 0.23 finds no LUTRAM mapping for a
    # synchronously read ROM marked "distributed" and stops
    return {"auto": None, "block": "block", "distributed": "logic", "ultra": "block"}.get(style)


def _rom_port(prefix: str, roms: list[dict[str, Any]], addr_width: int, addr_per_rom: bool = False) -> dict[str, Any]:
    """One ROM port of rom_node.v.j2: the ROMs side by side in q (a ROM with ``banks`` is read
    through its bank registers, read latency 2). ``addr_per_rom``: the core drives one address
    copy per ROM (ROM i reads bits [i*addr_width +: addr_width]), so shallow ROMs read through
    one shared address cannot be merged by synthesis into a few high-fanout registers."""
    lsb = 0
    for r in roms:
        r["lsb"] = lsb
        lsb += r["width"]
    return {"prefix": prefix, "roms": roms, "addr_width": addr_width, "q_width": lsb, "addr_per_rom": addr_per_rom}


def _p(params: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for k, v in params.items():
        if isinstance(v, bool):
            v = int(v)
        out.append((k, str(int(v)) if isinstance(v, (int, np.integer)) else str(v)))
    return out


def rand_values(rng: np.random.Generator, dt: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded random integers of a datatype (stand-ins for trained weights in example nodes)."""
    if dt == "BIPOLAR":
        return rng.choice([-1, 1], size=shape)
    bits = int(dt.lstrip("UINT"))
    if dt.startswith("U"):
        return rng.integers(0, 1 << bits, size=shape)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)


def dt_bits(dt: str) -> int:
    """Bits of a datatype name (BIPOLAR/BINARY: 1)."""
    return 1 if dt in ("BIPOLAR", "BINARY") else int(dt.lstrip("UINT"))
