"""Board database: FPGA part, fabric totals, default clock and AXI width of the supported boards.

Why a table in code: the compiler needs the totals to check that a folding fits, offline.
Totals are per *part* and were checked against the vendor tables:
- XC7Z020 (Pynq-Z1, Pynq-Z2): Zynq-7000 product selection guide / DS190: 53,200 LUT,
  106,400 FF, 140 BRAM36 (= 280 BRAM18), 220 DSP48E1, no URAM. (Also matches
  finn-reference §1 and the 6650-CLB x 8 LUT count quoted on public pages.)
- XCZU3EG (Ultra96-V2): Zynq UltraScale+ MPSoC product selection guide / DS891: 70,560 CLB LUT,
  141,120 CLB FF, 216 BRAM36 (= 432 BRAM18), 0 URAM, 360 DSP48E2.
- XCZU7EV (ZCU104): DS891: 230,400 CLB LUT, 460,800 CLB FF, 312 BRAM36 (= 624 BRAM18),
  96 URAM, 1,728 DSP48E2.
- XCK26 (KV260 = K26 SOM): DS987 (Kria K26 SOM data sheet): 117,120 CLB LUT, 234,240 CLB FF,
  144 BRAM36 (= 288 BRAM18), 64 URAM, 1,248 DSP48E2.
Default clocks: 10 ns on Zynq-7000 (FINN's bnn-pynq builds), 5 ns on UltraScale+ (FINN's
Ultra96/ZCU104/KV260 examples). AXI HP port width: 64 bit on Z1/Z2, 128 bit elsewhere
(finn-reference §1).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from codesign.errors import CodesignError

DSP_FAMILY_CODES = {"DSP48E1": 0, "DSP48E2": 0, "DSP58": 1}


@dataclass(frozen=True)
class Board:
    """One board: its part and the programmable-logic totals the cost model is checked against."""

    name: str
    part: str
    family: str  # "zynq7000" | "zynq_us+"
    LUT: int
    FF: int
    BRAM_18K: int
    URAM: int
    DSP: int
    dsp_type: str
    default_clock_ns: float
    axi_hp_width: int

    @property
    def dsp_family(self) -> int:
        """Code for `codesign.dataflow.cost` (DSP48=0, DSP58=1)."""
        return DSP_FAMILY_CODES[self.dsp_type]

    def resources(self) -> dict[str, int]:
        return {"LUT": self.LUT, "FF": self.FF, "BRAM_18K": self.BRAM_18K, "URAM": self.URAM, "DSP": self.DSP}

    def to_dict(self) -> dict:
        return asdict(self)


_Z020 = dict(part="xc7z020clg400-1", family="zynq7000", LUT=53200, FF=106400, BRAM_18K=280, URAM=0,
             DSP=220, dsp_type="DSP48E1", default_clock_ns=10.0, axi_hp_width=64)

BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(name="Pynq-Z1", **_Z020),
        Board(name="Pynq-Z2", **_Z020),
        Board(name="Ultra96-V2", part="xczu3eg-sbva484-1-i", family="zynq_us+", LUT=70560, FF=141120,
              BRAM_18K=432, URAM=0, DSP=360, dsp_type="DSP48E2", default_clock_ns=5.0, axi_hp_width=128),
        Board(name="ZCU104", part="xczu7ev-ffvc1156-2-e", family="zynq_us+", LUT=230400, FF=460800,
              BRAM_18K=624, URAM=96, DSP=1728, dsp_type="DSP48E2", default_clock_ns=5.0, axi_hp_width=128),
        Board(name="KV260", part="xck26-sfvc784-2LV-c", family="zynq_us+", LUT=117120, FF=234240,
              BRAM_18K=288, URAM=64, DSP=1248, dsp_type="DSP48E2", default_clock_ns=5.0, axi_hp_width=128),
    )
}

_ALIASES = {"kv260_som": "KV260", "kria-kv260": "KV260", "ultra96v2": "Ultra96-V2"}


def get_board(name: str | Board) -> Board:
    """Case-insensitive lookup; an unknown name is an error listing the boards."""
    if isinstance(name, Board):
        return name
    key = str(name).strip().lower()
    for bname, b in BOARDS.items():
        if bname.lower() == key:
            return b
    if key in _ALIASES:
        return BOARDS[_ALIASES[key]]
    close = difflib.get_close_matches(str(name), list(BOARDS), n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise CodesignError(f"unknown board {name!r}{hint}; known boards: {', '.join(BOARDS)}")


def utilisation(totals: dict[str, int], board: Board | str, cap: float = 1.0) -> dict:
    """Per-resource used/available/fraction, the binding resource (highest fraction) and
    whether everything fits under `cap` (fraction of each resource allowed)."""
    b = get_board(board)
    avail = b.resources()
    per: dict[str, dict] = {}
    for r, a in avail.items():
        used = int(totals.get(r, 0))
        frac = used / a if a else (0.0 if used == 0 else float("inf"))
        per[r] = {"used": used, "available": a, "utilisation": frac}
    binding = max(per, key=lambda r: per[r]["utilisation"])
    return {"board": b.name, "part": b.part, "cap": cap, "resources": per, "binding_resource": binding,
            "binding_utilisation": per[binding]["utilisation"],
            "fits": all(v["utilisation"] <= cap for v in per.values())}
