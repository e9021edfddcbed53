"""Pack the register that follows an ECP5 block RAM's read port into the RAM's output register.

Why: Yosys' ECP5 memory mapping always writes DP16KD with REGMODE NOREG, so the RAM's read
latch drives the fabric with its slow clock-to-out (5.83 ns at speed grade 6) and a flip-flop
placed far away fails 100 MHz (stitched CNV w1a1: 96.8 MHz with the sliding window's output
register 53 rows from its RAM; 86.1 MHz with one more register after the RAM). Vendor synthesis
packs such a register into the RAM (Vivado into a RAMB18's DOB_REG, Lattice's into the EBR's
output register); this pass does the same on the Yosys JSON netlist before nextpnr, so the proxy
times what a vendor flow would build from the same RTL. The RTL is unchanged: a read register
(the RAM latch) followed by a plain register is exactly OUTREG's two-stage read.

A read port is packed only when it is safe: REGMODE NOREG, the port's clock not inverted, no
read reset, and every used data
output drives exactly one flip-flop's data input and nothing else, all those flip-flops on the
RAM port's clock, without set/reset, sharing one clock enable (which becomes the output clock
enable OCE). Hand-written (no library does this for nextpnr-ecp5); tested on the project's
block-RAM sliding window (tests/test_timing.py).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from codesign.atomic import write_text

log = logging.getLogger(__name__)

_Bit = Any  # an int net bit or a constant string ("0", "1", "x")


def _width(v: Any) -> int:
    """A Yosys JSON parameter: an int, or a binary string."""
    if isinstance(v, int):
        return v
    s = str(v)
    return int(s, 2) if set(s) <= {"0", "1"} else int(s)


def _sinks(module: dict[str, Any]) -> dict[int, list[tuple[str, str]]]:
    """net bit -> [(cell, input port)]; module outputs count as sinks ("<port>", name)."""
    out: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for cname, cell in module["cells"].items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port, "input") != "output":
                for b in bits:
                    if isinstance(b, int):
                        out[b].append((cname, port))
    for pname, port in module.get("ports", {}).items():
        if port.get("direction") in ("output", "inout"):
            for b in port["bits"]:
                if isinstance(b, int):
                    out[b].append(("<port>", pname))
    return out


def _pack_port(module: dict[str, Any], cname: str, x: str, sinks: dict[int, list[tuple[str, str]]]) -> list[str]:
    """Pack read port `x` ("A"/"B") of DP16KD `cname` if safe; returns the flip-flops removed.

    Port B read at 36 bits (Yosys' pseudo-dual-port mapping: DATA_WIDTH_B 36) puts its data on
    DOA and DOB; both halves belong to the read side, clocked by CLKB (a ROM's CLKA is tied
    off, and its DOA bits are still read), whose output clock enable is OCEB (PDPW16KD's
    OCER), so both REGMODEs change and OCEA stays as it is."""
    cell = module["cells"][cname]
    prm, con = cell["parameters"], cell["connections"]
    wide = x == "B" and _width(prm.get("DATA_WIDTH_B", 18)) == 36
    outs = ("A", "B") if wide else (x,)
    for o in outs:
        if prm.get(f"REGMODE_{o}", "NOREG") != "NOREG" or prm.get(f"CLK{o}MUX", f"CLK{o}") != f"CLK{o}":
            return []
    if (_width(prm.get(f"DATA_WIDTH_{x}", 18)) > 18 and not wide) or con.get(f"RST{x}", ["0"]) != ["0"]:
        return []
    clk = con.get(f"CLK{x}")
    ffs: dict[str, str] = {}  # flip-flop -> the DO port it takes
    ce: list[_Bit] | None = None
    for port, bits in con.items():
        if not (port[:3] in tuple(f"DO{o}" for o in outs) and port[3:].isdigit()):
            continue
        b = bits[0]
        users = sinks.get(b, []) if isinstance(b, int) else []
        if not users:
            continue
        if len(users) != 1:
            return []
        ff_name, ff_port = users[0]
        ff = module["cells"].get(ff_name)
        if ff is None or ff["type"] != "TRELLIS_FF" or ff_port != "DI" or ff_name in ffs:
            return []
        fp, fc = ff["parameters"], ff["connections"]
        if fc.get("CLK") != clk or fp.get("CLKMUX", "CLK") != "CLK" or fc.get("LSR", ["0"]) != ["0"]:
            return []
        this_ce = ["1"] if fp.get("CEMUX", "CE") == "1" else fc.get("CE", ["1"])
        if ce is None:
            ce = this_ce
        elif this_ce != ce:
            return []
        ffs[ff_name] = port
    if not ffs or ce is None:
        return []
    for o in outs:
        prm[f"REGMODE_{o}"] = "OUTREG"
    con[f"OCE{x}"] = list(ce)
    for ff_name, port in ffs.items():
        con[port] = list(module["cells"][ff_name]["connections"]["Q"])  # the RAM now drives the Q net
        del module["cells"][ff_name]
    return list(ffs)


def pack_bram_output_registers(netlist: Path, top: str | None = None) -> int:
    """Rewrite `netlist` (Yosys ``synth_ecp5 -json``) in place; returns the registers packed."""
    doc = json.loads(Path(netlist).read_text())
    mods = doc.get("modules", {})
    names = [top] if top and top in mods else [n for n, m in mods.items()
                                              if int(m.get("attributes", {}).get("top", 0) or 0)] or list(mods)
    packed = 0
    ports = 0
    for name in names:
        module = mods[name]
        sinks = _sinks(module)
        for cname in [c for c, cell in module["cells"].items() if cell["type"] == "DP16KD"]:
            for x in ("A", "B"):
                removed = _pack_port(module, cname, x, sinks)
                if removed:
                    ports += 1
                    packed += len(removed)
                    sinks = _sinks(module)  # connections changed
    if packed:
        write_text(Path(netlist), json.dumps(doc))
    log.info("%s: %d flip-flops packed into %d block-RAM output registers", Path(netlist).name, packed, ports)
    return packed
