"""StreamingMaxPool (kernel = stride, NHWC): everything about the op in one place.

Same attribute, same meaning as FINN: FINN's StreamingMaxPool folds channels (``PE``) only in
its 1-D variant; the 2-D pool (the only one this project builds: square windows) takes all
``NumChannels`` channels in one stream word whatever ``PE`` says, one pixel per cycle. So a
FINN folding that leaves the pool at its default (``PE`` 1, as finn-examples' CNV foldings do)
gets the same pool here: ``H*W`` cycles, a ``NumChannels``-wide stream, no width converter to a
fully parallel producer. The template is parametric in its lanes; the generator instantiates it
with ``NumChannels`` lanes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow.cost import RAM_BLOCK, RAM_DISTRIBUTED, _i, _memory, ram_code, res_out
from codesign.dataflow.ops.base import _clog2, HWCustomOp, as_pair, param_dt, ram_auto_in_bram
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _stream, dtype
from codesign.errors import UnsupportedError


def maxpool(x: np.ndarray, k: int) -> np.ndarray:
    """Max-pool with kernel = stride = k in NHWC; remainder rows/columns are dropped."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    oh, ow = h // k, w // k
    x = x[:, : oh * k, : ow * k, :].reshape(n, oh, k, ow, k, c)
    return x.max(axis=(2, 4))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``maxpool_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single StreamingMaxPool nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [126.5814, 2.6531, 1.3186],
    "FF": [91.0, 7.0, 6.0],  # fitted 89.0; + the two registered forwarding selects (measured +2 FF)
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def _row_buffer_style(depth: Any, width: Any) -> np.ndarray:
    """The row buffer has no ram_style: Yosys takes block RAM only where the LUTRAM would cost
    it more (``ram_auto_in_bram``; 896 x 2 stays in 14 RAM64M)."""
    return np.where(ram_auto_in_bram(depth, width), RAM_BLOCK, RAM_DISTRIBUTED)


