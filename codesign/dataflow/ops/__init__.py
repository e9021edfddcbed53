"""The HW custom ops of the codesign dataflow graph (ONNX domain ``codesign.dataflow.ops``).

qonnx's registry imports the module named by a node's domain and looks the op type up in
``custom_op``, so this package's import path is the domain of every HW node.
"""

from codesign.dataflow.ops.base import DOMAIN, HWCustomOp, make_hw_node
from codesign.dataflow.ops.mvau import MVAU, Thresholding
from codesign.dataflow.ops.stream import (FMPadding, LabelSelect, SlidingWindow, StreamingDataWidthConverter,
                                          StreamingFIFO, StreamingMaxPool)

custom_op: dict[str, type[HWCustomOp]] = {
    "MVAU": MVAU,
    "Thresholding": Thresholding,
    "SlidingWindow": SlidingWindow,
    "StreamingMaxPool": StreamingMaxPool,
    "FMPadding": FMPadding,
    "LabelSelect": LabelSelect,
    "StreamingDataWidthConverter": StreamingDataWidthConverter,
    "StreamingFIFO": StreamingFIFO,
}

__all__ = ["DOMAIN", "HWCustomOp", "make_hw_node", "custom_op", *custom_op]
