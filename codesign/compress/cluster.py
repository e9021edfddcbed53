"""Weight sharing: relevance-weighted k-means per layer, tied through fine-tuning, snapped to
the layer's integer grid so the exported QONNX holds at most K distinct integers per layer.

Why it looks like this:

* sklearn's KMeans with ``sample_weight = weight relevance`` (not a hand-written k-means):
  relevant weights pull the centroids towards themselves, so they are represented more exactly.
* Fine-tuning keeps the sharing through ``after_step``: after every optimizer step each
  cluster's weights are set to their mean, so the shared value moves by the average of its
  members' updates (shared-gradient averaging, as in Deep Compression, applied after the step
  so it also works with Adam).
* Brevitas' weight quantizer (per-tensor float scale from max |w|) maps equal floats to equal
  integers, so <= K float values give <= K integers. Snapping the centroids to multiples of the
  scale after QAT makes the float weights equal to their dequantized values (nothing is lost
  at export) and merges centroids that share an integer.
* Pruned (masked) weights stay an exact-zero cluster of their own: with masks, K includes it.
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
from codesign.models.quantizers import QUANT_WEIGHT_TYPES

log = logging.getLogger(__name__)


@dataclass
class LayerClusters:
    """``labels``: cluster index per weight (-1 = pruned, pinned to zero); ``k`` clusters."""

    labels: torch.Tensor
    k: int

    def centroids(self, weight: torch.Tensor) -> torch.Tensor:
        flat, lab = weight.detach().flatten(), self.labels.flatten()
        sums = torch.zeros(self.k, dtype=flat.dtype).index_add_(0, lab.clamp_min(0), flat * (lab >= 0))
        cnt = torch.zeros(self.k, dtype=flat.dtype).index_add_(0, lab.clamp_min(0), (lab >= 0).to(flat.dtype))
        return sums / cnt.clamp_min(1)

    def tie(self, weight: torch.Tensor, centroids: torch.Tensor | None = None) -> torch.Tensor:
        c = self.centroids(weight) if centroids is None else centroids
        lab = self.labels.flatten()
        out = torch.where(lab >= 0, c[lab.clamp_min(0)], torch.zeros((), dtype=c.dtype))
        return out.view_as(weight)


def kmeans_1d(values: np.ndarray, k: int, sample_weight: np.ndarray | None = None, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) of 1-D values with sklearn's KMeans (k-means++ init)."""
    from sklearn.cluster import KMeans

    v = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    k_eff = min(k, len(np.unique(v)))
    if k_eff < 1:
        raise CodesignError("cannot cluster an empty layer")
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        sw = np.maximum(sw, 0) + 1e-12 * max(sw.max(), 1e-12)  # every weight keeps a little pull
    km = KMeans(n_clusters=k_eff, n_init=3, random_state=seed).fit(v, sample_weight=sw)
    return km.cluster_centers_.reshape(-1), km.labels_


def cluster_layer(weight: torch.Tensor, k: int, relevance: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None, seed: int = 0) -> LayerClusters:
    """Cluster one layer's weights into ``k`` shared values (a mask's zeros count as one)."""
    if k < 1:
        raise CodesignError(f"cluster count K must be >= 1, got {k}")
    w = weight.detach().float().flatten().cpu()
    live = torch.ones_like(w, dtype=torch.bool) if mask is None else mask.flatten().bool().cpu()
    k_live = k - 1 if mask is not None and not bool(live.all()) else k
    if k_live < 1:
        raise CodesignError("K must be >= 2 when weights are also pruned (zero is one shared value)")
    labels = torch.full(w.shape, -1, dtype=torch.long)
    rel = None if relevance is None else relevance.detach().flatten().cpu()[live].numpy()
    _, lab = kmeans_1d(w[live].numpy(), k_live, rel, seed)
    labels[live] = torch.from_numpy(lab).long()
    return LayerClusters(labels=labels.view_as(weight), k=int(lab.max()) + 1)


