"""Relevance of neurons, filters, weights and layers: what compression keeps, shares and widens.

Why it looks like this:

* One entry point, :func:`compute_relevance`, for every criterion, so pruning, weight sharing
  and bit allocation can be run with DeepLIFT or with a non-XAI baseline (magnitude, Taylor,
  random, Hessian trace) and compared on equal terms.
* Attribution methods come from captum (DeepLIFT, Integrated Gradients, GradientShap,
  DeepLiftShap, LRP). A *unit* is an FC output neuron or a conv output channel; its relevance is
  the mean over samples of ``|attribution|`` at the unit's output (after BN, before the activation),
  summed over the feature map for a conv filter (toolchain.md).
* Brevitas' QuantReLU/QuantIdentity are registered as nonlinearities in captum's DeepLift
  table; without that the straight-through rounding silently breaks DeepLIFT's
  summation-to-delta property. The convergence delta is measured on every run and stored.
* A weight's relevance is derived, not stored (docs/compression.md): the unit's relevance is
  distributed over its incoming weights in proportion to their mean contribution
  ``|w_ij| * mean|a_j|``. The mean input activations ``mean|a_j|`` are stored per layer so the
  derivation works from ``relevance.json`` alone, also after structured pruning.
* ``relevance.json`` carries the model spec, so a file for another model (or a pruned one) is
  rejected with a clear error instead of silently mis-aligning scores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from codesign.atomic import atomic_write, read_json, write_json
from codesign.errors import CodesignError
from codesign.models.quantizers import QUANT_ACT_TYPES, QUANT_WEIGHT_TYPES
from codesign.models.zoo import Spec, block_of, is_quant_layer, layer_shapes, quant_layers, refuse_graph_spec

log = logging.getLogger(__name__)

FORMAT = "codesign.relevance/1"
ATTRIBUTION_METHODS = ("deeplift", "ig", "gradshap", "deepliftshap", "lrp")
OTHER_METHODS = ("magnitude", "taylor", "random", "hessian")
METHODS = ATTRIBUTION_METHODS + OTHER_METHODS
BASELINES = ("zero", "mean")
# |delta| / |f(x) - f(baseline)| above this is reported as a broken attribution.
DELTA_WARN = 1e-3


def _register_quant_nonlinearities() -> None:
    """Teach captum's DeepLift that Brevitas activations are nonlinearities (toolchain.md)."""
    from captum.attr._core import deep_lift

    for t in QUANT_ACT_TYPES:
        deep_lift.SUPPORTED_NON_LINEAR.setdefault(t, deep_lift.nonlinear)


_register_quant_nonlinearities()


# ----------------------------------------------------------------------------- result type

@dataclass
class Relevance:
    """Per-layer relevance of one model.

    ``layers[name]``: ``type``, ``weight_shape``, ``units`` (relevance per output unit),
    ``in_act`` (mean |input activation| per input channel/feature), ``total`` (sum of units)
    and ``score`` (``total`` normalised so all layers sum to 1).
    """

    method: str
    spec: Spec
    layers: dict[str, dict[str, Any]]
    baseline: str | None = None
    samples: int = 0
    seed: int = 0
    convergence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def model(self) -> str:
        return str(self.spec["name"])

    def units(self, name: str) -> np.ndarray:
        return np.asarray(self._layer(name)["units"], dtype=np.float64)

    def layer_scores(self) -> dict[str, float]:
        return {n: float(e["score"]) for n, e in self.layers.items()}

    def _layer(self, name: str) -> dict[str, Any]:
        if name not in self.layers:
            raise CodesignError(f"relevance has no layer '{name}' (layers: {list(self.layers)})")
        return self.layers[name]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "baseline": self.baseline,
                "model": self.model, "samples": self.samples, "seed": self.seed,
                "seconds": self.seconds, "convergence": self.convergence, "spec": self.spec,
                "layers": self.layers}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Relevance":
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CodesignError(f"not a codesign relevance file (expected format {FORMAT!r}); "
                                "create it with `codesign relevance`")
        return cls(method=obj["method"], spec=obj["spec"], layers=obj["layers"],
                   baseline=obj.get("baseline"), samples=int(obj.get("samples", 0)),
                   seed=int(obj.get("seed", 0)), convergence=obj.get("convergence", {}),
                   seconds=float(obj.get("seconds", 0.0)))

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    def check_matches(self, spec: Spec) -> None:
        """Raise when this relevance was computed for a different model (name or shapes)."""
        want = weight_shapes(spec)
        have = {n: list(e["weight_shape"]) for n, e in self.layers.items()}
        if spec["name"] != self.model or want != have:
            diff = [f"{n}: relevance {have.get(n)} vs model {want.get(n)}"
                    for n in sorted(set(want) | set(have)) if want.get(n) != have.get(n)]
            raise CodesignError(
                f"relevance file is for model '{self.model}' but the checkpoint is '{spec['name']}'"
                + (f"; layer shapes differ ({'; '.join(diff[:4])})" if diff else "")
                + ". Recompute it with `codesign relevance` on this checkpoint.")


