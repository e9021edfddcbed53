"""StreamingFIFO (a FIFO of ``depth`` words between two nodes): everything about the op."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.dataflow.cost import (FIFO_SRL_MAX_BITS, RAM_AUTO, RAM_DISTRIBUTED, _i, bram18_count, cdiv, ram_code,
                                    res_out)
from codesign.dataflow.ops.base import IdentityStreamOp, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import UnsupportedError


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
    out = res_out(lut, ff, bram, 0, 0, d * w)
    out["cycles"] = _i(words)
    return out


class StreamingFIFO(IdentityStreamOp):
    """A FIFO of ``depth`` words between two HW nodes; values unchanged."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "depth": ("i", True, 2),
            "folded_shape": ("ints", True, []),
            "dataType": ("s", True, ""),
            "ram_style": ("s", False, "auto"),
            "impl_style": ("s", False, "rtl"),
        }

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        fs = [int(v) for v in self.get_nodeattr("folded_shape")]
        return tuple(fs[:-2]) + (fs[-2] * fs[-1],)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(int(v) for v in self.get_nodeattr("folded_shape"))

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_folded_input_shape()

    def verify_folding(self) -> list[str]:
        return [] if self.get_nodeattr("depth") >= 1 else ["depth must be >= 1"]

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("depth", "impl_style", "ram_style")
    finn_inserts_itself = True
    inserted_after_folding = True
    is_stream_buffer = True
    template = "codesign_fifo.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "dataType", tensor_dt, "input", str(a.get("name", "FIFO")))
        fs = list(a["folded_shape"])
        return dict(depth=int(a["depth"]), width=int(fs[-1]) * dt.bitwidth(), words=prod_or_int(fs[:-1]),
                    ram_style=str(a.get("ram_style", a.get("impl_style", "auto"))))

    @classmethod
    def cycles(cls, p):
        """One word per clock."""
        return _i(p["words"])

    @classmethod
    def resources(cls, p, dsp_family=0):
        return fifo_cost(p["depth"], p["width"], p["words"], ram_code(p["ram_style"]))

    @classmethod
    def io_pattern(cls, p):
        n = int(p["words"])
        return n, np.arange(n), np.arange(n)

    #: short name of the single-node example builder (``codesign.hw.opspecs.fifo_spec``)
    example_name = "fifo"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_fifo(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_fifo(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
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
                   _stream(dt, fold, words), _stream(dt, fold, words), [], StreamingFIFO.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "fifo", depth: int = 32, fold: int = 4, words: int = 64, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingFIFO", dict(depth=depth, folded_shape=[1, words, fold], dataType=dt))

