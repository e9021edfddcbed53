"""Data-movement HW ops: SlidingWindow, StreamingMaxPool, FMPadding, LabelSelect, DWC, FIFO."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow import golden
from codesign.dataflow.ops.base import HWCustomOp, dtype_bits


class SlidingWindow(HWCustomOp):
    """Im2col in NHWC (FINN's ConvolutionInputGenerator): (1,IH,IW,C) -> (1,OH,OW,kh*kw*C)."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "ConvKernelDim": ("ints", True, []),
            "IFMChannels": ("i", True, 0),
            "IFMDim": ("ints", True, []),
            "OFMDim": ("ints", True, []),
            "SIMD": ("i", False, 1),
            "Stride": ("ints", True, []),
            "Dilation": ("ints", False, [1, 1]),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "depthwise": ("i", False, 0, {0, 1}),
            "ram_style": ("s", False, "distributed"),
        }

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        ih, iw = self.get_nodeattr("IFMDim")
        return (1, ih, iw, self.get_nodeattr("IFMChannels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        oh, ow = self.get_nodeattr("OFMDim")
        kh, kw = self.get_nodeattr("ConvKernelDim")
        return (1, oh, ow, kh * kw * self.get_nodeattr("IFMChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        n, h, w, c = self.get_normal_input_shape()
        return (n, h, w, c // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        n, h, w, k = self.get_normal_output_shape()
        return (n, h, w, k // simd, simd)

    def get_exp_cycles(self) -> int:
        """FINN default mode: buf + OH * max(OW*kw*kh*CF, sw*IW*CF), CF = C/SIMD."""
        kh, kw = self.get_nodeattr("ConvKernelDim")
        _, iw = self.get_nodeattr("IFMDim")
        oh, ow = self.get_nodeattr("OFMDim")
        _, sw = self.get_nodeattr("Stride")
        dh, dw = self.get_nodeattr("Dilation")
        cf = self.get_nodeattr("IFMChannels") // self.get_nodeattr("SIMD")
        buf = ((kh - 1) * dh * iw + (kw - 1) * dw + 1) * cf
        return int(buf + oh * max(ow * kw * kh * cf, sw * iw * cf))

    def verify_folding(self) -> list[str]:
        c, simd = self.get_nodeattr("IFMChannels"), self.get_nodeattr("SIMD")
        msgs = [] if c % simd == 0 else [f"IFMChannels={c} is not divisible by SIMD={simd}"]
        ih, iw = self.get_nodeattr("IFMDim")
        kh, kw = self.get_nodeattr("ConvKernelDim")
        sh, sw = self.get_nodeattr("Stride")
        dh, dw = self.get_nodeattr("Dilation")
        exp = [(ih - dh * (kh - 1) - 1) // sh + 1, (iw - dw * (kw - 1) - 1) // sw + 1]
        if list(self.get_nodeattr("OFMDim")) != exp:
            msgs.append(f"OFMDim={self.get_nodeattr('OFMDim')} but the geometry gives {exp}")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return golden.sliding_window(x, tuple(self.get_nodeattr("ConvKernelDim")),
                                     tuple(self.get_nodeattr("Stride")),
                                     tuple(self.get_nodeattr("Dilation")))


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
        n, h, w, c = self.get_normal_input_shape()
        pe = self.get_nodeattr("PE")
        return (n, h, w, c // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_output_shape()
        pe = self.get_nodeattr("PE")
        return (n, h, w, c // pe, pe)

    def get_exp_cycles(self) -> int:
        """One input word per cycle plus the output rows: IH*IW*CF*(1 + 1/(kh*kw))."""
        h, w = self.get_nodeattr("ImgDim")
        kh, kw = self.get_nodeattr("PoolDim")
        cf = self.get_nodeattr("NumChannels") // self.get_nodeattr("PE")
        return int(h * w * cf * (1 + 1 / (kh * kw)))

    def verify_folding(self) -> list[str]:
        c, pe = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE")
        msgs = [] if c % pe == 0 else [f"NumChannels={c} is not divisible by PE={pe}"]
        kh, kw = self.get_nodeattr("PoolDim")
        if kh != kw:
            msgs.append(f"PoolDim must be square, got {[kh, kw]}")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return golden.maxpool(x, int(self.get_nodeattr("PoolDim")[0]))


class FMPadding(HWCustomOp):
    """Zero padding of an NHWC feature map; Padding = [top, left, bottom, right]."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "ImgDim": ("ints", True, []),
            "Padding": ("ints", True, []),
            "NumChannels": ("i", True, 0),
            "SIMD": ("i", False, 1),
            "inputDataType": ("s", True, ""),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return self.get_input_datatype()

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        return (1, h, w, self.get_nodeattr("NumChannels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        h, w = self.get_nodeattr("ImgDim")
        top, left, bottom, right = self.get_nodeattr("Padding")
        return (1, h + top + bottom, w + left + right, self.get_nodeattr("NumChannels"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_input_shape()
        simd = self.get_nodeattr("SIMD")
        return (n, h, w, c // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        n, h, w, c = self.get_normal_output_shape()
        simd = self.get_nodeattr("SIMD")
        return (n, h, w, c // simd, simd)

    def get_exp_cycles(self) -> int:
        """FINN: (C/SIMD) * OH * OW."""
        _, oh, ow, c = self.get_normal_output_shape()
        return c // self.get_nodeattr("SIMD") * oh * ow

    def verify_folding(self) -> list[str]:
        c, simd = self.get_nodeattr("NumChannels"), self.get_nodeattr("SIMD")
        return [] if c % simd == 0 else [f"NumChannels={c} is not divisible by SIMD={simd}"]

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return golden.fmpadding(x, tuple(self.get_nodeattr("Padding")))


class LabelSelect(HWCustomOp):
    """Top-K: indices of the K largest values, descending, ties to the lower index."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "Labels": ("i", True, 0),
            "PE": ("i", False, 1),
            "K": ("i", True, 1),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", False, ""),
        }

    def get_output_datatype(self, ind: int = 0) -> DataType:
        odt = self.get_nodeattr("outputDataType")
        if odt:
            return DataType[odt]
        return DataType.get_smallest_possible(self.get_nodeattr("Labels") - 1)

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("Labels"))

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("K"))

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return (1, self.get_nodeattr("Labels") // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return (1, self.get_nodeattr("K"), 1)

    def get_exp_cycles(self) -> int:
        """FINN: Labels / PE."""
        return self.get_nodeattr("Labels") // self.get_nodeattr("PE")

    def verify_folding(self) -> list[str]:
        lab, pe, k = self.get_nodeattr("Labels"), self.get_nodeattr("PE"), self.get_nodeattr("K")
        msgs = [] if lab % pe == 0 else [f"Labels={lab} is not divisible by PE={pe}"]
        if not 1 <= k <= lab:
            msgs.append(f"K={k} must lie in [1, {lab}]")
        return msgs

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return golden.label_select(x.reshape(x.shape[0], -1), self.get_nodeattr("K"))


class _IdentityStreamOp(HWCustomOp):
    """Base of the stream plumbing ops whose output equals their input."""

    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, copy=True)


class StreamingDataWidthConverter(_IdentityStreamOp):
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

    def get_exp_cycles(self) -> int:
        """The larger of the input and output word counts."""
        return max(self.get_number_input_values(), self.get_number_output_values())

    def verify_folding(self) -> list[str]:
        bits = dtype_bits(self.get_input_datatype())
        c = self.get_normal_input_shape()[-1]
        msgs = []
        for name in ("inWidth", "outWidth"):
            w = self.get_nodeattr(name)
            if w % bits != 0 or c % (w // bits) != 0:
                msgs.append(f"{name}={w} is not a whole number of {bits}-bit elements dividing {c}")
        return msgs


class StreamingFIFO(_IdentityStreamOp):
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

    def get_exp_cycles(self) -> int:
        return self.get_number_output_values()

    def verify_folding(self) -> list[str]:
        return [] if self.get_nodeattr("depth") >= 1 else ["depth must be >= 1"]
