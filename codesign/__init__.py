"""codesign: explainable-AI-driven co-design of quantized networks and FPGA dataflow accelerators."""

__version__ = "0.1.0"