def load_relevance(path: str | Path, spec: Spec | None = None) -> Relevance:
    rel = Relevance.from_json(read_json(path))
    if spec is not None:
        rel.check_matches(spec)
    return rel


def weight_shapes(spec: Spec) -> dict[str, list[int]]:
    """Weight tensor shape of every conv/dwconv/fc layer (what a relevance file must match):
    [out, in / groups, kh, kw] for a conv (a dwconv's is [C, 1, kh, kw])."""
    out = {}
    for name, s in layer_shapes(spec).items():
        if s["type"] in ("conv", "dwconv"):
            k = s["kernel"]
            kh, kw = (k, k) if isinstance(k, int) else (int(k[0]), int(k[1]))
            out[name] = [s["out_shape"][0], s["in_shape"][0] // s["groups"], kh, kw]
        else:
            out[name] = [s["out_shape"][0], s["in_shape"][0]]
    return out


# ----------------------------------------------------------------------- derived relevance

def weight_relevance(rel: Relevance, name: str, weight: torch.Tensor) -> torch.Tensor:
    """Relevance of every weight of a layer (same shape as ``weight``).

    Rule (docs/compression.md): unit i's relevance R_i is split over its incoming weights in
    proportion to their mean contribution c_ij = |w_ij| * mean|a_j| (for a conv weight
    [i, j, kh, kw], a_j is input channel j's mean |activation|; in a grouped or depthwise conv
    weight [i, j] reads input channel group(i) * in_per_group + j). For the random criterion the
    weights get their own seeded random scores, so "random" stays random at every granularity.
    """
    entry = rel._layer(name)
    w = weight.detach().float().cpu()
    if list(w.shape) != list(entry["weight_shape"]):
        raise CodesignError(f"layer {name}: weight shape {list(w.shape)} differs from the relevance "
                            f"file's {entry['weight_shape']}; recompute relevance for this model")
    if rel.method == "random":
        g = torch.Generator().manual_seed(rel.seed * 7919 + sum(map(ord, name)))
        return torch.rand(w.shape, generator=g)
    a = torch.tensor(entry["in_act"], dtype=torch.float32)
    if w.dim() == 4 and len(a) != w.shape[1]:  # grouped / depthwise: per output unit, its group's inputs
        per_group = w.shape[1]
        groups = len(a) // per_group
        grp = torch.arange(w.shape[0]) // (w.shape[0] // groups)
        a_io = a[grp.view(-1, 1) * per_group + torch.arange(per_group).view(1, -1)]
        contrib = w.abs() * a_io.view(w.shape[0], per_group, 1, 1)
    else:
        view = [1, -1] + [1] * (w.dim() - 2)
        contrib = w.abs() * a.view(view)
    denom = contrib.flatten(1).sum(1).clamp_min(1e-12).view([-1] + [1] * (w.dim() - 1))
    units = torch.tensor(entry["units"], dtype=torch.float32).view([-1] + [1] * (w.dim() - 1))
    return units * contrib / denom


def normalised_units(rel: Relevance, name: str) -> np.ndarray:
    """Unit relevance divided by the layer mean, so layers compare in a global ranking."""
    u = rel.units(name)
    m = float(u.mean()) if u.size else 0.0
    return u / m if m > 0 else np.ones_like(u)


# --------------------------------------------------------------------------- computation

def _unit_module(model: nn.Module, layer: dict) -> nn.Module:
    """Where a layer's units are observed: at the BN output (pre-activation), else the layer.

    For DeepLIFT's rescale rule (and for Taylor's activation x gradient) the attribution of a
    unit before and after its ReLU is identical, but captum's LayerDeepLift on a ReLU that
    feeds a MaxPool breaks summation-to-delta (measured: delta 0.7 on LeNet's conv0), so the
    pre-activation output is used.
    """
    if layer.get("bn"):
        return model.bn(layer["name"])
    return model.layer(layer["name"])


def _observation_point(model: nn.Module, spec: Spec, name: str) -> tuple[nn.Module, bool, bool]:
    """(module, attribute_to_layer_input, is_cut) where captum reads a layer's unit attributions.

    A hidden layer's units are read at the *input of the next weight layer* (after BN,
    activation and pooling; a flatten keeps each channel's H*W features together). Max-pooling
    and DeepLIFT's rescale rule conserve the attribution mass of every channel, so this is the
    unit's relevance; reading it at a ReLU/QuantReLU/BN output that feeds another hooked
    nonlinearity breaks captum's summation-to-delta (measured delta 0.57-0.72 on conv0 of
    float LeNet and a 4-bit CNN). The logits layer is read at its own output.

    Graph specs: "next" is within the layer's own sequence (top level, a residual body or a
    shortcut); a top-level layer followed by a residual block is read at the block's input; the
    last layer of a branch at the input of that branch's join quantizer (``model`` is a
    `split_joins` copy, so each branch has its own). Only top-level points cut the network,
    so only their summation-to-delta is a per-layer check (``is_cut``).
    """
    inside = block_of(spec)
    if name in inside:
        blk_name, branch = inside[name]
        blk = next(l for l in spec["layers"] if l.get("name") == blk_name)
        seq = blk.get(branch, [])
        block_mod = model.get_submodule(f"body.{blk_name}")
        join = block_mod.join if branch == "body" else getattr(block_mod, "join_shortcut", block_mod.join)
        after = seq[[l.get("name") for l in seq].index(name) + 1:]
        nxt = next((l for l in after if is_quant_layer(l)), None)
        return (model.layer(nxt["name"]), True, False) if nxt is not None else (join, False, False)
    top = spec["layers"]
    i = [l.get("name") for l in top].index(name)
    for l in top[i + 1:]:
        if is_quant_layer(l):
            return model.layer(l["name"]), True, True
        if l["type"] == "residual":
            return model.get_submodule(f"body.{l['name']}"), True, True
    return model.layer(name), False, True


def _is_quant(model: nn.Module) -> bool:
    return any(isinstance(m, QUANT_WEIGHT_TYPES) for m in model.modules())


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int, desc: str, progress: bool
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    starts = range(0, len(x), bs)
    for s in tqdm(starts, desc=desc, disable=not progress, leave=False):
        yield x[s:s + bs], y[s:s + bs]


def _per_unit(attr: torch.Tensor) -> torch.Tensor:
    """Sum of |attribution| per unit and sample: (N, C[, H, W]) -> (C,) summed over N."""
    a = attr.detach().abs()
    if a.dim() > 2:
        a = a.flatten(2).sum(2)
    return a.sum(0)


def _input_activity(model: nn.Module, spec: Spec, x: torch.Tensor, bs: int) -> dict[str, torch.Tensor]:
    """Mean |input| per input channel (conv) or feature (fc) of every weight layer."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name):
        def fn(_m, inp, _out):
            a = inp[0].detach().abs()
            a = a.transpose(0, 1).flatten(1).sum(1) if a.dim() > 2 else a.sum(0)
            sums[name] = sums.get(name, 0) + a
        return fn

    for l in quant_layers(spec):
        hooks.append(model.layer(l["name"]).register_forward_hook(hook(l["name"])))
    try:
        with torch.no_grad():
            for s in range(0, len(x), bs):
                model(x[s:s + bs])
    finally:
        for h in hooks:
            h.remove()
    shapes = layer_shapes(spec)
    out = {}
    for name, tot in sums.items():
        s = shapes[name]
        positions = (s["in_shape"][1] * s["in_shape"][2]) if s["type"] in ("conv", "dwconv") else 1
        out[name] = tot / (len(x) * positions)
    return out


def _baseline(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(x[:1])
    if kind == "mean":
        return x.mean(0, keepdim=True)
    raise CodesignError(f"unknown baseline '{kind}': choose one of {', '.join(BASELINES)}")


class _FoldedNet(nn.Module):
    """Float copy of a SpecNet with BN folded into conv/linear biases, for captum's LRP.

    captum's LRP has no rule for BatchNorm1d or Flatten; folding BN (exact in eval mode) and
    flattening inside ``forward`` leaves only Conv2d/Linear/ReLU/MaxPool2d, which have the
    epsilon rule. Quantized models are folded from their dequantized weights and their
    activations become plain ReLUs, so LRP on a Brevitas model is an approximation.
    """

    def __init__(self, model: nn.Module, spec: Spec):
        super().__init__()
        refuse_graph_spec(spec, "LRP relevance", "use deeplift (or magnitude/taylor/random) for graph models")
        self.steps: list[tuple[str, str]] = []
        self.mods = nn.ModuleDict()
        npool = 0
        for layer in spec["layers"]:
            t = layer["type"]
            if t == "pool":
                self.mods[f"pool{npool}"] = nn.MaxPool2d(layer["kernel"])
                self.steps.append(("mod", f"pool{npool}"))
                npool += 1
            elif t == "flatten":
                self.steps.append(("flatten", ""))
            else:
                name = layer["name"]
                src = model.layer(name)
                w = (src.quant_weight().value if isinstance(src, QUANT_WEIGHT_TYPES) else src.weight).detach().clone()
                b = torch.zeros(w.shape[0])
                if layer.get("bn"):
                    bn = getattr(model.body, f"{name}_bn")
                    g = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
                    w = w * g.view([-1] + [1] * (w.dim() - 1))
                    b = bn.bias.detach() - bn.running_mean * g
                if t == "conv":
                    m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=layer.get("stride", 1),
                                  padding=layer.get("padding", 0))
                else:
                    m = nn.Linear(w.shape[1], w.shape[0])
                m.weight.data.copy_(w)
                m.bias.data.copy_(b)
                self.mods[name] = m
                self.steps.append(("mod", name))
                if layer.get("act"):
                    self.mods[f"{name}_act"] = nn.ReLU()
                    self.steps.append(("mod", f"{name}_act"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for kind, name in self.steps:
            x = x.flatten(1) if kind == "flatten" else self.mods[name](x)
        return x


def _attribution_units(model: nn.Module, spec: Spec, x: torch.Tensor, y: torch.Tensor, method: str,
                       baseline: str, bs: int, progress: bool, seed: int
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Unit relevance with a captum layer-attribution method, one layer at a time."""
    from captum.attr import (LayerDeepLift, LayerDeepLiftShap, LayerGradientShap,
                             LayerIntegratedGradients, LayerLRP)

    target_model: nn.Module = model
    graph = bool(block_of(spec)) or any(l["type"] == "residual" for l in spec["layers"])
    if graph and method != "lrp":
        from codesign.models.build import split_joins

        model = split_joins(model).eval()  # captum needs each nonlinearity called once per forward
    if method == "lrp":
        refuse_graph_spec(spec, "LRP relevance", "use deeplift (or magnitude/taylor/random) for graph models")
        if any(isinstance(m, nn.Module) and type(m).__name__ == "QuantIdentity" and n.endswith("_act")
               for n, m in model.named_modules()):
            raise CodesignError("LRP needs ReLU activations; this model has bipolar (1-bit) "
                                "activations. Use deeplift for it.")
        target_model = _FoldedNet(model, spec).eval()
    base = _baseline(baseline, x)
    units: dict[str, torch.Tensor] = {}
    deltas: dict[str, float] = {}
    rel_deltas: dict[str, float] = {}
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model(x)
        ref = model(base).expand_as(out) if method in ("deeplift", "ig", "lrp") else None
    cut: dict[str, bool] = {}
    signed: dict[str, torch.Tensor] = {}  # per-sample signed attribution sums (block checks)
    for layer in quant_layers(spec):
        name = layer["name"]
        to_input, is_cut = False, True
        if method == "lrp":
            # captum gives ReLU no rule, and LRP passes relevance through ReLU unchanged, so
            # a unit's LRP relevance is read at the folded conv/linear output.
            mod = target_model.mods[name]
            algo = LayerLRP(target_model, mod)
        else:
            obs, to_input, is_cut = _observation_point(model, spec, name)
            algo = {"deeplift": LayerDeepLift, "ig": LayerIntegratedGradients,
                    "gradshap": LayerGradientShap, "deepliftshap": LayerDeepLiftShap}[method](model, obs)
        kw_in = {"attribute_to_layer_input": True} if method != "lrp" and to_input else {}
        width = layer.get("out_channels", layer.get("out_features"))
        tot, dmax = None, 0.0
        for xb, yb in _batches(x, y, bs, f"{method} {name}", progress):
            xb = xb.clone().requires_grad_()
            if method == "deeplift":
                attr, delta = algo.attribute(xb, baselines=base.expand_as(xb), target=yb,
                                             return_convergence_delta=True, **kw_in)
            elif method == "ig":
                attr, delta = algo.attribute(xb, baselines=base.expand_as(xb), target=yb, n_steps=32,
                                             return_convergence_delta=True, **kw_in)
            elif method in ("gradshap", "deepliftshap"):
                dist = x[torch.randperm(len(x))[:16]] if baseline == "mean" else torch.cat([base, x[:15]])
                kw = {"n_samples": 8} if method == "gradshap" else {}
                attr, delta = algo.attribute(xb, baselines=dist, target=yb,
                                             return_convergence_delta=True, **kw, **kw_in)
            else:
                attr, delta = algo.attribute(xb, target=yb, return_convergence_delta=True)
            if isinstance(attr, tuple):
                attr = attr[0]
            if attr.dim() == 2 and attr.shape[1] != width:      # flattened conv output: (N, C*H*W)
                attr = attr.view(attr.shape[0], width, -1)
            t = _per_unit(attr)
            tot = t if tot is None else tot + t
            dmax = max(dmax, float(delta.detach().abs().max()))
            if not is_cut:
                sb = attr.detach().flatten(1).sum(1)
                signed[name] = sb if name not in signed else torch.cat([signed[name], sb])
        units[name] = tot / len(x)
        cut[name] = is_cut
        if is_cut:
            deltas[name] = dmax
    conv: dict[str, Any] = {"per_layer_max_abs": deltas, "max_abs": max(deltas.values())}
    if graph:
        # a layer inside a residual branch is no cut of the network, so its own captum delta
        # means nothing; the last layers of a body and a conv shortcut together are a cut: their
        # attributions must sum to the output change (DeepLIFT / IG completeness)
        conv["not_cut_layers"] = [n for n, c in cut.items() if not c]
        blocks = {}
        if ref is not None and method in ("deeplift", "ig"):
            diff = (out - ref)[torch.arange(len(x)), y]
            for blk in (l for l in spec["layers"] if l["type"] == "residual"):
                short = [l for l in blk.get("shortcut", []) if is_quant_layer(l)]
                ends = [[l for l in blk["body"] if is_quant_layer(l)][-1]["name"]] + ([short[-1]["name"]] if short else [])
                if len(ends) == 2 and all(e in signed for e in ends):
                    blocks[blk["name"]] = float((signed[ends[0]] + signed[ends[1]] - diff).abs().max())
        conv["block_max_abs"] = blocks
        conv["max_abs"] = max([conv["max_abs"], *blocks.values()])
    if ref is not None:
        idx = torch.arange(len(x))
        spread = float((out[idx, y] - ref[idx, y]).abs().mean())
        conv["mean_abs_output_change"] = spread
        conv["relative"] = conv["max_abs"] / max(spread, 1e-12)
    return units, conv


def _magnitude_units(model: nn.Module, spec: Spec) -> dict[str, torch.Tensor]:
    return {l["name"]: model.layer(l["name"]).weight.detach().abs().flatten(1).sum(1)
            for l in quant_layers(spec)}


def _random_units(spec: Spec, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s["fan_out"], generator=g) for n, s in layer_shapes(spec).items()}


