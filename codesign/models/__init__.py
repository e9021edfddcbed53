"""Topologies as data (specs), bit plans, and builders for float and Brevitas models."""

from codesign.models.build import SpecNet, build_float, build_quant, count_weights, quant_from_float
from codesign.models.plan import load_plan, parse_bits, save_plan, uniform_plan, validate_plan
from codesign.models.zoo import ZOO, layer_shapes, make_spec, quant_layers, validate_spec, with_widths

__all__ = [
    "SpecNet", "build_float", "build_quant", "count_weights", "quant_from_float",
    "load_plan", "parse_bits", "save_plan", "uniform_plan", "validate_plan",
    "ZOO", "layer_shapes", "make_spec", "quant_layers", "validate_spec", "with_widths",
]
