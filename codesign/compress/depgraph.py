"""Structured pruning that respects channel dependencies (residual adds, concats, depthwise convs).

Why this exists next to `codesign.compress.prune`:

* `prune.py` edits a *chain*: removing conv channel c touches that conv, its BN and the next
  weight layer. In a graph that is wrong: the channels of a residual add are shared by every
  producer of the add (the body's last conv, the shortcut conv, or the producer of the block
  input for an identity shortcut) and by every consumer; a depthwise conv has no width of its
  own (channel c in is channel c out), so it is tied to the conv that feeds it; a concat
  splices its inputs' channel ranges together. Removing a channel from one member only gives a
  network whose shapes no longer fit.
* Torch-Pruning's DepGraph (`torch_pruning.DependencyGraph`) traces the float module once and
  returns the *groups* of coupled channels, with every member layer's local indices mapped
  back to the group's root channel (`root_idxs`), including the NCHW flatten expansion into
  an fc layer and concat offsets. It also does the slicing (weights, BN statistics, the
  consumers' input channels), so this module only decides *which* channels go.
* A group is ranked by the SUM over its member layers (conv/linear whose outputs are in the
  group, a depthwise conv included) of their per-unit scores, so the relevance of the whole
  group decides, not one arbitrary member. Selection mirrors `prune.select_units` group by
  group (per group, or global with each group's scores divided by the group mean), so on a
  chain every group is one layer and the result equals `prune.prune_structured` exactly
  (tests/test_depgraph.py checks that on CNV, LeNet and TFC).
* The logits layer (the last conv/linear that runs) is never pruned.
* `torch_pruning` is imported on first use: chain specs keep the `prune.py` path and need no
  extra package; a graph spec without it gets one line naming the pin to install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from codesign.compress.prune import Ratios, StructuredPrune, check_ratio, sliced_relevance
from codesign.errors import CodesignError
from codesign.models.zoo import Spec, quant_layers, with_widths

log = logging.getLogger(__name__)

PIN = "torch-pruning==1.6.1"
WEIGHT_TYPES = (nn.Conv2d, nn.Linear)
# Spec layer types whose channels tie several weight layers together (graphspec.md).
GRAPH_TYPES = ("residual", "dwconv", "concat")


def _tp() -> Any:
    try:
        import torch_pruning
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CodesignError(f"structured pruning of residual/depthwise networks needs Torch-Pruning: "
                            f"pip install --no-deps {PIN} (tools/setup.sh installs it)") from exc
    return torch_pruning


# ----------------------------------------------------------------------------- spec helpers

def _walk(layers: Iterable[dict]) -> Iterable[dict]:
    """Every layer dict, descending into residual bodies and shortcuts."""
    for l in layers:
        yield l
        if l.get("type") == "residual":
            yield from _walk(l.get("body", []))
            yield from _walk(l.get("shortcut", []))


def needs_depgraph(spec: Spec) -> bool:
    """True when a spec has layers whose channels are tied across weight layers (a residual
    block, a depthwise conv, a concat or a grouped conv): `prune.py`'s chain rule is wrong there."""
    for l in _walk(spec["layers"]):
        if l.get("type") in GRAPH_TYPES:
            return True
        if l.get("type") == "conv" and int(l.get("groups", 1)) != 1:
            return True
    return False


def spec_layer_names(model: nn.Module) -> dict[nn.Module, str]:
    """conv/linear module -> spec layer name: the last component of its qualified name
    (SpecNet: ``body.res1.body.conv3`` -> ``conv3``). Names must be unique."""
    out: dict[nn.Module, str] = {}
    seen: dict[str, str] = {}
    for qual, m in model.named_modules():
        if isinstance(m, WEIGHT_TYPES):
            short = qual.rsplit(".", 1)[-1]
            if short in seen:
                raise CodesignError(f"layer name '{short}' is used twice ({seen[short]}, {qual}); "
                                    "conv/fc names must be unique across the network")
            seen[short] = qual
            out[m] = short
    return out


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


# ----------------------------------------------------------------------------- groups