def _taylor_units(model: nn.Module, spec: Spec, x: torch.Tensor, y: torch.Tensor, bs: int,
                  progress: bool) -> dict[str, torch.Tensor]:
    """First-order Taylor (Molchanov et al.): |sum over positions of activation x gradient|."""
    acts: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name):
        def fn(_m, _i, out):
            out.retain_grad()
            acts[name] = out
        return fn

    for l in quant_layers(spec):
        hooks.append(_unit_module(model, l).register_forward_hook(hook(l["name"])))
    sums: dict[str, torch.Tensor] = {}
    try:
        for xb, yb in _batches(x, y, bs, "taylor", progress):
            model.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb.clone().requires_grad_()), yb, reduction="sum")
            loss.backward()
            for name, a in acts.items():
                if a.grad is None:
                    raise CodesignError(f"taylor: no gradient reached layer {name}")
                p = (a * a.grad).detach()
                p = p.flatten(2).sum(2) if p.dim() > 2 else p
                sums[name] = sums.get(name, 0) + p.abs().sum(0)
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {n: s / len(x) for n, s in sums.items()}


def hessian_trace(model: nn.Module, spec: Spec, x: torch.Tensor, y: torch.Tensor, iters: int = 16,
                  seed: int = 0, bs: int = 256, progress: bool = True) -> dict[str, torch.Tensor]:
    """Hutchinson estimate of diag(H) of the loss w.r.t. each layer's weights (HAWQ-v2).

    E[v * Hv] = diag(H) for Rademacher v; summing it gives the layer's trace, summing a row gives
    a unit's share. Returns the per-weight diagonal estimate per layer.
    """
    names = [l["name"] for l in quant_layers(spec)]
    params = [model.layer(n).weight for n in names]
    g = torch.Generator().manual_seed(seed)
    diag = [torch.zeros_like(p) for p in params]
    for _ in tqdm(range(iters), desc="hessian", disable=not progress, leave=False):
        vs = [torch.randint(0, 2, p.shape, generator=g).float() * 2 - 1 for p in params]
        hv_tot = [torch.zeros_like(p) for p in params]
        for s in range(0, len(x), bs):
            loss = nn.functional.cross_entropy(model(x[s:s + bs]), y[s:s + bs], reduction="sum") / len(x)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            try:
                hv = torch.autograd.grad(grads, params, grad_outputs=vs)
            except RuntimeError as exc:
                raise CodesignError(f"hessian: second derivatives unavailable for this model ({exc}); "
                                    "use the float checkpoint") from exc
            hv_tot = [a + b.detach() for a, b in zip(hv_tot, hv)]
        diag = [d + v * h / iters for d, v, h in zip(diag, vs, hv_tot)]
    return dict(zip(names, diag))


