"""StreamingFIFO (a FIFO of ``depth`` words between two nodes): everything about the op."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.dataflow.cost import (RAM_AUTO, _i, bram18_count, cdiv, ram_code,
                                    res_out)
from codesign.dataflow.ops.base import _clog2, IdentityStreamOp, param_dt, prod_or_int, ram_auto_in_bram
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import UnsupportedError


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``fifo_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single StreamingFIFO nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [0.0, 0.9404, 0.0387, 2.0516, 1.0959],
    "FF": [0.0, 1.2774, 0.5039, 0.9922],
}
# ---- resource coefficients (end) ----

#: widest 2-deep FIFO whose words Yosys 0.23 keeps in flip-flops rather than RAM32M (measured:
#: 2 x 4, 2 x 8, 2 x 12 in FFs; 2 x 14 and wider, and 4 x 12, in RAM32M)
FIFO_FF_MAX_WIDTH = 12


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def _fifo_in_bram(depth: Any, width: Any) -> np.ndarray:
    """Yosys 0.23 turns the asynchronous read into a registered one and takes block RAM where
    the LUTRAM would cost it more (``ram_auto_in_bram``; measured: 256 x 16, 1024 x 8 and 94 x
    32 -> RAMB18E1; 128 x 16, 512 x 3 and everything up to 64 deep -> distributed RAM)."""
    return ram_auto_in_bram(depth, width)


def _fifo_in_ff(depth: Any, width: Any) -> np.ndarray:
    """Yosys 0.23 (memory_libmap) leaves a 2-deep FIFO of at most FIFO_FF_MAX_WIDTH bits in
    logic: the two words in flip-flops and a 2:1 read mux per bit, no LUTRAM."""
    return (_i(depth) <= 2) & (_i(width) <= FIFO_FF_MAX_WIDTH)


def fifo_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_fifo.v (columns of RESOURCE_COEFFS).

    Memory: distributed RAM as Yosys maps it (RAM32M = 32 words x 6 bits in 4 LUTs, RAM64M = 64
    x 3 in 4, deeper RAM128X1D = 128 x 1 in 4 LUTs), even at depth 2, or block RAM (then the
    read is registered: width more FFs), or flip-flops for narrow 2-deep FIFOs (``_fifo_in_ff``).
    Read/write pointers of AW = clog2(depth) bits and an occupancy counter of clog2(depth+1) bits.
    LUT: [1, LUTRAM LUTs, read-mux bits (width*ceil(depth/64)*AW, deeper LUTRAM), pointer bits,
    flip-flop read-mux bits]; FF: [1, pointer + counter bits, block-RAM read register, flip-flop words]."""
    d, w = _i(p["depth"]), _i(p["width"])
    aw = np.maximum(_clog2(d), 1)
    ptr = 2 * aw + _clog2(d + 1)
    bram = _fifo_in_bram(d, w)
    in_ff = _fifo_in_ff(d, w) & ~bram
    lram = np.where(bram | in_ff, 0,
                    np.where(d <= 32, 4 * cdiv(w, 6), np.where(d <= 64, 4 * cdiv(w, 3), 4 * w * cdiv(d, 128))))
    mux = np.where(bram | (d <= 64), 0, w * cdiv(d, 64) * aw)
    one = np.ones_like(d)
    return {"LUT": [one, lram, mux, ptr, np.where(in_ff, w, 0)],
            "FF": [one, ptr, np.where(bram, w, 0), np.where(in_ff, d * w, 0)]}


def fifo_cost(depth: Any, width: Any, words: Any, style: Any = RAM_AUTO) -> dict[str, np.ndarray]:
    """FIFO: one word per clock (`words` cycles per frame). ``fifo_resource_features`` times the
    fitted RESOURCE_COEFFS; BRAM18 by the aspect table where ``_fifo_in_bram``
    (the template sets no ram_style: ``style`` does not change what Yosys builds)."""
    d, w = _i(depth), _i(width)
    f = fifo_resource_features(dict(depth=d, width=w))
    ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
    bram = np.where(_fifo_in_bram(d, w), bram18_count(d, w), 0)
    out = res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, bram, np.zeros_like(bram), np.zeros_like(bram), d * w)
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

    resource_features = staticmethod(fifo_resource_features)

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

