"""Topologies as data (specs), bit plans, and builders for float and Brevitas models.

Specs and plans are plain data (no torch), so the hardware side (`codesign.dataflow`) can read
them without importing torch; the torch builders are imported on first use.
"""

from codesign.models.plan import load_plan, parse_bits, save_plan, uniform_plan, validate_plan
from codesign.models.zoo import (ZOO, graph_features, is_graph_spec, layer_shapes, make_spec, module_paths, quant_layers,
                                 validate_spec, with_widths)

_BUILD_NAMES = ("SpecNet", "build_float", "build_quant", "count_weights", "quant_from_float", "split_joins")


def __getattr__(name: str):
    if name in _BUILD_NAMES:
        from codesign.models import build

        return getattr(build, name)
    raise AttributeError(f"module 'codesign.models' has no attribute {name!r}")


__all__ = [
    *_BUILD_NAMES,
    "load_plan", "parse_bits", "save_plan", "uniform_plan", "validate_plan",
    "ZOO", "graph_features", "is_graph_spec", "layer_shapes", "make_spec", "module_paths", "quant_layers",
    "validate_spec", "with_widths",
]
