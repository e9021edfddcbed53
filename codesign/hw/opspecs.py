"""Single-node HW designs with seeded random weights/thresholds, one builder per op type.

Why: timing and resource measurements (tests, benchmarks, the cost-model corpus) need a node of
each op at a chosen folding and bit width without training or exporting a network; weights and
thresholds change timing and LUT counts little, so seeded random integers in the declared
datatype stand in for trained ones. Each op module owns its builder (``example_node``); this
module exposes them as ``<example_name>_spec`` functions and ``BUILDERS`` keyed by op type.
"""

from __future__ import annotations

from typing import Any, Callable

from codesign.dataflow.ops import OPS

_WITH_EXAMPLE = [c for c in OPS if c.example_name]
BUILDERS: dict[str, Callable[..., Any]] = {c.__name__: c.example_node for c in _WITH_EXAMPLE}
for _c in _WITH_EXAMPLE:
    globals()[f"{_c.example_name}_spec"] = _c.example_node

__all__ = ["BUILDERS"] + [f"{c.example_name}_spec" for c in _WITH_EXAMPLE]