def maxpool_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_maxpool.v (columns of RESOURCE_COEFFS).

    One row buffer of BD = (W/k)*(C/PE) words of PE*b bits (running maxima); per lane a
    compare and select against the row word or one of the two forwarded words; registers
    rd1, rd2, x1, x2, two forwarded words and the output (7 words).
    LUT: [1, word bits (forwarding mux, select, compare and the row buffer's RAM32M: ~2.7 LUT a
    bit in Yosys), lanes * max(b - 2, 0) (the part of a lane's compare that no longer fits the
    select's LUT: a 1- or 2-bit max costs the same per bit, 128 x 1 bit = 64 x 2 bits = 465 LUT)];
    the address width is left out: fitted, it took 22-41 LUT a bit from the constant and missed
    the held-out 3x3 pool by 12-25 %; the row buffer is 32 words or fewer in every corpus design
    (CNV's pools: 14), so its depth has no column of its own.
    FF: [1, word bits, address bits] (the 16-bit position counters are in the constant)."""
    depth = (_i(p["W"]) // _i(p["k"])) * (_i(p["C"]) // _i(p["PE"]))
    width = _i(p["PE"]) * _i(p["bits"])
    baw = np.maximum(_clog2(depth), 1)
    one = np.ones_like(width)
    return {"LUT": [one, width, _i(p["PE"]) * np.maximum(_i(p["bits"]) - 2, 0)], "FF": [one, width, baw]}


def maxpool_cost(H: Any, W: Any, k: Any, C: Any, PE: Any, bits: Any, ram_style: Any = 0) -> dict[str, np.ndarray]:
    """Cycles and resources of codesign_maxpool.v: ``maxpool_resource_features`` times the
    fitted RESOURCE_COEFFS; BRAM18 of the row buffer by the aspect table (the template leaves
    the RAM style to Yosys, so ``ram_style`` does not change the count)."""
    P = _i(PE)
    depth = (_i(W) // _i(k)) * (_i(C) // P)
    width = P * _i(bits)
    mem = _memory(depth, width, _row_buffer_style(depth, width))
    f = maxpool_resource_features(dict(W=W, k=k, C=C, PE=PE, bits=bits))
    ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
    out = res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, mem["BRAM_18K"], mem["URAM"], 0, mem["bits"])
    out["cycles"] = _i(H) * _i(W) * (_i(C) // P)
    return out


class StreamingMaxPool(HWCustomOp):
    """Max-pool, kernel = stride, NHWC; remainder rows/columns dropped."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "ImgDim": ("ints", True, []),
            "PoolDim": ("ints", True, []),
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "dataType": ("s", True, ""),
        }

    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        return (1, h, w, self.get_nodeattr("NumChannels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        kh, kw = self.get_nodeattr("PoolDim")
        return (1, h // kh, w // kw, self.get_nodeattr("NumChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        """FINN's 2-D pool: one word of all channels per pixel (``PE`` does not fold it)."""
        n, h, w, c = self.get_normal_input_shape()
        return (n, h, w, 1, c)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_output_shape()
        return (n, h, w, 1, c)

    def verify_folding(self) -> list[str]:
        msgs: list[str] = []
        kh, kw = self.get_nodeattr("PoolDim")
        if kh != kw:
            msgs.append(f"PoolDim must be square, got {[kh, kw]}")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return maxpool(x, int(self.get_nodeattr("PoolDim")[0]))

    # -- the op's models -----------------------------------------------------------------------
    #: FINN's folding attribute of the op (it folds only FINN's 1-D pool; see the module docstring)
    finn_folding_attrs = ("PE",)
    #: FINN's names before 0.10 (folding configs of older FINN releases)
    finn_legacy_names = ("StreamingMaxPool_Batch",)
    #: FINN+ 1.6.1 maps a max pool to a sliding window plus `Pool`; both take all channels per
    #: word, as our pool does (``finn_folding_for``)
    finn_lowering = (("ConvolutionInputGenerator", {"PE": "SIMD"}), ("Pool", {"PE": "PE"}))
    #: nothing to fold: the 2-D pool is channel-parallel (FINN's semantics)
    fold_dims: dict[str, tuple[str, str]] = {}
    in_fold_attr, out_fold_attr = None, None
    template = "codesign_maxpool.v"

    @classmethod
    def finn_folding_for(cls, attrs):
        """FINN+'s sliding window and Pool for this pool take NumChannels per word (our pool's
        lanes), so FINN+ builds the same channel-parallel pool."""
        c = attrs.get("NumChannels")
        if c is None:
            return super().finn_folding_for(attrs)
        return [{"SIMD": int(c)}, {"PE": int(c)}]

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        """``PE`` in the parameters is the template's lanes: NumChannels (FINN's 2-D pool
        ignores the ``PE`` attribute, so does this one)."""
        dt = param_dt(a, "dataType", tensor_dt, "input", str(a.get("name", "StreamingMaxPool node")))
        h, w = as_pair(a["ImgDim"])
        c = int(a["NumChannels"])
        return dict(H=h, W=w, k=as_pair(a["PoolDim"])[0], C=c, PE=c,
                    bits=dt.bitwidth(), ram_style=str(a.get("ram_style", "auto")))

    @classmethod
    def cycles(cls, p):
        """H*W*C/lanes (H*W: all channels per word): every input word is read once, one per
        clock; a window's maximum leaves with its last input word (the RTL never stalls its
        input to emit). FINN's HLS estimate, H*W*(1 + 1/k^2), adds the output words; ours
        overlaps them with the input."""
        return _i(p["H"]) * _i(p["W"]) * (_i(p["C"]) // _i(p["PE"]))

    @classmethod
    def resources(cls, p, dsp_family=0):
        return maxpool_cost(p["H"], p["W"], p["k"], p["C"], p["PE"], p["bits"], ram_code(p["ram_style"]))

    resource_features = staticmethod(maxpool_resource_features)

    @classmethod
    def pipeline_depth(cls, p):
        """codesign_maxpool.v: two-stage read-modify-write of the row buffer, then the output
        register: 3 cycles after the word that completes a window."""
        return np.asarray(3, dtype=np.int64)

    @classmethod
    def io_pattern(cls, p):
        """One word in per clock; the CF words of a window's last pixel also go out."""
        h, w, k, cf = int(p["H"]), int(p["W"]), int(p["k"]), int(p["C"]) // int(p["PE"])
        n = h * w * cf
        r, c = np.divmod(np.arange(h * w), w)
        last = (r < (h // k) * k) & (c < (w // k) * k) & (r % k == k - 1) & (c % k == k - 1)
        pix = np.nonzero(last)[0]
        prod_ = (pix[:, None] * cf + np.arange(cf)[None, :]).ravel()
        return n, np.arange(n), prod_

    #: short name of the single-node example builder (``codesign.hw.opspecs.maxpool_spec``)
    example_name = "maxpool"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_maxpool(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_maxpool(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    ih, iw = [int(v) for v in _attr(a, "ImgDim")]
    kh, kw = [int(v) for v in _attr(a, "PoolDim")]
    if kh != kw:
        raise UnsupportedError(f"{spec.name}: StreamingMaxPool RTL needs a square PoolDim, got {[kh, kw]}")
    C = int(_attr(a, "NumChannels"))
    PE = C  # FINN's 2-D pool: all channels per word, whatever the PE attribute says
    dt = dtype(_attr(a, "dataType"))
    CF = C // PE
    params = _p({"IH": ih, "IW": iw, "C": C, "PE": PE, "K": kh, "BITS": dt.bits, "SIGNED": dt.signed})
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_maxpool", params,
                   _stream(dt, PE, ih * iw * CF), _stream(dt, PE, (ih // kh) * (iw // kh) * CF), [],
                   StreamingMaxPool.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "pool", ih: int = 8, C: int = 4, PE: int = 1, k: int = 2, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingMaxPool", dict(ImgDim=[ih, ih], PoolDim=[k, k], NumChannels=C, PE=PE,
                                                     dataType=dt))