def _weight_key(state_dict: Mapping[str, torch.Tensor], name: str) -> str:
    """The state_dict key of layer ``name``'s weight: `body.<name>.weight` at the top level,
    `body.<block>.body.<name>.weight` inside a residual block (names are unique per spec)."""
    top = f"body.{name}.weight"
    if top in state_dict:
        return top
    hits = [k for k in state_dict if k.endswith(f".{name}.weight")]
    if len(hits) != 1:
        raise CodesignError(f"state dict has no unique weight for layer '{name}' (found {hits[:3]})")
    return hits[0]


class ClusterHook:
    """``after_step`` hook: re-tie each clustered layer's weights to their cluster means."""

    def __init__(self, clusters: Mapping[str, LayerClusters]):
        self.clusters = dict(clusters)

    def apply_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for n, c in self.clusters.items():
            key = _weight_key(state_dict, n)
            state_dict[key] = c.tie(state_dict[key])
        return state_dict

    def __call__(self, model: nn.Module) -> None:
        with torch.no_grad():
            for n, c in self.clusters.items():
                w = model.layer(n).weight
                w.copy_(c.tie(w))


def weight_scale(module: nn.Module) -> float | None:
    """The per-tensor scale of a Brevitas weight quantizer (None for a float layer)."""
    if not isinstance(module, QUANT_WEIGHT_TYPES):
        return None
    with torch.no_grad():
        s = module.quant_weight().scale
    if s.numel() != 1:
        raise CodesignError("weight sharing snaps to a per-tensor scale; this layer has a per-channel scale")
    return float(s)


def snap_to_grid(model: nn.Module, clusters: Mapping[str, LayerClusters]) -> dict[str, dict]:
    """Tie every clustered layer to its centroids rounded to the layer's integer grid.

    The quantizer's scale is taken from the current weights; it is re-derived by Brevitas after
    the change (max |w| may move), which still maps each shared float to one integer. Returns
    per layer the distinct integer values and the effective bits log2(K).
    """
    report: dict[str, dict] = {}
    with torch.no_grad():
        for n, c in clusters.items():
            mod = model.layer(n)
            w = mod.weight
            cent = c.centroids(w)
            scale = weight_scale(mod)
            if scale is not None and scale > 0:
                bits = int(mod.quant_weight().bit_width)
                qmax = 2 ** (bits - 1) - 1 if bits > 1 else 1
                cent = torch.clamp(torch.round(cent / scale), -qmax, qmax) * scale
            w.copy_(c.tie(w, cent))
            ints = integer_weights(mod)
            distinct = int(torch.unique(ints).numel()) if ints is not None else int(torch.unique(w).numel())
            report[n] = {"k": c.k, "distinct_values": distinct,
                         "effective_bits": math.log2(distinct) if distinct > 1 else 0.0}
    return report


def integer_weights(module: nn.Module) -> torch.Tensor | None:
    """The integer weights Brevitas exports (value / scale), or None for a float layer."""
    if not isinstance(module, QUANT_WEIGHT_TYPES):
        return None
    with torch.no_grad():
        q = module.quant_weight()
        return torch.round(q.value / q.scale)


def onnx_weight_levels(path: str) -> list[dict]:
    """Distinct integer weight values per weight ``Quant`` node of a QONNX file, in graph order.

    Reads each Quant node whose input is an initializer (a weight), quantizes it with the node's
    own scale/zero-point/bit-width as qonnx would, and counts the distinct integers.
    """
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(str(path))
    out = []
    for node in m.graph.node:
        if node.op_type not in ("Quant", "BipolarQuant"):
            continue
        w = m.get_initializer(node.input[0])
        if w is None:
            continue
        scale = m.get_initializer(node.input[1])
        if node.op_type == "BipolarQuant":
            ints = np.where(w >= 0, 1, -1)
        else:
            zp = m.get_initializer(node.input[2])
            ints = np.round(w / scale + zp)
        consumer = m.find_consumer(node.output[0])
        out.append({"quant_node": node.name, "consumer": consumer.name if consumer else None,
                    "shape": list(w.shape), "distinct": int(len(np.unique(ints))),
                    "zeros": int((ints == 0).sum()), "size": int(ints.size)})
    return out
