"""StreamingDataWidthConverter (re-packs a stream; values unchanged): everything about the op."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.dataflow.cost import _i, cdiv, res_out
from codesign.dataflow.ops.base import _clog2, IdentityStreamOp, dtype_bits, param_dt, prod_or_int
from codesign.dataflow.ops.rtlgen import HWNodeSpec, NodeRTL, _attr, _p, _prod, _stream, dtype
from codesign.errors import UnsupportedError


def dwc_cost(total_bits: Any, in_width: Any, out_width: Any) -> dict[str, np.ndarray]:
    """Formula-level entry point: cycles and resources of the width converter."""
    return StreamingDataWidthConverter.cost(dict(total_bits=total_bits, in_width=in_width, out_width=out_width))


# ---- resource coefficients (fitted by benchmarks/bench_costmodel.py; begin) ----
#: LUT and FF = coefficients . ``dwc_resource_features``: non-negative least squares over the training half of
#: the Yosys 0.23 ``synth_xilinx -family xc7`` corpus of single StreamingDataWidthConverter nodes
RESOURCE_COEFFS: dict[str, list[float]] = {
    "LUT": [0.0, 0.1039, 6.9217],
    "FF": [1.3216, 1.0576, 0.0],
}
# ---- resource coefficients (end) ----


def _lin(coeffs: list[float], feats: list[Any]) -> np.ndarray:
    """coefficients . features (arrays broadcast)."""
    return sum(c * np.asarray(x, np.float64) for c, x in zip(coeffs, feats))


def dwc_resource_features(p: Any) -> dict[str, list[Any]]:
    """Structural LUT / FF features of codesign_dwc.v (columns of RESOURCE_COEFFS): one
    BW = in + out bit register shifted out OUTW bits at a time; the input is inserted by a
    variable left shift by the CW = clog2(BW+1) bit fill count. Yosys cannot know which counts
    are reachable, so register bit j selects among min(j + 1, INW) input bits (the shifter's
    fan-in, summed over j), and the count takes BW/gcd(INW, OUTW) reachable values (the keep
    mask and select decode).
    LUT: [1, shifter fan-in, fill positions]; FF: [1, BW, CW]."""
    iw, ow = _i(p["in_width"]), _i(p["out_width"])
    bw = iw + ow
    cw = _clog2(bw + 1)
    # sum_{j < BW} min(j + 1, INW) = INW (INW + 1) / 2 + (BW - INW) INW  (BW >= INW)
    fan = iw * (iw + 1) // 2 + (bw - iw) * iw
    one = np.ones_like(bw)
    return {"LUT": [one, fan, bw // np.gcd(iw, ow)], "FF": [one, bw, cw]}


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
    return NodeRTL(spec.name, inst, spec.op_type, "codesign_dwc", params,
                   _stream(dt, inw // dt.bits, frame_bits // inw), _stream(dt, outw // dt.bits, frame_bits // outw),
                   [], StreamingDataWidthConverter.rtl_cycles(spec))


# --------------------------------------------------------------------------- example node

def _example_node(name: str = "dwc", inw: int = 8, outw: int = 32, elems: int = 64, dt: str = "UINT4") -> HWNodeSpec:
    return HWNodeSpec(name, "StreamingDataWidthConverter", dict(inWidth=inw, outWidth=outw, shape=[1, elems],
                                                                dataType=dt))