@dataclass
class ChannelGroup:
    """One set of coupled output channels.

    ``members[name]``: for each output unit of layer ``name`` in the group, (local index,
    root index); ``consumers[name]``: the same for input units of layers that read the group.
    Root indices run over ``range(width)``: the group's own channel numbering.
    """

    width: int
    members: dict[str, list[tuple[int, int]]]
    consumers: dict[str, list[tuple[int, int]]]
    root: nn.Module = field(repr=False)
    root_fn: Any = field(repr=False)

    @property
    def layers(self) -> list[str]:
        return list(self.members)


class DependencyGroups:
    """The prunable channel groups of a float module, traced once with `torch_pruning`.

    ``names``: conv/linear module -> layer name (default `spec_layer_names`). The logits layer
    is the last conv/linear executed on ``example_input``; it and every group containing its
    outputs are left alone.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor,
                 names: Mapping[nn.Module, str] | None = None):
        tp = _tp()
        self.model = model
        self.names = dict(names) if names is not None else spec_layer_names(model)
        self.order = self._execution_order(example_input)
        if not self.order:
            raise CodesignError("the model has no conv/linear layer to prune")
        self.logits = self.order[-1]
        self.fan_in = {n: (m.in_features if isinstance(m, nn.Linear) else m.in_channels) for m, n in self.names.items()}
        by_name = {n: m for m, n in self.names.items()}
        for m, n in self.names.items():
            if isinstance(m, nn.Conv2d) and m.groups > 1 and not _is_depthwise(m):
                raise CodesignError(f"layer {n}: structured pruning of a grouped conv (groups={m.groups}) is not "
                                    "supported; use a depthwise conv (groups = channels) or groups=1")
        was_training = model.training
        model.eval()  # tracing must not touch BN running statistics
        try:
            with torch.enable_grad():
                self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                                verbose=False)
        finally:
            model.train(was_training)
        rank = {n: i for i, n in enumerate(self.order)}
        groups = []
        for g in self.dg.get_all_groups(ignored_layers=[by_name[self.logits]], root_module_types=WEIGHT_TYPES):
            groups.append(self._group(g))
        groups = [g for g in groups if g.members]
        for g in groups:  # members and consumers in execution order
            g.members = {n: g.members[n] for n in sorted(g.members, key=lambda n: rank.get(n, len(rank)))}
            g.consumers = {n: g.consumers[n] for n in sorted(g.consumers, key=lambda n: rank.get(n, len(rank)))}
        groups.sort(key=lambda g: min(rank.get(n, len(rank)) for n in g.members))
        self.groups = groups
        seen: dict[str, int] = {}
        for gi, g in enumerate(groups):
            for n in g.members:
                if n in seen:
                    raise CodesignError(f"layer {n} appears in two channel groups; the dependency trace is "
                                        "inconsistent")
                seen[n] = gi
        self.group_of = seen

    def _execution_order(self, x: torch.Tensor) -> list[str]:
        order: list[str] = []
        hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(self.names[mod]))
                 for m in self.names]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was_training)
        return list(dict.fromkeys(order))

    def _group(self, g: Any) -> ChannelGroup:
        members: dict[str, list[tuple[int, int]]] = {}
        consumers: dict[str, list[tuple[int, int]]] = {}
        for item in g.items:
            dep = item.dep
            mod = dep.target.module
            if mod not in self.names:
                continue
            pairs = list(zip((int(i) for i in item.idxs), (int(r) for r in item.root_idxs)))
            name = self.names[mod]
            if self.dg.is_out_channel_pruning_fn(dep.handler):
                members[name] = pairs
                if _is_depthwise(mod):  # in channel c is out channel c
                    consumers[name] = pairs
            elif self.dg.is_in_channel_pruning_fn(dep.handler):
                consumers[name] = pairs
        root = g[0].dep.target.module
        width = self.dg.get_pruner_of_module(root).get_out_channels(root)
        return ChannelGroup(width=int(width), members=members, consumers=consumers, root=root,
                            root_fn=g[0].dep.handler)

    @property
    def prunable(self) -> list[str]:
        """Layers whose outputs may shrink, in execution order."""
        return [n for n in self.order if n in self.group_of]

    # ------------------------------------------------------------------------- scores

    def group_scores(self, scores: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Per group and root channel: the sum of the member layers' unit scores."""
        out = []
        for g in self.groups:
            total = np.zeros(g.width, dtype=np.float64)
            for n, pairs in g.members.items():
                if n not in scores:
                    raise CodesignError(f"no scores for layer {n} (have: {sorted(scores)})")
                s = np.asarray(scores[n], dtype=np.float64).reshape(-1)
                if len(s) != len(pairs):
                    raise CodesignError(f"layer {n}: {len(s)} scores for {len(pairs)} units; the relevance "
                                        "belongs to another model")
                for local, root in pairs:
                    total[root] += s[local]
            out.append(total)
        return out

    def _group_ratios(self, ratio: Ratios) -> list[float]:
        if not isinstance(ratio, Mapping):
            r = check_ratio(ratio)
            return [r] * len(self.groups)
        unknown = set(ratio) - set(self.group_of)
        if unknown:
            raise CodesignError(f"cannot prune layers {sorted(unknown)}: prunable layers are {self.prunable} "
                                "(the logits layer is never pruned)")
        out = []
        for g in self.groups:
            given = {n: check_ratio(ratio[n], f"pruning ratio of {n}") for n in g.members if n in ratio}
            if len(set(given.values())) > 1:
                raise CodesignError(f"layers {sorted(given)} share their channels (residual add, concat or "
                                    f"depthwise conv) but got different ratios {given}: give them one ratio")
            out.append(next(iter(given.values()), 0.0))
        return out

    def select(self, scores: Mapping[str, np.ndarray], ratio: Ratios, scope: str = "layer",
               min_keep: int = 1) -> list[list[int]]:
        """Kept root channels per group (lowest group scores go first); the rule of
        `prune.select_units` with a group in place of a layer."""
        if scope not in ("layer", "global"):
            raise CodesignError(f"unknown pruning scope '{scope}': choose layer or global")
        gs = self.group_scores(scores)
        if scope == "global" and not isinstance(ratio, Mapping):
            r = check_ratio(ratio)
            allv: list[tuple[float, int, int]] = []
            for gi, s in enumerate(gs):
                m = s.mean()
                allv += [(v / m if m > 0 else 1.0, gi, i) for i, v in enumerate(s)]
            allv.sort(key=lambda t: t[0])
            drop_n = int(round(r * len(allv)))
            dropped: list[set[int]] = [set() for _ in gs]
            for _v, gi, i in allv:
                if drop_n == 0:
                    break
                if self.groups[gi].width - len(dropped[gi]) > min_keep:
                    dropped[gi].add(i)
                    drop_n -= 1
            return [[i for i in range(g.width) if i not in d] for g, d in zip(self.groups, dropped)]
        keep = []
        for g, s, r in zip(self.groups, gs, self._group_ratios(ratio)):
            n_keep = max(min_keep, g.width - int(round(r * g.width)))
            order = np.argsort(-s, kind="stable")[:n_keep]
            keep.append(sorted(int(i) for i in order))
        return keep

    # ------------------------------------------------------------------------- pruning

    def prune(self, keep_groups: list[list[int]]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Physically remove the channels not kept (in place, by `torch_pruning`).

        Returns (keep, keep_in): per member layer its kept output-unit indices and per
        consumer layer its kept input-unit indices, both in the unpruned numbering.
        """
        if len(keep_groups) != len(self.groups):
            raise CodesignError(f"{len(keep_groups)} keep lists for {len(self.groups)} channel groups")
        keep: dict[str, list[int]] = {}
        dropped_in: dict[str, set[int]] = {}
        for g, kg in zip(self.groups, keep_groups):
            ks = {int(i) for i in kg}
            if not ks or not ks <= set(range(g.width)):
                raise CodesignError(f"channel group of {g.layers}: keep indices must be a non-empty subset of "
                                    f"0..{g.width - 1}")
            for n, pairs in g.members.items():
                keep[n] = sorted(loc for loc, root in pairs if root in ks)
            for n, pairs in g.consumers.items():
                dropped_in.setdefault(n, set()).update(loc for loc, root in pairs if root not in ks)
            drop = sorted(set(range(g.width)) - ks)
            if drop:
                self.dg.get_pruning_group(g.root, g.root_fn, drop).prune()
        keep_in = {n: [i for i in range(self.fan_in[n]) if i not in d] for n, d in dropped_in.items()}
        for n, k in keep.items():
            mod = self._module(n)
            have = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
            if have != len(k):
                raise CodesignError(f"internal: layer {n} has {have} outputs after pruning, expected {len(k)}")
        return keep, keep_in

    def _module(self, name: str) -> nn.Module:
        for m, n in self.names.items():
            if n == name:
                return m
        raise CodesignError(f"model has no layer '{name}'")


# ----------------------------------------------------------------------------- entry points

def prune_module(model: nn.Module, example_input: torch.Tensor, scores: Mapping[str, np.ndarray],
                 ratio: Ratios, scope: str = "layer", min_keep: int = 1,
                 names: Mapping[nn.Module, str] | None = None
                 ) -> tuple[nn.Module, dict[str, list[int]], dict[str, list[int]]]:
    """Prune ``model`` in place: (model, keep per layer, kept inputs per consumer layer)."""
    groups = DependencyGroups(model, example_input, names)
    keep_g = groups.select(scores, ratio, scope=scope, min_keep=min_keep)
    keep, keep_in = groups.prune(keep_g)
    return model, keep, keep_in


@dataclass
class GraphPrune(StructuredPrune):
    """`StructuredPrune` plus the kept *input* units per layer (what slices relevance inputs)."""

    keep_in: dict[str, list[int]] = field(default_factory=dict)


def prune_spec_structured(spec: Spec, float_state: Mapping[str, torch.Tensor], scores: Mapping[str, np.ndarray],
                          ratio: Ratios, scope: str = "layer", min_keep: int = 1) -> GraphPrune:
    """Structured pruning of a spec network through DepGraph: the smaller spec (widths via
    `with_widths`; a depthwise conv has none of its own), its state dict and the kept units."""
    from codesign.models import build_float

    model = build_float(spec)
    model.load_state_dict(dict(float_state))
    x = torch.zeros(1, *spec["input_shape"])
    groups = DependencyGroups(model, x)
    types = {l["name"]: l["type"] for l in quant_layers(spec)}
    missing = set(groups.order) - set(types)
    if missing:
        raise CodesignError(f"internal: modules {sorted(missing)} are not layers of spec {spec['name']}")
    keep, keep_in = groups.prune(groups.select(scores, ratio, scope=scope, min_keep=min_keep))
    new_spec = with_widths(spec, {n: len(k) for n, k in keep.items() if types[n] != "dwconv"})
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    check = build_float(new_spec)
    try:
        check.load_state_dict(sd)
    except RuntimeError as exc:
        raise CodesignError(f"internal: the pruned weights do not fit the pruned spec of {spec['name']}: "
                            f"{str(exc).splitlines()[0]}") from exc
    order = [l["name"] for l in quant_layers(spec)]
    keep = {n: keep[n] for n in order if n in keep}
    return GraphPrune(spec=new_spec, state_dict=sd, keep=keep, keep_in=keep_in)


def prune_structured_graph(spec: Spec, state_dict: Mapping[str, torch.Tensor], rel: Any, ratio: Ratios,
                           scope: str = "layer", min_keep: int = 1) -> GraphPrune:
    """`prune.prune_structured` for graph specs: scores from a `codesign.relevance.Relevance`."""
    rel.check_matches(spec)
    names = [l["name"] for l in quant_layers(spec)][:-1]
    res = prune_spec_structured(spec, state_dict, {n: rel.units(n) for n in names}, ratio, scope, min_keep)
    log.info("structured pruning via DepGraph (%s, %s): %s", rel.method, scope,
             ", ".join(f"{n} {v['before']}->{v['after']}" for n, v in res.summary(spec).items()))
    return res


def slice_relevance_graph(rel: Any, pruned: GraphPrune) -> Any:
    """The relevance of the pruned network: kept units' scores and kept inputs' activations
    (inputs sliced by the dependency groups, so a residual or concat consumer is right too)."""
    layers = {}
    for l in quant_layers(rel.spec):
        n = l["name"]
        e = dict(rel.layers[n])
        units, in_act = list(e["units"]), list(e["in_act"])
        if n in pruned.keep:
            units = [units[i] for i in pruned.keep[n]]
        if n in pruned.keep_in:
            in_act = [in_act[i] for i in pruned.keep_in[n]]
        e.update(units=units, in_act=in_act, total=float(sum(units)))
        layers[n] = e
    return sliced_relevance(rel, pruned.spec, layers)