def compute_relevance(model: nn.Module, spec: Spec, x: torch.Tensor, y: torch.Tensor,
                      method: str = "deeplift", baseline: str = "zero", batch_size: int = 128,
                      seed: int = 0, progress: bool = True, hessian_iters: int = 16,
                      check_delta: bool = True) -> Relevance:
    """Relevance of every unit and layer of ``model`` (a float or Brevitas SpecNet).

    ``x, y``: the samples (training images, never the test set) and their labels; attributions
    are taken for the true class. ``baseline``: the DeepLIFT/IG reference (zero or mean image).
    With ``check_delta`` a DeepLIFT convergence delta above ``DELTA_WARN`` of the output change
    raises (zero baseline), because every later decision would rest on broken attributions; with
    the mean baseline it is a warning (captum's max-pool rule is inexact there, see the docs).
    """
    method = method.lower()
    if method not in METHODS:
        raise CodesignError(f"unknown relevance method '{method}': choose one of {', '.join(METHODS)}")
    if baseline not in BASELINES:
        raise CodesignError(f"unknown baseline '{baseline}': choose one of {', '.join(BASELINES)}")
    if len(x) == 0 or len(x) != len(y):
        raise CodesignError(f"relevance needs a non-empty batch with one label per image "
                            f"(got {len(x)} images, {len(y)} labels)")
    t0 = time.time()
    was_training = model.training
    model.eval()
    x = x.detach().float()
    y = y.detach().long()
    conv: dict[str, Any] = {}
    try:
        if method in ATTRIBUTION_METHODS:
            units, conv = _attribution_units(model, spec, x, y, method, baseline, batch_size, progress, seed)
        elif method == "magnitude":
            units = _magnitude_units(model, spec)
        elif method == "random":
            units = _random_units(spec, seed)
        elif method == "taylor":
            units = _taylor_units(model, spec, x, y, batch_size, progress)
        else:
            diag = hessian_trace(model, spec, x, y, iters=hessian_iters, seed=seed, bs=batch_size,
                                 progress=progress)
            # Unit share of the trace; the estimate can be slightly negative for tiny rows.
            units = {n: d.flatten(1).sum(1).clamp_min(0) for n, d in diag.items()}
            conv = {"hessian_trace": {n: float(d.sum()) for n, d in diag.items()}, "iters": hessian_iters}
        act = _input_activity(model, spec, x, batch_size)
    finally:
        model.train(was_training)
    shapes = weight_shapes(spec)
    totals = {n: float(units[n].sum()) for n in shapes}
    grand = sum(totals.values()) or 1.0
    layers = {}
    for l in quant_layers(spec):
        n = l["name"]
        layers[n] = {"type": l["type"], "weight_shape": shapes[n],
                     "units": [float(v) for v in units[n].detach().cpu()],
                     "in_act": [float(v) for v in act[n].detach().cpu()],
                     "total": totals[n], "score": totals[n] / grand}
    rel = Relevance(method=method, spec=spec, layers=layers,
                    baseline=baseline if method in ("deeplift", "ig", "gradshap", "deepliftshap") else None,
                    samples=len(x), seed=seed, convergence=conv, seconds=time.time() - t0)
    if method == "deeplift" and conv:
        log.info("DeepLIFT convergence delta: max |delta| %.2e (%.2e of the mean output change)",
                 conv["max_abs"], conv.get("relative", float("nan")))
        if conv.get("relative", 0.0) > DELTA_WARN and baseline != "zero":
            # captum's max-pool rule is not conservative when the reference image varies
            # spatially (measured relative delta 0.1-0.4 on LeNet with the mean image); exact
            # with the zero baseline. Reported, not fatal: docs/compression.md.
            log.warning("DeepLIFT with the %s baseline: relative convergence delta %.3g (captum's "
                        "max-pool rule is inexact for non-constant references)", baseline, conv["relative"])
        elif check_delta and conv.get("relative", 0.0) > DELTA_WARN:
            raise CodesignError(
                f"DeepLIFT summation-to-delta is broken (max |delta| {conv['max_abs']:.3g}, "
                f"{conv['relative']:.3g} of the output change): a nonlinearity is not registered with captum")
    log.info("relevance (%s) of %s on %d samples in %.1f s", method, spec["name"], len(x), rel.seconds)
    return rel


