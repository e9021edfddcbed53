"""Hardware feedback for the search: fold a candidate for the target FPS and cost it, no training.

Why this shape: the search must reject an infeasible design in milliseconds, *before* any
training, and its estimate must be the one the compiler will act on. So a candidate is turned
into the weightless HW graph of `codesign.dataflow.fast.FastNet.from_spec(...).to_model` and
folded with the compiler's own `auto_fold` (same divisor grids, same cost formulas, same
calibration as `codesign compile`). Only the accumulator widths differ: worst case here, exact
from the weights after training (so the compiled design is never larger than estimated).

Every result is cached by plan hash; the feedback rules ask for many neighbours of one design.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from codesign.errors import CodesignError
from codesign.designspace.space import Candidate, SearchSpace
from codesign.models.zoo import is_graph_spec

log = logging.getLogger(__name__)

RESOURCES = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")
THROUGHPUT_PENALTY = 1e3  # binding utilisation assigned to a design that misses the target FPS


@dataclass
class HwEstimate:
    """Cost-model verdict on one candidate at the target FPS."""

    feasible: bool
    reason: str
    totals: dict[str, int]
    fps: float
    max_cycles: int
    per_layer: dict[str, dict[str, Any]] = field(default_factory=dict)
    ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"feasible": self.feasible, "reason": self.reason, "totals": self.totals, "fps": self.fps,
                "max_cycles": self.max_cycles, "per_layer": self.per_layer, "ms": round(self.ms, 3)}


def _fold_spec_graph(spec: dict, plan_bits: tuple[dict, dict], input_bits: int, target_fps: float | None,
                     clock_ns: float, board: Any, util: float, calibration: Any, mvau_wwidth_max: int,
                     per_node: bool = False):
    """Adapter onto the dataflow package (one function): weightless HW graph + auto_fold/max_fps_fold.

    Raises CodesignError when the dataflow fast path is missing in this checkout.
    """
    try:
        from codesign.dataflow.cost import model_cost
        from codesign.dataflow.fast import FastNet
        from codesign.dataflow.folding import auto_fold, max_fps_fold
    except ImportError as exc:  # pragma: no cover - depends on the checkout
        raise CodesignError(f"the search needs the dataflow cost model (codesign.dataflow.fast, folding): {exc}") from exc
    wb, ab = plan_bits
    names = list(wb)
    ones = {n: 1 for n in names}
    if not is_graph_spec(spec):
        net = FastNet.from_spec(spec, input_bits=input_bits)
        model = net.to_model(0, weight_bits=wb, act_bits=ab, pe=ones, simd=ones)
    else:
        model = exported_hw_graph(spec, wb, ab, input_bits)
    if target_fps is None:
        fold = max_fps_fold(model, board, clock_ns, util, mvau_wwidth_max, calibration, apply=True)
    else:
        fold = auto_fold(model, target_fps, clock_ns, mvau_wwidth_max, True, calibration, board.dsp_family,
                         apply=True)
    cost = model_cost(model, calibration, board.dsp_family) if per_node else None
    return fold, cost, model


def exported_hw_graph(spec: Mapping[str, Any], weight_bits: Mapping[str, int], act_bits: Mapping[str, int],
                      input_bits: int) -> Any:
    """The HW graph of a graph spec (residual, depthwise, pooled): a Brevitas model at the plan with
    seeded initial weights, exported to QONNX and lowered by the compiler itself at PE = SIMD = 1.

    Why an export rather than a vectorised model: branching graphs need the compiler's own
    lowering (forks, joins, the join's requantisation, pools); one export costs about a second,
    small next to the training every search trial does, and the estimator caches by plan. The
    accumulators come from the seeded weights, which span each layer's full integer range (the
    quantizer's scale is set from the largest weight), so they are the worst case in practice.
    """
    import tempfile
    from pathlib import Path

    import torch

    from codesign.dataflow.compiler import lower_to_hw
    from codesign.export import export_qonnx
    from codesign.models import build_quant

    layers: dict[str, dict[str, int]] = {}
    for n, b in weight_bits.items():
        layers[n] = {"weight_bits": int(b)}
        if n in act_bits:
            layers[n]["act_bits"] = int(act_bits[n])
    plan = {"input_bits": int(input_bits), "layers": layers}
    gen = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = build_quant(dict(spec), plan).eval()
        x = torch.rand(1, *spec["input_shape"])
    finally:
        torch.random.set_rng_state(gen)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_qonnx(model, x, Path(tmp) / "estimate.onnx")
        return lower_to_hw(str(path))


class HwEstimator:
    """Folds and costs candidates of one search space for one board / target; cached by hash.

    `limits` are absolute resource budgets (e.g. {"LUT": 20000}); the board's totals times
    `util` always apply too. `target_fps=None` means: fold for the highest FPS that fits.
    """

    def __init__(self, space: SearchSpace, board: str, target_fps: float | None, clock_ns: float | None = None,
                 util: float = 1.0, limits: Mapping[str, int | None] | None = None, calibration: str | None = None,
                 mvau_wwidth_max: int = 36, min_fps: float | None = None):
        from codesign.dataflow.boards import get_board
        from codesign.dataflow.cost import Calibration

        self.space = space
        self.board = get_board(board)
        self.clock_ns = float(clock_ns or self.board.default_clock_ns)
        self.target_fps = float(target_fps) if target_fps else None
        self.util = float(util)
        if not 0 < self.util <= 1:
            raise CodesignError(f"utilisation cap must be in (0, 1], got {util}")
        self.calibration = Calibration.load(calibration)
        self.mvau_wwidth_max = mvau_wwidth_max
        self.min_fps = min_fps
        avail = self.board.resources()
        self.limits: dict[str, float] = {r: avail[r] * self.util for r in RESOURCES}
        for r, v in (limits or {}).items():
            key = {"bram": "BRAM_18K", "bram_18k": "BRAM_18K", "lut": "LUT", "dsp": "DSP", "ff": "FF",
                   "uram": "URAM"}.get(str(r).lower(), r)
            if key not in RESOURCES:
                raise CodesignError(f"unknown resource budget '{r}': use one of {', '.join(RESOURCES)}")
            if v is not None:
                self.limits[key] = min(self.limits[key], float(v))
        self._cache: dict[str, HwEstimate] = {}
        self.calls = 0
        self.seconds = 0.0

    def estimate(self, cand: Candidate, per_layer: bool = False) -> HwEstimate:
        """Fold + cost one candidate (cached). `per_layer=True` adds the per-layer breakdown
        (a per-node cost pass, only wanted for reports)."""
        h = cand.hash
        if h in self._cache and (not per_layer or self._cache[h].per_layer or not self._cache[h].max_cycles):
            return self._cache[h]
        t0 = time.perf_counter()
        from codesign.errors import FoldingError

        spec = self.space.pruned_spec(cand)
        flog = logging.getLogger("codesign.dataflow.folding")
        level = flog.level
        flog.setLevel(max(level, logging.WARNING))  # thousands of folds: keep the log readable
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fold, cost, model = _fold_spec_graph(spec, (cand.wd, cand.ad), cand.input_bits, self.target_fps,
                                                     self.clock_ns, self.board, self.util, self.calibration,
                                                     self.mvau_wwidth_max, per_layer)
        except FoldingError as exc:
            est = HwEstimate(False, f"throughput: {exc}", {r: 0 for r in RESOURCES}, 0.0, 0)
        else:
            est = None
        finally:
            flog.setLevel(level)
        if est is None:
            totals = {r: int(fold.totals[r]) for r in RESOURCES}
            over = [f"{r} {totals[r]:,} > {self.limits[r]:,.0f}" for r in RESOURCES if totals[r] > self.limits[r]]
            fps = float(fold.estimated_fps)
            if self.min_fps and fps < self.min_fps:
                over.append(f"FPS {fps:,.0f} < {self.min_fps:,.0f}")
            est = HwEstimate(not over, "; ".join(over) if over else "fits", totals, fps, int(fold.max_cycles),
                             self._per_layer(model, cost) if per_layer else {})
        est.ms = (time.perf_counter() - t0) * 1e3
        self.calls += 1
        self.seconds += est.ms / 1e3
        self._cache[h] = est
        return est

    def _per_layer(self, model: Any, cost: dict) -> dict[str, dict[str, Any]]:
        """Attribute every HW node to a spec layer, as its op class says (``layer_role``): the
        i-th "weights" node is the i-th weight layer; "next" nodes (padding, sliding window)
        belong to the weight layer they feed; the others (pools, top-k) to the layer before."""
        from codesign.dataflow.cost import hw_nodes, node_attrs
        from codesign.dataflow.ops import op_class

        layers = self.space.layers
        out = {n: {"LUT": 0, "FF": 0, "BRAM_18K": 0, "URAM": 0, "DSP": 0, "cycles": 0, "PE": 1, "SIMD": 1}
               for n in layers}
        pending: list[str] = []
        i = 0
        for node in hw_nodes(model):
            role = op_class(node.op_type, node.name).layer_role
            if role == "weights":
                name = layers[min(i, len(layers) - 1)]
                i += 1
                a = node_attrs(node)
                out[name]["PE"], out[name]["SIMD"] = int(a.get("PE", 1)), int(a.get("SIMD", 1))
                for nm in pending + [node.name]:
                    c = cost["nodes"][nm]
                    for r in RESOURCES:
                        out[name][r] += int(c[r])
                    out[name]["cycles"] = max(out[name]["cycles"], int(c["cycles"]))
                pending = []
            elif role == "next":
                pending.append(node.name)
            else:
                name = layers[max(i - 1, 0)]
                c = cost["nodes"][node.name]
                for r in RESOURCES:
                    out[name][r] += int(c[r])
                out[name]["cycles"] = max(out[name]["cycles"], int(c["cycles"]))
        return out

    def limits_text(self) -> str:
        return ", ".join(f"{r} <= {v:,.0f}" for r, v in self.limits.items() if v)


def binding(est: HwEstimate, limits: Mapping[str, float]) -> float:
    """Highest used/limit over the resources (THROUGHPUT_PENALTY when the FPS target fails)."""
    if est.max_cycles == 0 and not est.feasible:
        return THROUGHPUT_PENALTY
    return max((est.totals[r] / limits[r]) if limits[r] else (math.inf if est.totals[r] else 0.0) for r in RESOURCES)
