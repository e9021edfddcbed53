"""StreamingDataWidthConverter (re-packs a stream; values unchanged): everything about the op."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.dataflow.cost import _i, cdiv, res_out
from codesign.dataflow.ops.base import _clog2, IdentityStreamOp, dtype_bits, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import UnsupportedError

#: ``dwc_kind``: which module of codesign_dwc.v a width pair gets
DWC_QUEUE, DWC_DOWN, DWC_UP = 0, 1, 2


def dwc_cost(total_bits: Any, in_width: Any, out_width: Any) -> dict[str, np.ndarray]:
    """Formula-level entry point: cycles and resources of the width converter."""
    return StreamingDataWidthConverter.cost(dict(total_bits=total_bits, in_width=in_width, out_width=out_width))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``dwc_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single StreamingDataWidthConverter nodes
#: (this round: fitted on 30 width pairs of the three modules; mean |LUT error| down 1.7 %, queue 12 %)
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [27.6545, 0.3161, 13.3074, 1.0548, 0.6081, 7.3846],
    "FF": [1.3216, 1.0576, 0.0, 1.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def dwc_kind(in_width: Any, out_width: Any) -> np.ndarray:
    """Which module of codesign_dwc.v converts: DWC_DOWN (in = K * out: ``codesign_dwc_down``),
    DWC_UP (out = K * in: ``codesign_dwc_up``) or DWC_QUEUE (any other ratio: the bit queue)."""
    iw, ow = _i(in_width), _i(out_width)
    return np.where(iw % ow == 0, DWC_DOWN, np.where(ow % iw == 0, DWC_UP, DWC_QUEUE))


def dwc_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_dwc.v (columns of RESOURCE_COEFFS), by module.

    Down (in = K * out): one select per bit of the INW-bit shift register (3:1 for the bits that
    take the shifted word, 2:1 for the top OUTW), so LUT columns [1, INW, OUTW]; flip-flops
    exact: 2 INW (register + stage) + clog2(K+1) + 2. Up (out = K * in): every data bit a
    flip-flop with an enable and a fixed input, so a constant's worth of control LUTs;
    flip-flops exact: OUTW (output) + OUTW - INW (collector) + clog2 K (K > 2; for K = 2 the
    counter is the "last" flag) + 2. The bit queue (other ratios): a BW = in + out bit register,
    the input inserted by a CW = clog2(BW+1) stage shifter: LUT columns [1, BW * CW]; FF [1, BW, CW].
    LUT: [queue 1, queue BW*CW, down 1, down INW, down OUTW, up 1];
    FF: [queue 1, queue BW, queue CW, exact integer-ratio count]."""
    iw, ow = _i(p["in_width"]), _i(p["out_width"])
    kind = dwc_kind(iw, ow)
    q, dn, up = kind == DWC_QUEUE, kind == DWC_DOWN, kind == DWC_UP
    bw = iw + ow
    cw = _clog2(bw + 1)
    k = np.where(q, 1, np.maximum(iw, ow) // np.minimum(iw, ow))
    ff_int = np.where(dn, 2 * iw + _clog2(k + 1) + 2, 2 * ow - iw + np.where(k > 2, _clog2(k), 0) + 2)
    z = np.zeros_like(bw)

    def on(mask: Any, v: Any) -> np.ndarray:
        return np.where(mask, v, z)

    return {"LUT": [on(q, 1), on(q, bw * cw), on(dn, 1), on(dn, iw), on(dn, ow), on(up, 1)],
            "FF": [on(q, 1), on(q, bw), on(q, cw), on(~q, ff_int)]}


class StreamingDataWidthConverter(IdentityStreamOp):
    """Re-packs a stream from inWidth- to outWidth-bit words; values unchanged."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "shape": ("ints", True, []),
            "inWidth": ("i", True, 0),
            "outWidth": ("i", True, 0),
            "dataType": ("s", True, ""),
        }

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(int(v) for v in self.get_nodeattr("shape"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def _folded(self, width: int) -> tuple[int, ...]:
        shape = self.get_normal_input_shape()
        per_word = width // dtype_bits(self.get_input_datatype())
        return tuple(shape[:-1]) + (shape[-1] // per_word, per_word)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self._folded(self.get_nodeattr("inWidth"))

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self._folded(self.get_nodeattr("outWidth"))

    def get_instream_width(self, ind: int = 0) -> int:
        return self.get_nodeattr("inWidth")

    def get_outstream_width(self, ind: int = 0) -> int:
        return self.get_nodeattr("outWidth")

    def verify_folding(self) -> list[str]:
        bits = dtype_bits(self.get_input_datatype())
        c = self.get_normal_input_shape()[-1]
        msgs = []
        for name in ("inWidth", "outWidth"):
            w = self.get_nodeattr(name)
            if w % bits != 0 or c % (w // bits) != 0:
                msgs.append(f"{name}={w} is not a whole number of {bits}-bit elements dividing {c}")
        return msgs

    # -- the op's models -----------------------------------------------------------------------
    finn_folding_attrs = ("impl_style",)
    finn_inserts_itself = True
    inserted_after_folding = True
    template = "codesign_dwc.v"

    @classmethod
    def params_from_attrs(cls, a, inits=None, tensor_dt=None):
        dt = param_dt(a, "dataType", tensor_dt, "input", str(a.get("name", "width converter")))
        return dict(total_bits=prod_or_int(a["shape"]) * dt.bitwidth(), in_width=int(a["inWidth"]),
                    out_width=int(a["outWidth"]))

    @classmethod
    def cycles(cls, p):
        """The larger of the input and output word counts (the narrow side moves one word per clock)."""
        return cdiv(p["total_bits"], np.minimum(_i(p["in_width"]), _i(p["out_width"])))

    @classmethod
    def resources(cls, p, dsp_family=0):
        """``dwc_resource_features`` times the fitted RESOURCE_COEFFS (no memories, no DSP)."""
        f = dwc_resource_features(p)
        ff = np.rint(_lin(RESOURCE_COEFFS["FF"], f["FF"])).astype(np.int64)
        return res_out(_lin(RESOURCE_COEFFS["LUT"], f["LUT"]), ff, 0, 0, 0, 0)

    resource_features = staticmethod(dwc_resource_features)

    @classmethod
    def io_pattern(cls, p):
        """The narrow side moves a word every clock; a wide word moves on the clock its first
        (output) or last (input) narrow part does."""
        tb, iw, ow = int(p["total_bits"]), int(p["in_width"]), int(p["out_width"])
        n_in, n_out = tb // iw, tb // ow
        if n_out >= n_in:  # wide input split into narrow outputs
            return n_out, (np.arange(n_in) * iw) // ow, np.arange(n_out)
        return n_in, np.arange(n_in), -(-((np.arange(n_out) + 1) * ow) // iw) - 1

    #: short name of the single-node example builder (``codesign.hw.opspecs.dwc_spec``)
    example_name = "dwc"

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> HWNodeSpec:
        """One node of this op with seeded random weights/thresholds at a chosen folding and
        bit width (timing, synthesis and RTL tests, the cost-model corpus)."""
        return _example_node(*args, **kw)

    @classmethod
    def generate_rtl(cls, spec, inst, ctx):
        return _gen_dwc(spec, inst, ctx)


# --------------------------------------------------------------------------- RTL generator (moved from hw/rtl.py)

def _gen_dwc(spec: HWNodeSpec, inst: str, ctx: Any) -> NodeRTL:
    a = spec.attrs
    dt = dtype(_attr(a, "dataType"))
    inw, outw = int(_attr(a, "inWidth")), int(_attr(a, "outWidth"))
    if inw % dt.bits or outw % dt.bits:
        raise UnsupportedError(f"{spec.name}: widths {inw}/{outw} are not multiples of {dt.bits}-bit elements")
    frame_bits = _prod(_attr(a, "shape")) * dt.bits
    if frame_bits % inw or frame_bits % outw:
        raise UnsupportedError(f"{spec.name}: frame of {frame_bits} bits does not split into {inw}/{outw}-bit words")
    params = _p({"INW": inw, "OUTW": outw})
    module = {DWC_DOWN: "codesign_dwc_down", DWC_UP: "codesign_dwc_up", DWC_QUEUE: "codesign_dwc"}[int(dwc_kind(inw, outw))]
    return NodeRTL(spec.name, inst, spec.op_type, module, params,
                   _stream(dt, inw // dt.bits, frame_bits // inw), _stream(dt, outw // dt.bits, frame_bits // outw),
                   [], StreamingDataWidthConverter.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "dwc", inw: int = 8, outw: int = 32, elems: int = 64, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingDataWidthConverter", dict(inWidth=inw, outWidth=outw, shape=[1, elems],
                                                                dataType=dt))