def relevance_for_checkpoint(ckpt_path: str | Path, method: str = "deeplift", samples: int = 512,
                             baseline: str = "zero", batch_size: int = 128, seed: int = 0,
                             progress: bool = True, splits=None) -> Relevance:
    """Relevance of a float or QAT checkpoint on its own dataset's first ``samples`` train images."""
    from codesign.data import sample_batch
    from codesign.flow import dataset_for, model_from_checkpoint
    from codesign.train import load_checkpoint

    if samples < 1:
        raise CodesignError(f"--samples must be >= 1, got {samples}")
    ck = load_checkpoint(ckpt_path)
    spec = ck["spec"]
    if spec is None:
        raise CodesignError(f"{ckpt_path} holds no model spec; it was not written by codesign train")
    model = model_from_checkpoint(ckpt_path, spec, ck["plan"], ck["state_dict"])
    splits = splits or dataset_for(ck["meta"])
    x, y = sample_batch(splits, samples, split="train")
    return compute_relevance(model.eval(), spec, x, y, method=method, baseline=baseline,
                             batch_size=batch_size, seed=seed, progress=progress)


# ------------------------------------------------------------------------------------ plot

def plot_relevance(rel: Relevance, path: str | Path) -> Path:
    """Per-layer relevance bars and the per-unit (filter/neuron) distribution of each layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rel.layers)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    a0.bar(names, [rel.layers[n]["score"] for n in names], color="tab:blue")
    a0.set_ylabel("layer relevance (normalised)")
    a0.set_title(f"{rel.model}: {rel.method} per layer")
    data = [normalised_units(rel, n) for n in names]
    a1.boxplot(data, showfliers=True)
    a1.set_xticks(range(1, len(names) + 1), names)
    a1.set_yscale("log")
    a1.set_ylabel("unit relevance / layer mean")
    a1.set_title("per filter / neuron distribution")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return Path(path)
