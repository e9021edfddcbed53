"""One quantization-sensitivity model for compress and search: relevance lost per (layer, bits).

Why a table: bit allocation (``compress/bits.py``, the ILP in ``compress/ilp.py``) and the
co-design search (``search/feedback.py``) must price "layer l at b bits" the same way, and the
price must be *measured* on the model, not a closed-form ``4^-b`` / ``2^-b`` guess. The table
is small (layers x bit widths) and cheap to tabulate before any search, so it is computed once,
saved next to ``relevance.json`` as ``sensitivity.json`` and read by every decision.

The measure (docs/compression.md, "Sensitivity table"):

* ``weight[l][b]`` = ``score_l * sum_i R_i e_i(b) / sum_i R_i``: the relevance-weighted relative
  quantization error of layer l's units. ``R_i`` is unit i's relevance (DeepLIFT by default, on
  the model being compressed, float or quantized), ``score_l`` the layer's share of the network
  relevance, and ``e_i(b) = min_alpha ||w_i - alpha Q_b(w_i)|| / ||w_i||`` with ``Q_b`` Brevitas'
  own weight quantizer at b bits (the project's per-tensor max-abs scaled narrow-range signed
  grid, or its bipolar quantizer at 1 bit). The per-unit ``alpha`` is free because BN and the
  threshold absorption rescale each unit in the integer datapath; what remains is the
  resolution the shared per-tensor grid leaves each unit. A pruned unit has ``e_i = 1``, so the
  pruning mass of the same relevance is on the same scale (``prune_mass``).
* ``act[l][b]``: the same with ``e_i(b)`` the relative error of unit i's activation (post-ReLU,
  over the samples and positions) under QuantReLU's unsigned per-tensor grid at b bits with
  a max-calibrated scale (bipolar sign at 1 bit); again up to a per-unit scale (thresholds).
* ``method="hessian"``: HAWQ-V2 in the same format: ``weight[l][b] = Tr(H_l)/n_l *
  ||Q_b(W_l) - W_l||^2`` (Hutchinson trace, Brevitas ``Q_b``), activations with the unit share of
  the trace as ``R_i``; normalised so the layers sum to 1 at the lowest tabulated width, so it
  compares like with like against relevance tables and the pruning mass.
* ``magnitude``/``random``/any other criterion: the relevance formula with that criterion's unit
  scores, so baselines differ only in the scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from codesign.atomic import read_json, write_json
from codesign.errors import CodesignError
from codesign.models.zoo import Spec, layer_shapes, quant_layers

log = logging.getLogger(__name__)

FORMAT = "codesign.sensitivity/1"
DEFAULT_BITS = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass
class SensitivityTable:
    """Relevance lost per (layer, bits) for weights and activations (see the module doc)."""

    method: str
    model: str
    weight: dict[str, dict[int, float]]
    act: dict[str, dict[int, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.weight)

    def _get(self, part: dict[str, dict[int, float]], what: str, layer: str, bits: int) -> float:
        row = part.get(layer)
        if row is None:
            raise CodesignError(f"sensitivity table ({self.method}, {self.model}) has no {what} entry for "
                                f"layer '{layer}' (layers: {list(part)}); recompute it for this model")
        b = int(bits)
        if b not in row:
            raise CodesignError(f"sensitivity table has no {b}-bit {what} entry for {layer} (tabulated: "
                                f"{sorted(row)}); recompute it with --sensitivity-bits covering {b}")
        return float(row[b])

    def w(self, layer: str, bits: int) -> float:
        """Relevance lost by quantizing ``layer``'s weights to ``bits``."""
        return self._get(self.weight, "weight", layer, bits)

    def a(self, layer: str, bits: int) -> float:
        """Relevance lost by quantizing ``layer``'s output activations to ``bits``."""
        return self._get(self.act, "activation", layer, bits)

    def has_act(self, layer: str) -> bool:
        return layer in self.act

    def damage(self, weight_bits: Mapping[str, int], act_bits: Mapping[str, int] | None = None) -> float:
        """Total relevance lost by a bit plan (sum over layers, weights and activations)."""
        d = sum(self.w(n, b) for n, b in weight_bits.items())
        for n, b in (act_bits or {}).items():
            if n in self.act:
                d += self.a(n, b)
        return float(d)

    def check_layers(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.weight]
        if missing:
            raise CodesignError(f"sensitivity table of '{self.model}' lacks layers {missing}; it belongs to "
                                "another model: recompute it (`codesign relevance ... --sensitivity`)")

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "model": self.model, "meta": self.meta,
                "weight": {n: {str(b): v for b, v in row.items()} for n, row in self.weight.items()},
                "act": {n: {str(b): v for b, v in row.items()} for n, row in self.act.items()}}

    @classmethod
    def from_json(cls, obj: Any) -> "SensitivityTable":
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CodesignError(f"not a codesign sensitivity table (expected format {FORMAT!r}); create it "
                                "with `codesign relevance CKPT --sensitivity --out relevance.json`")
        conv = lambda part: {n: {int(b): float(v) for b, v in row.items()} for n, row in part.items()}  # noqa: E731
        return cls(method=str(obj["method"]), model=str(obj["model"]), weight=conv(obj["weight"]),
                   act=conv(obj.get("act", {})), meta=dict(obj.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())


def load_table(path: str | Path) -> SensitivityTable:
    return SensitivityTable.from_json(read_json(path))


def table_path_for(relevance_path: str | Path) -> Path:
    """Where the table of a relevance file lives: ``relevance.json`` -> ``sensitivity.json``,
    ``X.json`` -> ``X.sensitivity.json`` (beside it)."""
    p = Path(relevance_path)
    if p.name == "relevance.json":
        return p.with_name("sensitivity.json")
    return p.with_name(p.stem + ".sensitivity.json")


def find_table(relevance_path: str | Path | None) -> SensitivityTable | None:
    """The table next to a relevance file, or None when there is none."""
    if relevance_path is None:
        return None
    p = table_path_for(relevance_path)
    return load_table(p) if p.is_file() else None


# ----------------------------------------------------------------------------- measurement

def _unit_rel_error(ref: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    """Per unit (dim 0) ``min_alpha ||ref - alpha q|| / ||ref||`` (1 where q or ref is zero)."""
    r = ref.detach().double().flatten(1)
    qq = q.detach().double().flatten(1)
    rr = (r * r).sum(1)
    qn = (qq * qq).sum(1)
    rq = (r * qq).sum(1)
    resid = rr - torch.where(qn > 0, rq * rq / qn.clamp_min(1e-300), torch.zeros_like(rq))
    e = torch.sqrt(resid.clamp_min(0) / rr.clamp_min(1e-300))
    e = torch.where(rr > 0, e, torch.zeros_like(e))
    return e.clamp(0, 1).numpy()


def brevitas_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` through the project's Brevitas weight quantizer at ``bits`` (dequantized)."""
    from codesign.models import quantizers as Q

    w = weight.detach().float().cpu()
    if w.dim() == 4:
        m = Q.quant_conv(w.shape[1], w.shape[0], (w.shape[2], w.shape[3]), 1, 0, int(bits))
    else:
        m = Q.quant_linear(w.shape[1], w.shape[0], int(bits))
    with torch.no_grad():
        m.weight.copy_(w)
        return m.quant_weight().value.detach().float()


def weight_errors(model: nn.Module, spec: Spec, bits: Iterable[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per layer and bit width, the relative quantization error of every unit's weights."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for l in quant_layers(spec):
        n = l["name"]
        w = model.layer(n).weight.detach().float().cpu()
        out[n] = {int(b): _unit_rel_error(w, brevitas_weight(w, b)) for b in bits}
    return out


def _pre_activations(model: nn.Module, spec: Spec, x: torch.Tensor, bs: int = 256) -> dict[str, torch.Tensor]:
    """Input of every hidden layer's activation module (BN output), (N, C[, H, W]), no grad."""
    acts: dict[str, list[torch.Tensor]] = {}
    hooks = []
    names = [l["name"] for l in quant_layers(spec) if l.get("act")]
    for n in names:
        mod = model.act(n)
        if mod is None:
            continue
        hooks.append(mod.register_forward_hook(
            lambda _m, inp, _o, n=n: acts.setdefault(n, []).append(inp[0].detach().float().cpu())))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(x), bs):
                model(x[s:s + bs])
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return {n: torch.cat(v) for n, v in acts.items()}


def quantize_act(ref: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned per-tensor uniform quantization as Brevitas' QuantReLU computes it
    (``clamp(round(r / s), 0, 2^b - 1) * s``) with the scale calibrated to the observed maximum,
    ``s = max(r) / (2^b - 1)`` (QAT learns the scale; its fixed initial value 6.0 would make the
    error a clipping artefact of the BN output range). 1 bit: the bipolar sign of the
    pre-activation, as the project's 1-bit activation."""
    b = int(bits)
    top = float(ref.max())
    if top <= 0:
        return torch.zeros_like(ref)
    levels = 2 ** b - 1
    s = top / levels
    return torch.clamp(torch.round(ref / s), 0, levels) * s


def act_errors(model: nn.Module, spec: Spec, x: torch.Tensor, bits: Iterable[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per hidden layer and bit width, the relative error of every unit's activation (post-ReLU,
    over samples and positions, up to a per-unit scale) at that width (see `quantize_act`)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for n, h in _pre_activations(model, spec, x).items():
        ref = torch.relu(h).transpose(0, 1).contiguous()         # (C, N[, H, W])
        row = {}
        for b in bits:
            qv = torch.sign(h).transpose(0, 1) if int(b) == 1 else quantize_act(ref, b)
            row[int(b)] = _unit_rel_error(ref, qv)
        out[n] = row
    return out


def _weighted(units: np.ndarray, errors: np.ndarray) -> float:
    tot = float(units.sum())
    return float((units * errors).sum() / tot) if tot > 0 else float(errors.mean())


def table_from_scores(spec: Spec, method: str, unit_scores: Mapping[str, np.ndarray],
                      layer_share: Mapping[str, float], werr: Mapping[str, Mapping[int, np.ndarray]],
                      aerr: Mapping[str, Mapping[int, np.ndarray]], meta: dict[str, Any] | None = None
                      ) -> SensitivityTable:
    """Combine unit scores with measured unit errors into a table (the module doc's formula)."""
    weight, act = {}, {}
    for l in quant_layers(spec):
        n = l["name"]
        u = np.abs(np.asarray(unit_scores[n], dtype=np.float64))
        s = float(layer_share[n])
        weight[n] = {b: s * _weighted(u, e) for b, e in werr[n].items()}
        if n in aerr:
            act[n] = {b: s * _weighted(u, e) for b, e in aerr[n].items()}
    return SensitivityTable(method=method, model=str(spec["name"]), weight=weight, act=act, meta=dict(meta or {}))


def relevance_table(model: nn.Module, spec: Spec, rel: Any, x: torch.Tensor,
                    bits: Iterable[int] = DEFAULT_BITS) -> SensitivityTable:
    """The table of ``model`` from a `codesign.relevance.Relevance` of the same model.

    ``x``: training images for the activation errors (the relevance samples are a good choice).
    Works for any criterion (deeplift, magnitude, random, ...): only the unit scores differ.
    """
    rel.check_matches(spec)
    bits = sorted({int(b) for b in bits})
    werr = weight_errors(model, spec, bits)
    aerr = act_errors(model, spec, x, bits)
    quantized = getattr(model, "plan", None)
    meta = {"bits": bits, "samples": int(len(x)), "relevance_method": rel.method,
            "relevance_samples": rel.samples, "plan": quantized,
            "rule": "score_l * sum_i R_i e_i(b) / sum_i R_i; e_i: per-unit relative Brevitas quantization error"}
    scores = {n: rel.units(n) for n in rel.layers}
    t = table_from_scores(spec, rel.method, scores, rel.layer_scores(), werr, aerr, meta)
    log.info("sensitivity table (%s) of %s: %s", rel.method, spec["name"],
             ", ".join(f"{n} w{bits[0]} {t.weight[n][bits[0]]:.3g} w{bits[-1]} {t.weight[n][bits[-1]]:.3g}"
                       for n in t.weight))
    return t


def hessian_table(model: nn.Module, spec: Spec, x: torch.Tensor, y: torch.Tensor,
                  bits: Iterable[int] = DEFAULT_BITS, iters: int = 8, seed: int = 0) -> SensitivityTable:
    """HAWQ-V2 sensitivity in the table format: Tr(H_l)/n_l * ||Q_b(W_l) - W_l||^2 (module doc).

    ``model`` must be differentiable twice (a float SpecNet; Brevitas' rounding has no
    second derivative)."""
    from codesign.relevance import hessian_trace

    bits = sorted({int(b) for b in bits})
    diag = hessian_trace(model.eval(), spec, x, y, iters=iters, seed=seed, progress=False)
    shapes = layer_shapes(spec)
    weight: dict[str, dict[int, float]] = {}
    for l in quant_layers(spec):
        n = l["name"]
        w = model.layer(n).weight.detach().float().cpu()
        tr = max(float(diag[n].sum()), 0.0)
        weight[n] = {b: tr / shapes[n]["weights"] * float(((brevitas_weight(w, b) - w) ** 2).sum()) for b in bits}
    norm = sum(weight[n][bits[0]] for n in weight) or 1.0
    weight = {n: {b: v / norm for b, v in row.items()} for n, row in weight.items()}
    traces = {n: max(float(diag[n].sum()), 0.0) for n in weight}
    tt = sum(traces.values()) or 1.0
    aerr = act_errors(model, spec, x, bits)
    units = {n: diag[n].flatten(1).sum(1).clamp_min(0).numpy() for n in weight}
    act = {n: {b: traces[n] / tt * _weighted(units[n], e) for b, e in aerr[n].items()} for n in aerr}
    return SensitivityTable(method="hessian", model=str(spec["name"]), weight=weight, act=act,
                            meta={"bits": bits, "samples": int(len(x)), "iters": iters, "traces": traces,
                                  "rule": "HAWQ-V2: Tr(H_l)/n_l * ||Q_b(W_l) - W_l||^2, normalised"})


def prune_mass(units: np.ndarray, ratio: float) -> float:
    """Share of a layer's unit relevance held by its round(ratio*width) least relevant units
    (the units structured pruning removes: e_i = 1 in the table's terms)."""
    u = np.sort(np.abs(np.asarray(units, dtype=np.float64)))
    if u.size == 0 or u.sum() <= 0:
        return float(ratio)
    k = int(round(float(ratio) * u.size))
    return float(u[:k].sum() / u.sum())


def sensitivity_for_checkpoint(ckpt_path: str | Path, rel: Any, samples: int = 512,
                               bits: Iterable[int] = DEFAULT_BITS, splits: Any = None) -> SensitivityTable:
    """The table of a float or QAT checkpoint from its relevance (``codesign relevance --sensitivity``).
    A hessian relevance gives the HAWQ-V2 table (float checkpoints only)."""
    from codesign.data import sample_batch
    from codesign.flow import dataset_for
    from codesign.models import build_float, build_quant
    from codesign.train import load_checkpoint

    ck = load_checkpoint(ckpt_path)
    spec = ck["spec"]
    model = build_quant(spec, ck["plan"]) if ck["plan"] else build_float(spec)
    model.load_state_dict(ck["state_dict"])
    splits = splits or dataset_for(ck["meta"])
    x, y = sample_batch(splits, samples, split="train")
    if rel.method == "hessian":
        if ck["plan"]:
            raise CodesignError("the Hessian table needs a float checkpoint (Brevitas rounding has no "
                                "second derivative)")
        return hessian_table(model.eval(), spec, x, y, bits, seed=rel.seed)
    return relevance_table(model.eval(), spec, rel, x, bits)
