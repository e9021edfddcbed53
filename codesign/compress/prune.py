"""Pruning: structured (physically smaller network) and unstructured (masked FC weights).

Why it looks like this:

* Structured pruning edits the *spec* (`with_widths`) and slices the state dict, so the pruned
  network is an ordinary smaller zoo network: QAT, export and the dataflow compiler see fewer
  channels and the accelerator really shrinks. Removing conv channel c removes its filter, its
  BN entries, and the next layer's input channel c; when a flatten follows, it removes the
  H*W consecutive FC inputs ``c*H*W .. c*H*W + H*W - 1`` (NCHW flatten order).
* The logits layer is never pruned (its outputs are the classes).
* Unstructured pruning keeps the shape and zeroes weights through a mask that an
  ``after_step`` hook re-applies after every optimizer step, so the zeros survive QAT and a
  zero float weight exports as a zero integer in QONNX.
* Every decision takes scores from any criterion (`codesign.relevance`), so DeepLIFT,
  magnitude, Taylor and random pruning run through the same code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from codesign.errors import CodesignError
from codesign.models.zoo import Spec, layer_shapes, quant_layers, refuse_graph_spec, with_widths
from codesign.relevance import Relevance, weight_relevance

log = logging.getLogger(__name__)

Ratios = float | Mapping[str, float]
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def check_ratio(r: float, what: str = "pruning ratio") -> float:
    r = float(r)
    if not (0.0 <= r < 1.0) or math.isnan(r):
        raise CodesignError(f"{what} must be in [0, 1), got {r}")
    return r


def prunable_layers(spec: Spec) -> list[str]:
    """Conv/fc layers whose outputs may be removed: all but the logits layer."""
    return [l["name"] for l in quant_layers(spec)][:-1]


def _ratio_map(spec: Spec, ratio: Ratios, layers: list[str]) -> dict[str, float]:
    if isinstance(ratio, Mapping):
        unknown = set(ratio) - set(layers)
        if unknown:
            raise CodesignError(f"cannot prune layers {sorted(unknown)}: prunable layers are {layers} "
                                "(the logits layer is never pruned)")
        return {n: check_ratio(ratio.get(n, 0.0), f"pruning ratio of {n}") for n in layers}
    r = check_ratio(ratio)
    return {n: r for n in layers}


# ----------------------------------------------------------------------------- structured

@dataclass
class StructuredPrune:
    """Result of structured pruning: the smaller spec, its weights and the kept unit indices."""

    spec: Spec
    state_dict: dict[str, torch.Tensor]
    keep: dict[str, list[int]]

    def summary(self, old: Spec) -> dict:
        old_w = {n: s["fan_out"] for n, s in layer_shapes(old).items()}
        return {n: {"before": old_w[n], "after": len(k)} for n, k in self.keep.items()}


def select_units(spec: Spec, scores: Mapping[str, np.ndarray], ratio: Ratios,
                 scope: str = "layer", min_keep: int = 1) -> dict[str, list[int]]:
    """Indices of the units to keep per prunable layer (lowest scores go first).

    ``scope="layer"``: each layer loses ``ratio`` of its units. ``scope="global"``: the lowest
    ``ratio`` of all units go, ranked by score / layer mean so that layers with different
    scales compete fairly; every layer keeps at least ``min_keep`` units. A per-layer dict of
    ratios is always per layer.
    """
    if scope not in ("layer", "global"):
        raise CodesignError(f"unknown pruning scope '{scope}': choose layer or global")
    layers = prunable_layers(spec)
    widths = {n: s["fan_out"] for n, s in layer_shapes(spec).items()}
    for n in layers:
        if len(scores[n]) != widths[n]:
            raise CodesignError(f"layer {n}: {len(scores[n])} scores for {widths[n]} units; the "
                                "relevance belongs to another model")
    keep: dict[str, list[int]] = {}
    if scope == "global" and not isinstance(ratio, Mapping):
        r = check_ratio(ratio)
        allv = []
        for n in layers:
            s = np.asarray(scores[n], dtype=np.float64)
            m = s.mean()
            allv += [(v / m if m > 0 else 1.0, n, i) for i, v in enumerate(s)]
        allv.sort(key=lambda t: t[0])
        drop_n = int(round(r * len(allv)))
        dropped: dict[str, set[int]] = {n: set() for n in layers}
        for v, n, i in allv:
            if drop_n == 0:
                break
            if widths[n] - len(dropped[n]) > min_keep:
                dropped[n].add(i)
                drop_n -= 1
        for n in layers:
            keep[n] = [i for i in range(widths[n]) if i not in dropped[n]]
        return keep
    for n, r in _ratio_map(spec, ratio, layers).items():
        s = np.asarray(scores[n], dtype=np.float64)
        n_keep = max(min_keep, widths[n] - int(round(r * widths[n])))
        order = np.argsort(-s, kind="stable")[:n_keep]
        keep[n] = sorted(int(i) for i in order)
    return keep


_GRAPH_HINT = ("structured pruning of graph specs (residual blocks, depthwise convs) needs the dependency-aware "
               "pruning of codesign.compress.depgraph, which ties coupled channels together")


def _refuse_graph(spec: Spec, who: str) -> None:
    """Chain pruning removes a unit from one layer and the matching input of the next; in a
    graph spec a channel can feed several layers (a fork, a residual add, a dwconv that follows
    its producer), so it refuses them with one line."""
    refuse_graph_spec(spec, who, _GRAPH_HINT)


def _next_layer(spec: Spec, name: str) -> tuple[str, bool]:
    """The weight layer after ``name`` and whether a flatten lies between them."""
    _refuse_graph(spec, "chain pruning")
    seen, flat = False, False
    for l in spec["layers"]:
        if seen and l["type"] == "flatten":
            flat = True
        if seen and l["type"] in ("conv", "fc"):
            return l["name"], flat
        if l.get("name") == name:
            seen = True
    raise CodesignError(f"layer {name} has no successor (the logits layer cannot be pruned)")


def apply_structured(spec: Spec, state_dict: Mapping[str, torch.Tensor],
                     keep: Mapping[str, list[int]]) -> StructuredPrune:
    """Physically remove the units not in ``keep`` (see the module doc for what goes with them)."""
    _refuse_graph(spec, "apply_structured (chain pruning)")
    shapes = layer_shapes(spec)
    sd = {k: v.clone() for k, v in state_dict.items()}
    for name, idx in keep.items():
        if name not in shapes:
            raise CodesignError(f"cannot prune unknown layer '{name}' (layers: {list(shapes)})")
        if not idx:
            raise CodesignError(f"layer {name}: pruning would remove every unit")
        t = torch.tensor(sorted(idx), dtype=torch.long)
        wk = f"body.{name}.weight"
        sd[wk] = sd[wk].index_select(0, t)
        for k in BN_KEYS:
            bk = f"body.{name}_bn.{k}"
            if bk in sd:
                sd[bk] = sd[bk].index_select(0, t)
        nxt, flat = _next_layer(spec, name)
        nk = f"body.{nxt}.weight"
        if flat and shapes[name]["type"] == "conv":
            hw = shapes[nxt]["fan_in"] // shapes[name]["fan_out"]
            cols = (t.view(-1, 1) * hw + torch.arange(hw).view(1, -1)).flatten()
        else:
            cols = t
        sd[nk] = sd[nk].index_select(1, cols)
    new_spec = with_widths(spec, {n: len(k) for n, k in keep.items()})
    return StructuredPrune(spec=new_spec, state_dict=sd, keep={n: sorted(k) for n, k in keep.items()})


def prune_structured(spec: Spec, state_dict: Mapping[str, torch.Tensor], rel: Relevance,
                     ratio: Ratios, scope: str = "layer", min_keep: int = 1) -> StructuredPrune:
    """Remove the least relevant filters/neurons (``rel``: any criterion) from a network."""
    _refuse_graph(spec, "prune_structured (chain pruning)")
    rel.check_matches(spec)
    scores = {n: rel.units(n) for n in prunable_layers(spec)}
    keep = select_units(spec, scores, ratio, scope=scope, min_keep=min_keep)
    res = apply_structured(spec, state_dict, keep)
    log.info("structured pruning (%s, %s): %s", rel.method, scope,
             ", ".join(f"{n} {v['before']}->{v['after']}" for n, v in res.summary(spec).items()))
    return res


def slice_relevance(rel: Relevance, pruned: StructuredPrune) -> Relevance:
    """The relevance of the pruned network: kept units' scores and kept inputs' activations."""
    old = rel.spec
    _refuse_graph(old, "slice_relevance (chain pruning)")
    shapes = layer_shapes(old)
    layers = {}
    prev_keep: list[int] | None = None
    prev_name: str | None = None
    for l in quant_layers(old):
        n = l["name"]
        e = dict(rel.layers[n])
        units = list(e["units"])
        in_act = list(e["in_act"])
        if prev_keep is not None:
            if l["type"] == "fc" and shapes[prev_name]["type"] == "conv":
                hw = shapes[n]["fan_in"] // shapes[prev_name]["fan_out"]
                in_act = [in_act[c * hw + j] for c in prev_keep for j in range(hw)]
            else:
                in_act = [in_act[c] for c in prev_keep]
        k = pruned.keep.get(n)
        if k is not None:
            units = [units[i] for i in k]
        e.update(units=units, in_act=in_act, total=float(sum(units)))
        layers[n] = e
        prev_keep, prev_name = k, n
    return sliced_relevance(rel, pruned.spec, layers)


def mask_structured(model: nn.Module, spec: Spec, keep: Mapping[str, list[int]]) -> nn.Module:
    """Zero the removed units in place (filter weights and BN scale/shift), keeping the shape.

    With BN scale and shift zeroed the unit outputs exactly 0 after ReLU, so this masked model
    is what the structurally pruned one must equal (the test of `apply_structured`).
    """
    widths = {n: s["fan_out"] for n, s in layer_shapes(spec).items()}
    with torch.no_grad():
        for name, idx in keep.items():
            drop = sorted(set(range(widths[name])) - set(idx))
            if not drop:
                continue
            t = torch.tensor(drop)
            model.layer(name).weight[t] = 0
            bn = model.bn(name)
            if bn is not None:
                bn.weight[t] = 0
                bn.bias[t] = 0
    return model


# --------------------------------------------------------------------------- unstructured

def weight_masks(model: nn.Module, spec: Spec, rel: Relevance, ratio: Ratios,
                 scope: str = "layer", layers: list[str] | None = None,
                 per_unit: bool = False) -> dict[str, torch.Tensor]:
    """Boolean keep-masks for FC weights: the lowest-relevance ``ratio`` of weights go.

    Weight relevance is derived from unit relevance (`codesign.relevance.weight_relevance`).
    ``layers`` defaults to every fc layer (conv weights are pruned structurally instead).
    ``scope="global"`` ranks weights of all layers together after dividing by the layer mean.
    ``per_unit``: every output unit loses ``ratio`` of its own weights (its lowest-scored ones).
    Why: ranked across a layer, a weight's relevance is its unit's relevance times its share, so
    a unit of low relevance (in the classifier: a class the relevance samples rarely predict)
    loses all of its weights at high ratios; per unit, every class keeps its strongest inputs.
    """
    rel.check_matches(spec)
    if per_unit and scope != "layer":
        raise CodesignError("per-unit weight pruning ranks the weights of each unit on their own; "
                            f"it takes scope 'layer', not '{scope}'")
    fc = [l["name"] for l in quant_layers(spec) if l["type"] == "fc"]
    layers = layers or fc
    if isinstance(ratio, Mapping):
        unknown = set(ratio) - set(fc)
        if unknown:
            raise CodesignError(f"unstructured pruning covers fc layers {fc}; got {sorted(unknown)}")
        layers = [n for n in layers if n in ratio]
    scores = {n: weight_relevance(rel, n, model.layer(n).weight) for n in layers}
    masks: dict[str, torch.Tensor] = {}
    if scope == "global" and not isinstance(ratio, Mapping):
        r = check_ratio(ratio)
        normed = {n: s / s.mean().clamp_min(1e-12) for n, s in scores.items()}
        flat = torch.cat([s.flatten() for s in normed.values()])
        k = int(round(r * flat.numel()))
        if k == 0:
            return {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
        thr = flat.kthvalue(k).values
        for n, s in normed.items():
            masks[n] = s > thr
        return masks
    if scope not in ("layer", "global"):
        raise CodesignError(f"unknown pruning scope '{scope}': choose layer or global")
    ratios = {n: check_ratio(ratio[n] if isinstance(ratio, Mapping) else ratio) for n in layers}
    for n, s in scores.items():
        if per_unit:
            rows = s.flatten(1)
            k = int(round(ratios[n] * rows.shape[1]))
            m = torch.ones_like(rows, dtype=torch.bool)
            if k:
                m.scatter_(1, torch.argsort(rows, dim=1, stable=True)[:, :k], False)
            masks[n] = m.view_as(s)
            continue
        k = int(round(ratios[n] * s.numel()))
        m = torch.ones(s.numel(), dtype=torch.bool)
        if k:
            m[torch.argsort(s.flatten(), stable=True)[:k]] = False
        masks[n] = m.view_as(s)
    return masks


class MaskHook:
    """``after_step`` hook: keep masked weights at exactly zero through training."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks = dict(masks)

    def apply_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for n, m in self.masks.items():
            state_dict[f"body.{n}.weight"] = state_dict[f"body.{n}.weight"] * m
        return state_dict

    def __call__(self, model: nn.Module) -> None:
        with torch.no_grad():
            for n, m in self.masks.items():
                w = model.layer(n).weight
                w.mul_(m.to(w.device, w.dtype))

    def sparsity(self) -> dict[str, float]:
        return {n: float(1.0 - m.float().mean()) for n, m in self.masks.items()}


def chain_hooks(*hooks):
    """One ``after_step`` from several (None entries skipped); order matters: masks first."""
    hs = [h for h in hooks if h is not None]
    if not hs:
        return None

    def run(model: nn.Module) -> None:
        for h in hs:
            h(model)
    return run


def sliced_relevance(rel: Relevance, spec: Spec, layers: dict) -> Relevance:
    """A Relevance for the pruned ``spec`` from its sliced per-layer entries: layer scores
    renormalised over the remaining totals, weight shapes of the new spec (shared by the chain
    and the dependency-graph slicers)."""
    from codesign.relevance import weight_shapes

    grand = sum(e["total"] for e in layers.values()) or 1.0
    ws = weight_shapes(spec)
    for n, e in layers.items():
        e["score"] = e["total"] / grand
        e["weight_shape"] = ws[n]
    return Relevance(method=rel.method, spec=spec, layers=layers, baseline=rel.baseline,
                     samples=rel.samples, seed=rel.seed, convergence=rel.convergence, seconds=rel.seconds)
