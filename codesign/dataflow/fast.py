"""Vectorised cost evaluation for design-space search: many candidates per numpy call.

Why: a co-design search scores thousands of (bit plan x folding x channel count) candidates;
building and costing an ONNX graph per candidate takes milliseconds, evaluating the same
formulas on arrays takes microseconds per candidate.

Exactness by construction: the per-op formulas are the *same* array-polymorphic op-class
methods the per-node model uses (`HWCustomOp.cost`, asked through the op registry), and
calibration is the same `Calibration.apply`; only the parameter extraction differs. Two entry
points:

- `FastNet.from_model(model)`: parameters extracted once from a compiled dataflow graph
  (exact accumulator widths from the weights); candidates override attributes such as PE/SIMD.
- `FastNet.from_spec(spec, ...)`: no training, no graph: a contracts.md model spec plus arrays
  of bit widths, channel counts and PE/SIMD. Accumulator widths are the worst case for the
  bit widths (weights unknown). The spec -> op chain lowering lives in
  `codesign.dataflow.transforms.spec`; folds the spec leaves open are chosen here by asking the
  op classes (followers take their consumer's input fold; the rest the smallest divisor whose
  cycles stay within the bottleneck). `to_model` builds the equivalent weightless HW graph for
  one candidate so the per-node model can check the fast path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from codesign.dataflow.cost import (CALIBRATED, DSP48, IDENTITY, RAM_STYLES, RESOURCES, Calibration, hw_nodes,
                                    node_params, op_cost)
from codesign.dataflow.ops import op_class
from codesign.dataflow.folding import divisors
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

_STR_KEYS = ("ram_style", "resType")


def _evaluate_layers(layers: list[dict[str, Any]], n: int, calibration: Calibration, dsp_family: int,
                     clock_ns: float, board: Any = None, util: float = 1.0,
                     per_node: bool = False) -> dict[str, Any]:
    """Sum the per-op formulas over the layers (parameters may be arrays of n). The critical path
    follows each layer's ``_preds`` (indices of the layers feeding it, set by ``from_model`` for a
    branching graph), else the chain: the longest path, as ``cost.model_cost``."""
    tot = {r: np.zeros(n, np.int64) for r in RESOURCES}
    max_c = np.zeros(n, np.int64)
    crit = np.zeros(n, np.int64)
    path: list[np.ndarray] = []
    nodes: dict[str, Any] = {}
    for i, p in enumerate(layers):
        est = calibration.apply(p["op_type"], op_cost(p, dsp_family))
        for r in RESOURCES:
            tot[r] += np.broadcast_to(est[r], (n,))
        c = np.broadcast_to(est["cycles"], (n,))
        max_c = np.maximum(max_c, c)
        preds = p.get("_preds", [i - 1] if i else [])
        base = np.max([path[j] for j in preds], axis=0) if preds else np.zeros(n, np.int64)
        path.append(base + c + np.broadcast_to(est["pipeline_depth"], (n,)))
        crit = np.maximum(crit, path[-1])
        if per_node:
            nodes[p["name"]] = {k: np.broadcast_to(est[k], (n,)) for k in CALIBRATED}
    out: dict[str, Any] = dict(tot)
    out["max_cycles"] = max_c
    out["critical_path_cycles"] = crit
    out["fps"] = 1e9 / (clock_ns * np.maximum(max_c, 1))
    out["latency_ns"] = crit * clock_ns
    if board is not None:
        from codesign.dataflow.boards import get_board

        b = get_board(board)
        avail = b.resources()
        fr = np.stack([tot[r] / avail[r] if avail[r] else np.where(tot[r] > 0, np.inf, 0.0) for r in RESOURCES])
        out["utilisation"] = {r: fr[i] for i, r in enumerate(RESOURCES)}
        out["max_utilisation"] = fr.max(axis=0)
        out["binding_resource"] = np.asarray(RESOURCES)[fr.argmax(axis=0)]
        out["fits"] = out["max_utilisation"] <= util
    if per_node:
        out["nodes"] = nodes
    return out


def _n_of(values: Any) -> int:
    """Number of candidates: the common length of every array/list leaf (scalars broadcast).
    Mappings and tuples are containers; lists and arrays are candidate vectors."""
    n = 1
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, tuple):
            stack.extend(v)
        elif isinstance(v, (list, np.ndarray)) and np.ndim(v):
            m = len(v)
            if m != 1 and n != 1 and m != n:
                raise CodesignError(f"candidate arrays disagree in length ({n} vs {m})")
            n = max(n, m)
    return n


def _largest_divisor_leq(dim: np.ndarray, cap: np.ndarray, cands: list[int]) -> np.ndarray:
    """Per candidate: the largest d in `cands` with dim % d == 0 and d <= cap (at least 1)."""
    out = np.ones(np.broadcast(dim, cap).shape, np.int64)
    for d in sorted(cands):
        ok = (dim % d == 0) & (d <= cap)
        out = np.where(ok, d, out)
    return out


def _smallest_divisor_meeting(dim: np.ndarray, cyc_of, target: np.ndarray, cands: list[int]) -> np.ndarray:
    """Per candidate: the smallest d in `cands` dividing dim with cyc_of(d) <= target, else dim."""
    dim = np.asarray(dim, np.int64)
    out = np.broadcast_to(dim, np.broadcast(dim, target).shape).copy()
    done = np.zeros(out.shape, bool)
    for d in sorted(cands):
        ok = ~done & (dim % d == 0) & (cyc_of(d) <= target)
        out = np.where(ok, d, out)
        done |= ok
    return out


@dataclass
class FastNet:
    """A network as a chain of op parameter templates (see module docstring)."""

    layers: list[dict[str, Any]]
    source: str
    spec: dict[str, Any] | None = None
    input_bits: int = 8
    label_select_k: int | None = None

    # ------------------------------------------------------------------ from a compiled model
    @classmethod
    def from_model(cls, model: Any) -> "FastNet":
        """Extract the HW nodes' parameters once (weights read here, never again)."""
        nodes = hw_nodes(model)
        layers = [node_params(model, n) for n in nodes]
        made = {t: i for i, n in enumerate(nodes) for t in n.output}
        for i, (n, p) in enumerate(zip(nodes, layers)):
            preds = sorted({made[t] for t in n.input if t in made})
            if preds != ([i - 1] if i else []):
                p["_preds"] = preds  # a branching graph: the critical path follows the edges
        return cls(layers, source="model")

    def evaluate(self, overrides: Mapping[str, Mapping[str, Any]] | None = None, *,
                 calibration: Calibration | None = None, dsp_family: int = DSP48, clock_ns: float = 10.0,
                 board: Any = None, util: float = 1.0, per_node: bool = False) -> dict[str, Any]:
        """Evaluate candidates given as {node name: {param: array}} overrides (model source).

        Typical params: PE, SIMD (any `node_params` key works, e.g. ram_style as a string).
        Folding legality is the caller's job (use divisors); illegal values raise.
        """
        if self.source != "model":
            raise CodesignError("FastNet.from_spec networks are evaluated with evaluate_spec()")
        overrides = overrides or {}
        names = {p["name"] for p in self.layers}
        for k in overrides:
            if k not in names:
                raise CodesignError(f"unknown node {k!r} in candidates; nodes: {', '.join(sorted(names))}")
        n = _n_of(overrides)
        layers = []
        for p in self.layers:
            q = dict(p)
            for k, v in overrides.get(p["name"], {}).items():
                if k not in q:
                    raise CodesignError(f"{p['name']}: unknown parameter {k!r}")
                q[k] = v if k in _STR_KEYS else np.asarray(v, np.int64)
            _check_divides(q)
            layers.append(q)
        return _evaluate_layers(layers, n, calibration or IDENTITY, dsp_family, clock_ns, board, util, per_node)

    # ------------------------------------------------------------------ from a model spec
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], input_bits: int = 8,
                  label_select_k: int | None = None) -> "FastNet":
        """A network described by a contracts.md model spec (no weights, no graph); chain specs
        only: a graph spec (residual blocks, depthwise convs, ...) is refused with one line."""
        from codesign.dataflow.transforms.spec import _GRAPH_HINT
        from codesign.errors import UnsupportedError
        from codesign.models.zoo import refuse_graph_spec, validate_spec

        validate_spec(dict(spec))
        refuse_graph_spec(dict(spec), "the vectorised spec estimate (FastNet.from_spec)", _GRAPH_HINT, UnsupportedError)
        return cls([], source="spec", spec=dict(spec), input_bits=int(input_bits), label_select_k=label_select_k)

    @staticmethod
    def bits_from_plans(plans: list[Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
        """weight_bits / act_bits / input_bits arrays from one or more contracts.md bit plans
        (`{"input_bits": 8, "layers": {"fc0": {"weight_bits": 4, "act_bits": 4}, ...}}`)."""
        plans = [plans] if isinstance(plans, Mapping) else list(plans)
        layers = plans[0]["layers"]
        wb = {k: np.asarray([p["layers"][k]["weight_bits"] for p in plans], np.int64) for k in layers}
        ab = {k: np.asarray([p["layers"][k].get("act_bits", 0) for p in plans], np.int64) for k in layers}
        ib = np.asarray([p.get("input_bits", 8) for p in plans], np.int64)
        return {"weight_bits": wb, "act_bits": ab, "input_bits": ib}

    def spec_layers(self, weight_bits: Mapping[str, Any], act_bits: Mapping[str, Any],
                    pe: Mapping[str, Any], simd: Mapping[str, Any],
                    channels: Mapping[str, Any] | None = None, input_bits: Any = None,
                    aux_pe: Mapping[str, Any] | None = None, ram_style: str = "auto",
                    res_type: str = "lut") -> tuple[list[dict[str, Any]], int]:
        """The HW node chain of the spec for candidate arrays (keys are spec layer names).

        The chain comes from the spec lowering (`codesign.dataflow.transforms.spec.spec_chain`).
        Followers (op classes with ``follows_consumer``) take the consuming node's input fold
        (largest divisor of their dimension not above it); any other fold left open (not in
        `aux_pe` by node name) becomes the smallest divisor whose cycles stay within the
        bottleneck of the nodes whose folding is given.
        """
        from codesign.dataflow.transforms.spec import spec_chain

        assert self.spec is not None
        layers, followers, n = spec_chain(self.spec, weight_bits, act_bits, pe, simd, channels,
                                          self.input_bits if input_bits is None else input_bits, aux_pe,
                                          ram_style, res_type, self.label_select_k, _n_of)
        A = lambda v: np.broadcast_to(np.asarray(v, np.int64), (n,)) if np.ndim(v) else np.full(n, int(v), np.int64)  # noqa: E731
        for node, idx in followers:
            cls, cons = op_class(node["op_type"]), layers[idx]
            fattr, (_, key) = next(iter(cls.fold_dims.items()))
            cap = cons[op_class(cons["op_type"]).in_fold_attr]
            dim = node[key]
            cands = divisors(int(np.max(dim))) if np.ndim(dim) else divisors(int(dim))
            node[fattr] = _largest_divisor_leq(dim, cap, cands)
        open_ = [(q, f, key) for q in layers for f, (_, key) in op_class(q["op_type"]).fold_dims.items()
                 if q.get(f) is None]
        for q in layers:
            if all(q.get(f) is not None for f in op_class(q["op_type"]).fold_dims):
                _check_divides(q)
        # bottleneck of the nodes whose folding is given
        given = np.zeros(n, np.int64)
        for q in layers:
            if all(q.get(f) is not None for f in op_class(q["op_type"]).fold_dims):
                given = np.maximum(given, np.broadcast_to(op_class(q["op_type"]).cycles(q), (n,)))
        for q, f, key in open_:
            dims = np.unique(np.asarray(q[key]))
            dset = sorted({d for c in dims for d in divisors(int(c))})
            cls = op_class(q["op_type"])
            cyc = lambda d, q=q, f=f, cls=cls: cls.cycles({**q, f: d})  # noqa: E731
            q[f] = _smallest_divisor_meeting(q[key], cyc, given, dset)
        for q in layers:
            for f in op_class(q["op_type"]).fold_dims:
                if q.get(f) is not None and not isinstance(q[f], np.ndarray):
                    q[f] = A(q[f])
            _check_divides(q)
        return layers, n

    def evaluate_spec(self, weight_bits: Mapping[str, Any], act_bits: Mapping[str, Any],
                      pe: Mapping[str, Any], simd: Mapping[str, Any],
                      channels: Mapping[str, Any] | None = None, input_bits: Any = None,
                      aux_pe: Mapping[str, Any] | None = None, *, ram_style: str = "auto", res_type: str = "lut",
                      calibration: Calibration | None = None, dsp_family: int = DSP48, clock_ns: float = 10.0,
                      board: Any = None, util: float = 1.0, per_node: bool = False) -> dict[str, Any]:
        """Evaluate candidates of a spec network: every argument maps a spec layer name to a
        scalar or an array of n candidates. Returns arrays: max_cycles, fps, latency_ns,
        critical_path_cycles, LUT, FF, BRAM_18K, URAM, DSP (and utilisation/fits with a board)."""
        if self.source != "spec":
            raise CodesignError("FastNet.from_model networks are evaluated with evaluate()")
        if ram_style not in RAM_STYLES:
            raise CodesignError(f"unknown ram_style {ram_style!r}; valid: {', '.join(RAM_STYLES)}")
        layers, n = self.spec_layers(weight_bits, act_bits, pe, simd, channels, input_bits, aux_pe,
                                     ram_style, res_type)
        if board is not None and dsp_family == DSP48:
            from codesign.dataflow.boards import get_board

            dsp_family = get_board(board).dsp_family
        return _evaluate_layers(layers, n, calibration or IDENTITY, dsp_family, clock_ns, board, util, per_node)

    def to_model(self, index: int, **cfg: Any) -> Any:
        """The weightless HW graph of candidate `index` (same arguments as `spec_layers`), for
        the per-node cost model; HW nodes only, attributes as the lowering writes them."""
        from codesign.dataflow.transforms.spec import spec_graph

        layers, _ = self.spec_layers(**cfg)
        ib = self.input_bits if cfg.get("input_bits") is None else cfg["input_bits"]
        return spec_graph(layers, index, self.spec["input_shape"], ib)


def _check_divides(q: Mapping[str, Any]) -> None:
    from codesign.errors import FoldingError

    for fattr, (dim_attr, key) in op_class(q["op_type"]).fold_dims.items():
        v = q.get(fattr)
        if v is None:
            continue
        dim = np.asarray(q[key], np.int64)
        v = np.asarray(v, np.int64)
        bad = (v < 1) | (dim % np.maximum(v, 1) != 0)
        if np.any(bad):
            i = int(np.argmax(np.broadcast_to(bad, np.broadcast(bad, dim).shape).reshape(-1)))
            vv = int(np.broadcast_to(v, bad.shape).reshape(-1)[i]) if bad.ndim else int(v)
            dd = int(np.broadcast_to(dim, bad.shape).reshape(-1)[i]) if bad.ndim else int(dim)
            raise FoldingError(f"{q['name']} ({q['op_type']}): {fattr}={vv} does not divide {dim_attr}={dd} "
                               f"(candidate {i}); valid {fattr} values: {divisors(dd)}")
