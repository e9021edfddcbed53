"""The HW custom ops of the codesign dataflow graph (ONNX domain ``codesign.dataflow.ops``).

Package registration: ``OPS`` lists the op classes, one module each under this package, and
``custom_op`` is the table qonnx's registry reads (it imports the module named by a node's
domain and looks the op type up in ``custom_op``). Everything else in the project asks an op
class (``op_class``) instead of keeping its own op-type table.
"""

from __future__ import annotations

from codesign.dataflow.ops.addstreams import AddStreams
from codesign.dataflow.ops.base import DOMAIN, HWCustomOp, make_hw_node
from codesign.dataflow.ops.concat import StreamingConcat
from codesign.dataflow.ops.duplicate import DuplicateStreams
from codesign.dataflow.ops.dwc import StreamingDataWidthConverter
from codesign.dataflow.ops.fifo import StreamingFIFO
from codesign.dataflow.ops.fmpadding import FMPadding
from codesign.dataflow.ops.labelselect import LabelSelect
from codesign.dataflow.ops.maxpool import StreamingMaxPool
from codesign.dataflow.ops.mvau import MVAU
from codesign.dataflow.ops.sliding_window import SlidingWindow
from codesign.dataflow.ops.thresholding import Thresholding
from codesign.dataflow.ops.vvau import VVAU
from codesign.dataflow.ops.windowmax import WindowMax

#: every registered HW op class (adding an op: one module here plus its Verilog template)
OPS: tuple[type[HWCustomOp], ...] = (MVAU, Thresholding, SlidingWindow, StreamingMaxPool, FMPadding, LabelSelect,
                                     StreamingDataWidthConverter, StreamingFIFO, VVAU, DuplicateStreams, AddStreams,
                                     StreamingConcat, WindowMax)

custom_op: dict[str, type[HWCustomOp]] = {cls.__name__: cls for cls in OPS}


def op_class(op_type: str, node_name: str = "") -> type[HWCustomOp]:
    """The op class of ``op_type``; an UnsupportedError naming the known ops otherwise."""
    cls = custom_op.get(op_type)
    if cls is None:
        from codesign.errors import UnsupportedError

        where = f"{node_name}: " if node_name else ""
        raise UnsupportedError(f"{where}no HW op {op_type!r}; known: {', '.join(custom_op)}")
    return cls


def find_op(predicate) -> list[type[HWCustomOp]]:
    """The op classes for which ``predicate(cls)`` holds (e.g. ``lambda c: c.is_stream_buffer``)."""
    return [cls for cls in OPS if predicate(cls)]


__all__ = ["DOMAIN", "HWCustomOp", "OPS", "custom_op", "find_op", "make_hw_node", "op_class", *custom_op]
