"""MVAU (matrix-vector-activation unit) and the standalone Thresholding op."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from codesign.dataflow import golden
from codesign.dataflow.ops.base import HWCustomOp, bipolar_from_count, prod


class MVAU(HWCustomOp):
    """acc = x @ W, then optionally ``out = ActVal + #{acc >= T[c, i]}``.

    A BIPOLAR ``outputDataType`` (one threshold, ActVal 0) means the count {0, 1} is the bit
    of a bipolar value, so the tensor holds 2*count - 1 (-1/+1), as the contract requires of
    every bipolar tensor. An input of shape ``(N, H, W, C)`` with ``numInputVectors == [1]``
    and ``H*W*C == MW`` is read as its NHWC flattening: the stream order is the same, which is
    how a conv feature map feeds the first FC layer without a reshape node on the chain.
    """

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "MW": ("i", True, 0),
            "MH": ("i", True, 0),
            "PE": ("i", False, 1),
            "SIMD": ("i", False, 1),
            "inputDataType": ("s", True, ""),
            "weightDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "accDataType": ("s", False, "INT32"),
            "noActivation": ("i", False, 0, {0, 1}),
            "ActVal": ("i", False, 0),
            "binaryXnorMode": ("i", False, 0, {0, 1}),
            "numInputVectors": ("ints", False, [1]),
            "ram_style": ("s", False, "auto"),
            "resType": ("s", False, "lut", {"auto", "lut", "dsp"}),
            "mem_mode": ("s", False, "internal_embedded"),
            "runtime_writeable_weights": ("i", False, 0, {0, 1}),
        }

    def get_weight_datatype(self) -> DataType:
        return DataType[self.get_nodeattr("weightDataType")]

    def get_accumulator_datatype(self) -> DataType:
        return DataType[self.get_nodeattr("accDataType")]

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("MW"),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("MH"),)

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        simd = self.get_nodeattr("SIMD")
        return tuple(self._nv()) + (self.get_nodeattr("MW") // simd, simd)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return tuple(self._nv()) + (self.get_nodeattr("MH") // pe, pe)

    def calc_wmem(self) -> int:
        """Weight memory depth: MW*MH/(PE*SIMD) words of PE*SIMD*W bits."""
        return (self.get_nodeattr("MW") * self.get_nodeattr("MH")
                // (self.get_nodeattr("PE") * self.get_nodeattr("SIMD")))

    def calc_tmem(self) -> int:
        """Threshold memory depth MH/PE (0 without activation)."""
        if self.get_nodeattr("noActivation") == 1:
            return 0
        return self.get_nodeattr("MH") // self.get_nodeattr("PE")

    def get_exp_cycles(self) -> int:
        """FINN: (MH/PE) * (MW/SIMD) * prod(numInputVectors)."""
        return (self.get_nodeattr("MH") // self.get_nodeattr("PE")) * \
            (self.get_nodeattr("MW") // self.get_nodeattr("SIMD")) * prod(self._nv())

    def verify_folding(self) -> list[str]:
        msgs = []
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        if mw % self.get_nodeattr("SIMD") != 0:
            msgs.append(f"MW={mw} is not divisible by SIMD={self.get_nodeattr('SIMD')}")
        if mh % self.get_nodeattr("PE") != 0:
            msgs.append(f"MH={mh} is not divisible by PE={self.get_nodeattr('PE')}")
        n_in = 2 if self.get_nodeattr("noActivation") == 1 else 3
        if len(self.onnx_node.input) != n_in:
            msgs.append(f"expected {n_in} inputs, found {len(self.onnx_node.input)}")
        return msgs

    def _execute(self, x: np.ndarray, W: np.ndarray, T: np.ndarray | None = None) -> np.ndarray:
        mw = self.get_nodeattr("MW")
        if x.shape[-1] != mw:
            if self._nv() == [1] and prod(x.shape[1:]) == mw:
                x = x.reshape(x.shape[0], mw)
            else:
                raise ValueError(f"{self.onnx_node.name}: input {x.shape} does not end in MW={mw}")
        if self.get_nodeattr("noActivation") == 1:
            return golden.mvau(x, W)
        y = golden.mvau(x, W, T, self.get_nodeattr("ActVal"))
        if self.get_output_datatype() == DataType["BIPOLAR"]:
            y = bipolar_from_count(y)
        return y


class Thresholding(HWCustomOp):
    """Channel-wise multi-threshold on the last axis: ``ActVal + #{x >= T[c, i]}``."""

    def op_attrs(self) -> dict[str, tuple]:
        return {
            "NumChannels": ("i", True, 0),
            "PE": ("i", False, 1),
            "numSteps": ("i", True, 1),
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "ActVal": ("i", False, 0),
            "numInputVectors": ("ints", False, [1]),
            "mem_mode": ("s", False, "internal_embedded"),
            "ram_style": ("s", False, "distributed"),
        }

    def _nv(self) -> list[int]:
        return [int(v) for v in self.get_nodeattr("numInputVectors")]

    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        return tuple(self._nv()) + (self.get_nodeattr("NumChannels"),)

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_normal_input_shape()

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:
        pe = self.get_nodeattr("PE")
        return tuple(self._nv()) + (self.get_nodeattr("NumChannels") // pe, pe)

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:
        return self.get_folded_input_shape()

    def calc_tmem(self) -> int:
        return self.get_nodeattr("NumChannels") // self.get_nodeattr("PE")

    def get_exp_cycles(self) -> int:
        """FINN: prod(numInputVectors) * C / PE."""
        return prod(self._nv()) * self.get_nodeattr("NumChannels") // self.get_nodeattr("PE")

    def verify_folding(self) -> list[str]:
        c, pe = self.get_nodeattr("NumChannels"), self.get_nodeattr("PE")
        return [] if c % pe == 0 else [f"NumChannels={c} is not divisible by PE={pe}"]

    def _execute(self, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        y = golden.thresholding(x, T, self.get_nodeattr("ActVal"))
        if self.get_output_datatype() == DataType["BIPOLAR"]:
            y = bipolar_from_count(y)
        return y
