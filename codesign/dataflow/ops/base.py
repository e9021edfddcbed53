"""Common machinery of the HW custom ops: attribute access, datatypes, stream helpers.

Every HW op is a qonnx ``CustomOp`` so that ``qonnx.core.onnx_exec.execute_onnx`` runs a
compiled graph through the golden numpy functions of ``codesign.dataflow.golden``. The shape
and stream helpers follow FINN's names (``get_folded_input_shape``, ``get_instream_width``, ...)
because the folding/cost and RTL code is written against those names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

DOMAIN = "codesign.dataflow.ops"


def dtype_bits(dt: DataType) -> int:
    """Bit width of a qonnx datatype on a stream (BIPOLAR is one bit)."""
    return int(dt.bitwidth())


def prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))


class HWCustomOp(CustomOp):
    """Base of the codesign HW ops.

    Subclasses define the attributes, ``_execute`` (golden numpy) and the normal/folded shapes;
    the ONNX plumbing (shape inference, datatype annotation, verification) lives here so each
    op stays a page long.
    """

    #: attributes every HW op understands (FINN carries similar bookkeeping attributes)
    _common_attrs: dict[str, tuple] = {
        "backend": ("s", False, "codesign"),
        "preferred_impl_style": ("s", False, "rtl"),
    }

    def get_nodeattr_types(self) -> dict[str, tuple]:
        attrs = dict(self._common_attrs)
        attrs.update(self.op_attrs())
        return attrs

    def op_attrs(self) -> dict[str, tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- datatypes -------------------------------------------------------------------------
    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("inputDataType")]

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("outputDataType")]

    # -- shapes ----------------------------------------------------------------------------
    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_instream_width(self, ind: int = 0) -> int:
        """Bits per input stream word: the folded innermost dimension times the element bits."""
        return int(self.get_folded_input_shape(ind)[-1]) * dtype_bits(self.get_input_datatype(ind))

    def get_outstream_width(self, ind: int = 0) -> int:
        return int(self.get_folded_output_shape(ind)[-1]) * dtype_bits(self.get_output_datatype(ind))

    def get_instream_width_padded(self, ind: int = 0) -> int:
        """Stream width rounded up to whole bytes (AXI-Stream convention)."""
        return -(-self.get_instream_width(ind) // 8) * 8

    def get_outstream_width_padded(self, ind: int = 0) -> int:
        return -(-self.get_outstream_width(ind) // 8) * 8

    def get_number_output_values(self) -> int:
        """Number of output stream words per input frame."""
        return prod(self.get_folded_output_shape()[:-1])

    def get_number_input_values(self) -> int:
        return prod(self.get_folded_input_shape()[:-1])

    def get_exp_cycles(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- ONNX plumbing ---------------------------------------------------------------------
    def make_shape_compatible_op(self, model: Any):
        """A constant of the normal output shape stands in for the op in shape inference."""
        return self.make_const_shape_op(list(self.get_normal_output_shape()))

    def infer_node_datatype(self, model: Any) -> None:
        """Annotate the output with the op's declared output datatype."""
        model.set_tensor_datatype(self.onnx_node.output[0], self.get_output_datatype())

    def verify_node(self) -> list[str]:
        """Check attributes (required ones present, folding legal); returns info messages."""
        msgs: list[str] = []
        for name, spec in self.get_nodeattr_types().items():
            if spec[1]:
                try:
                    self.get_nodeattr(name)
                except Exception as e:  # noqa: BLE001 - report, do not raise
                    msgs.append(f"missing required attribute {name}: {e}")
        if not msgs:  # the folding checks need the required attributes
            msgs.extend(self.verify_folding())
        if not msgs:
            msgs.append("ok")
        return msgs

    def verify_folding(self) -> list[str]:
        return []

    def execute_node(self, context: dict, graph: Any) -> None:
        node = self.onnx_node
        inputs = [context[name] for name in node.input]
        out = self._execute(*inputs)
        expected = tuple(context[node.output[0]].shape) if node.output[0] in context else None
        # float64 holds every integer below 2^53 exactly (float32 only below 2^24: a 784-input
        # 8x8-bit accumulator already exceeds that); a tensor read by a standard op on the host
        # stays float32, the type onnxruntime expects there
        host_reader = any(n.domain != DOMAIN for n in graph.node if node.output[0] in n.input)
        out = np.asarray(out, dtype=np.float32 if host_reader else np.float64)
        if expected is not None and expected != tuple(out.shape) and prod(expected) == out.size:
            out = out.reshape(expected)
        context[node.output[0]] = out

    def _execute(self, *inputs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def make_hw_node(op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any):
    """Build an ONNX node of the codesign HW domain."""
    return helper.make_node(op_type, inputs, outputs, name=name, domain=DOMAIN, **attrs)


def bipolar_from_count(y: np.ndarray) -> np.ndarray:
    """Map a one-threshold count {0, 1} to the bipolar tensor values {-1, +1}."""
    return 2 * np.asarray(y) - 1
