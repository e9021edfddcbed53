"""The compression flow: relevance -> structured prune -> bit plan -> masks -> clusters -> QAT ->
snap to the integer grid -> QONNX export. Used by `codesign compress` and the co-design search.

Structured pruning of a chain spec uses `prune.py`; a spec with residual blocks or depthwise
convs (`depgraph.needs_depgraph`) goes through `depgraph.py` (Torch-Pruning's DepGraph), which
removes every group of coupled channels together; on chains both give identical results.
Order matters and is fixed: structured pruning first (it changes the spec every later step
sees), then bits (allocated on the pruned network), then unstructured masks and weight sharing
(both act on the weights that enter QAT and are kept through it by `after_step` hooks).
Everything is written into one run folder: `qat.pt` (the compressed checkpoint, named as the
contract's QAT checkpoint so the dataflow compiler picks it up), `plan.json` (bits plus
`prune` and `cluster` sections), `model.onnx` and `compress.json` (what was done and measured).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from codesign.atomic import write_json
from codesign.compress.bits import (Budget, CostFn, allocate_bits, parse_budget, uniform_allocation,
                                    weight_memory_bits)
from codesign.compress.cluster import ClusterHook, cluster_layer, onnx_weight_levels, snap_to_grid
from codesign.compress.depgraph import needs_depgraph, prune_structured_graph, slice_relevance_graph
from codesign.compress.prune import (MaskHook, Ratios, chain_hooks, check_ratio, prune_structured,
                                     slice_relevance, weight_masks)
from codesign.data import DatasetSplits, make_loaders, sample_batch
from codesign.errors import CodesignError
from codesign.models import build_float, count_weights, parse_bits, save_plan, uniform_plan, validate_plan
from codesign.models.plan import Plan, average_weight_bits
from codesign.models.zoo import Spec, layer_shapes, quant_layers
from codesign.relevance import Relevance, compute_relevance, hessian_trace, weight_relevance
from codesign.train import TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class CompressConfig:
    """What to compress and how. ``bits``: a plan dict, ``uniform:w4a4``, ``avg:B``, ``mem:BITS``
    or ``cost:LIMIT`` (with ``cost``, a ``plan -> float`` callback). ``allocator`` chooses the
    sensitivity for budgets: relevance (default), hessian, or uniform. ``prune_steps`` > 1 runs
    the iterative schedule: prune a geometric share, fine-tune the float model
    ``finetune_epochs``, recompute relevance with the same method, repeat.
    ``quantize=False`` fine-tunes the pruned/shared network in float (with the same hooks)
    instead of QAT and writes ``compressed_float.pt``: a cheap screening mode for studies and
    searches that compare criteria, not precisions.

    Bits under the *hardware* budget: ``bits="ilp:LUT=8000,BRAM=100,fps=10000"`` (exact ILP,
    `codesign.compress.ilp`) or ``"greedy:..."`` (the greedy walk at the same budget, the
    baseline). ``sensitivity``: the `SensitivityTable` every allocation reads; None computes it
    from ``rel`` on the model being compressed (HAWQ-V2 table for ``allocator="hessian"``).
    Iterative bit lowering (Pruning-by-Explaining style, on the quantized model):
    ``bit_steps`` > 1 or an explicit ``schedule`` list of budgets (e.g. ``["avg:6", "avg:5",
    "avg:4"]``): per step allocate with the table of the current model, QAT-fine-tune
    ``finetune_epochs``, recompute DeepLIFT on the *quantized* model at that plan and its table.
    ``iterative`` N sets ``prune_steps`` and ``bit_steps`` to N."""

    prune_filters: Ratios | None = None
    prune_weights: Ratios | None = None
    prune_scope: str = "layer"
    #: unstructured pruning per output unit (each loses ``prune_weights`` of its own weights)
    prune_weights_per_unit: bool = False
    prune_steps: int = 1
    finetune_epochs: int = 1
    bits: str | dict = "uniform:w8a8"
    allocator: str = "relevance"
    act_bits: int | None = None
    bit_bounds: tuple[int, int] = (2, 8)
    input_bits: int = 8
    cluster: int | None = None
    cluster_weighted: bool = True
    qat: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, lr=5e-4, patience=None))
    export: bool = True
    quantize: bool = True
    check_samples: int = 64
    relevance_samples: int = 256
    hessian_iters: int = 8
    seed: int = 0
    cost: CostFn | None = None
    bit_steps: int = 1
    schedule: list[str] | None = None
    iterative: int | None = None
    sensitivity: Any = None
    sensitivity_bits: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

    def __post_init__(self) -> None:
        if self.iterative is not None:
            if self.iterative < 1:
                raise CodesignError(f"--iterative STEPS must be >= 1, got {self.iterative}")
            self.prune_steps = self.bit_steps = int(self.iterative)
        if self.bit_steps < 1:
            raise CodesignError(f"bit_steps must be >= 1, got {self.bit_steps}")
        if self.schedule is not None and (not isinstance(self.schedule, list) or not self.schedule
                                          or not all(isinstance(b, str) for b in self.schedule)):
            raise CodesignError("schedule must be a non-empty list of bit budgets, e.g. ['avg:6', 'avg:4']")
        for what, r in (("--prune-filters", self.prune_filters), ("--prune-weights", self.prune_weights)):
            if r is None:
                continue
            for v in (r.values() if isinstance(r, Mapping) else [r]):
                check_ratio(v, f"{what} ratio")
        if self.prune_steps < 1:
            raise CodesignError(f"prune_steps must be >= 1, got {self.prune_steps}")
        if self.cluster is not None and self.cluster < 1:
            raise CodesignError(f"--cluster K must be >= 1, got {self.cluster}")
        if self.allocator not in ("relevance", "hessian", "uniform"):
            raise CodesignError(f"unknown bit allocator '{self.allocator}': choose relevance, hessian or uniform")


def _step_ratio(r: Ratios, steps: int) -> Ratios:
    """Per-step ratio so that `steps` steps remove `r` in total (keep (1-r)^(1/steps) each)."""
    f = lambda v: 1.0 - (1.0 - float(v)) ** (1.0 / steps)  # noqa: E731
    return {k: f(v) for k, v in r.items()} if isinstance(r, Mapping) else f(r)


def hessian_sensitivity(spec: Spec, state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        iters: int = 8, seed: int = 0) -> dict[str, float]:
    """HAWQ-v2 sensitivity per layer: Tr(H_l) * max|W_l|^2 (quantization noise ~ range^2 4^-b)."""
    model = build_float(spec)
    model.load_state_dict(state)
    diag = hessian_trace(model.eval(), spec, x, y, iters=iters, seed=seed, progress=False)
    return {n: max(float(d.sum()), 0.0) * float(model.layer(n).weight.detach().abs().max()) ** 2
            for n, d in diag.items()}


def _hw_setup(spec: Spec, cfg: CompressConfig, opts: dict) -> tuple[Any, Any]:
    """(SearchSpace, HwEstimator) for a hardware budget: the compression's bit bounds, no pruning
    (structured pruning has already been applied to ``spec``)."""
    from codesign.designspace.estimate import HwEstimator
    from codesign.designspace.space import SearchSpace

    lo, hi = cfg.bit_bounds
    acts = (cfg.act_bits,) if cfg.act_bits is not None else tuple(range(max(2, lo), hi + 1))
    space = SearchSpace(spec, weight_bits=tuple(range(lo, hi + 1)), act_bits=acts, prune_levels=(0.0,),
                        input_bits=cfg.input_bits)
    hw = HwEstimator(space, opts["board"], opts["fps"], opts["clock"], limits=opts["limits"])
    return space, hw


def hw_budget_plan(spec: Spec, cfg: CompressConfig, text: str, table: Any, rel: Relevance | None) -> Plan:
    """Bits under a hardware budget: the exact ILP (``ilp:``), the greedy walk (``greedy:``), or
    the widest uniform plan that fits (``allocator=uniform``), all at the same LUT/BRAM/FPS."""
    from codesign.compress.ilp import ilp_allocate, parse_hw_budget
    from codesign.designspace.estimate import binding

    opts = parse_hw_budget(text)
    space, hw = _hw_setup(spec, cfg, opts)
    act = cfg.act_bits if cfg.act_bits is not None else opts["act"]

    def util(plan: Plan) -> float:
        """Binding used/limit of the plan at the target FPS (a large penalty if it misses it)."""
        from codesign.designspace.space import Candidate

        return binding(hw.estimate(Candidate.from_plan(plan, cfg.input_bits)), hw.limits)

    budget = Budget("cost", 1.0, util)
    if cfg.allocator == "uniform":
        return uniform_allocation(spec, budget, cfg.act_bits, cfg.bit_bounds, cfg.input_bits)
    if opts["kind"] == "greedy":
        return allocate_bits(spec, table, budget, act_bits=cfg.act_bits, default_bounds=cfg.bit_bounds,
                             input_bits=cfg.input_bits)
    units = {n: rel.units(n) for n in rel.layers} if rel is not None else None
    res = ilp_allocate(space, hw, table, units, rel.layer_scores() if rel else None, opts["alpha"], act=act)
    return space.plan(res.best)


def make_plan(spec: Spec, cfg: CompressConfig, rel: Relevance | None,
              hessian: Mapping[str, float] | None = None, table: Any = None) -> Plan:
    """The bit plan for ``spec`` from ``cfg.bits`` (see CompressConfig). ``table``: the
    sensitivity table (preferred); without one the documented per-layer-score fallback."""
    if isinstance(cfg.bits, dict):
        plan = dict(cfg.bits)
        validate_plan(spec, plan)
        return plan
    text = cfg.bits.strip().lower()
    if text.startswith(("ilp:", "greedy:")):
        if table is None and cfg.allocator != "uniform":
            raise CodesignError(f"--bits {cfg.bits} needs a sensitivity table: pass --relevance (it is computed "
                                "from it) or --sensitivity sensitivity.json")
        return hw_budget_plan(spec, cfg, text, table, rel)
    if text.startswith("uniform:"):
        w, a = parse_bits(text.split(":", 1)[1])
        return uniform_plan(spec, w, a, cfg.input_bits)
    if text.startswith("cost:"):
        if cfg.cost is None:
            raise CodesignError("--bits cost:LIMIT needs a cost callback (CompressConfig.cost)")
        budget = Budget("cost", float(text.split(":", 1)[1]), cfg.cost)
    else:
        budget = parse_budget(text)
    if cfg.allocator == "uniform":
        return uniform_allocation(spec, budget, cfg.act_bits, cfg.bit_bounds, cfg.input_bits)
    if table is not None:
        sens: Any = table
    elif cfg.allocator == "hessian":
        if hessian is None:
            raise CodesignError("hessian allocation needs Hessian sensitivities")
        sens = dict(hessian)
    else:
        if rel is None:
            raise CodesignError(f"--bits {cfg.bits} allocates bits by relevance: pass --relevance")
        sens = rel.layer_scores()
    return allocate_bits(spec, sens, budget, act_bits=cfg.act_bits, default_bounds=cfg.bit_bounds,
                         input_bits=cfg.input_bits)


def _float_finetune(spec: Spec, state: dict, splits: DatasetSplits, cfg: CompressConfig) -> dict:
    model = build_float(spec)
    model.load_state_dict(state)
    tc = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.qat.lr, batch_size=cfg.qat.batch_size, patience=None,
                     seed=cfg.seed, max_batches_per_epoch=cfg.qat.max_batches_per_epoch,
                     progress=cfg.qat.progress)
    fit(model, splits, tc)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _float_state(spec: Spec, state: Mapping[str, torch.Tensor]) -> dict:
    """The float model's entries of a state dict (a QAT state also holds activation scales)."""
    keys = build_float(spec).state_dict().keys()
    return {k: state[k] for k in keys}


def _needs_table(cfg: CompressConfig) -> bool:
    if not isinstance(cfg.bits, str):
        return False
    text = cfg.bits.strip().lower()
    return not (text.startswith("uniform:") or cfg.allocator == "uniform")


def _table_for(spec: Spec, state: Mapping[str, torch.Tensor], cfg: CompressConfig, rel: Relevance | None,
               x: torch.Tensor, y: torch.Tensor, spec_changed: bool, model: torch.nn.Module | None = None) -> Any:
    """The sensitivity table of the model being compressed: the given one when it is for this
    very spec, else measured now (relevance table, or HAWQ-V2 for ``allocator="hessian"``)."""
    from codesign.compress.sensitivity import hessian_table, relevance_table

    given = cfg.sensitivity
    if given is not None and not spec_changed and model is None:
        given.check_layers([l["name"] for l in quant_layers(spec)])
        return given
    if cfg.allocator == "hessian":
        fm = build_float(spec)
        fm.load_state_dict(_float_state(spec, state))
        return hessian_table(fm, spec, x, y, cfg.sensitivity_bits, iters=cfg.hessian_iters, seed=cfg.seed)
    if rel is None:
        return None
    if model is None:
        model = build_float(spec)
        model.load_state_dict(_float_state(spec, state))
    return relevance_table(model.eval(), spec, rel, x, cfg.sensitivity_bits)


def _bit_schedule(spec: Spec, cfg: CompressConfig) -> list[Any]:
    """The budgets of the iterative bit lowering, the last one being the target (CompressConfig)."""
    if cfg.schedule:
        return list(cfg.schedule)
    if not isinstance(cfg.bits, str) or cfg.bit_steps <= 1 or cfg.bits.strip().lower().startswith("uniform:"):
        return [cfg.bits]
    text = cfg.bits.strip().lower()
    steps = cfg.bit_steps
    hi = cfg.bit_bounds[1]
    if text.startswith("avg:"):
        target = float(text[4:])
        return [f"avg:{hi + (target - hi) * k / steps:.4g}" for k in range(1, steps + 1)]
    if text.startswith("mem:"):
        target = float(text[4:])
        start = weight_memory_bits(spec, uniform_plan(spec, hi, hi, cfg.input_bits))
        return [f"mem:{start + (target - start) * k / steps:.6g}" for k in range(1, steps + 1)]
    return [cfg.bits] * steps  # hardware budgets: the target each step, relevance recomputed


def _bit_step(spec: Spec, plan: Plan, state: dict, splits: DatasetSplits, cfg: CompressConfig,
              rel: Relevance | None, table: Any) -> tuple[dict, Relevance | None, Any]:
    """One iterative bit step: QAT fine-tune at ``plan``, then relevance (same method) of the
    *quantized* model at that plan, and its sensitivity table, for the next allocation."""
    from codesign.models import quant_from_float

    torch.manual_seed(cfg.seed)
    qm = quant_from_float(spec, plan, state)
    tc = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.qat.lr, batch_size=cfg.qat.batch_size, patience=None,
                     seed=cfg.seed, max_batches_per_epoch=cfg.qat.max_batches_per_epoch, progress=cfg.qat.progress)
    fit(qm, splits, tc)
    qm.eval()
    new_state = {k: v.detach().clone() for k, v in qm.state_dict().items()}
    x, y = sample_batch(splits, cfg.relevance_samples, "train")
    if cfg.allocator == "hessian":
        return new_state, rel, _table_for(spec, new_state, cfg, rel, x, y, True)
    if rel is None:
        return new_state, rel, table
    rq = compute_relevance(qm, spec, x, y, method=rel.method, baseline=rel.baseline or "zero", seed=cfg.seed,
                           progress=False)
    log.info("iterative bits: %s fine-tuned; %s relevance recomputed on the quantized model", plan_text(plan),
             rel.method)
    return new_state, rq, _table_for(spec, new_state, cfg, rq, x, y, True, model=qm)


def plan_text(plan: Plan) -> str:
    return ", ".join(f"{n} w{e['weight_bits']}" + (f"a{e['act_bits']}" if "act_bits" in e else "")
                     for n, e in plan["layers"].items())


def compress(float_ckpt: str | Path, rel: Relevance | None, out: str | Path, cfg: CompressConfig,
             splits: DatasetSplits | None = None) -> dict[str, Any]:
    """Compress a float checkpoint into ``out`` (see the module doc); returns the summary dict.

    ``rel`` may be None only for ``uniform:`` bits without pruning or clustering.
    """
    from codesign.flow import dataset_for, export_checkpoint, load_quant_model, run_qat

    t0 = time.time()
    out = Path(out)
    ck = load_checkpoint(float_ckpt)
    spec0: Spec | None = ck["spec"]
    if spec0 is None or ck["plan"] is not None:
        raise CodesignError(f"{float_ckpt} is not a float checkpoint written by `codesign train`")
    needs_rel = (cfg.prune_filters or cfg.prune_weights or cfg.cluster
                 or (isinstance(cfg.bits, str) and not cfg.bits.startswith("uniform:")
                     and cfg.allocator == "relevance" and cfg.sensitivity is None))
    if rel is None and needs_rel:
        raise CodesignError("this compression needs relevance scores: pass --relevance relevance.json")
    if rel is not None:
        rel.check_matches(spec0)
    splits = splits or dataset_for(ck["meta"])
    spec, state = spec0, {k: v.clone() for k, v in ck["state_dict"].items()}
    summary: dict[str, Any] = {"model": spec0["name"], "relevance_method": rel.method if rel else None,
                               "float_test_acc": ck["meta"].get("test_acc")}

    # 1. structured pruning (optionally iterative)
    if cfg.prune_filters:
        step_r = _step_ratio(cfg.prune_filters, cfg.prune_steps)
        keep_total: dict[str, list[int]] = {}
        graph = needs_depgraph(spec0)  # residual / depthwise: channels tied across layers (DepGraph)
        for step in range(cfg.prune_steps):
            if graph:
                res = prune_structured_graph(spec, state, rel, step_r, scope=cfg.prune_scope)
                rel = slice_relevance_graph(rel, res)
            else:
                res = prune_structured(spec, state, rel, step_r, scope=cfg.prune_scope)
                rel = slice_relevance(rel, res)
            for n, k in res.keep.items():
                keep_total[n] = [keep_total[n][i] for i in k] if n in keep_total else k
            spec, state = res.spec, res.state_dict
            if step < cfg.prune_steps - 1:
                state = _float_finetune(spec, state, splits, cfg)
                model = build_float(spec)
                model.load_state_dict(state)
                x, y = sample_batch(splits, cfg.relevance_samples, "train")
                rel = compute_relevance(model, spec, x, y, method=rel.method, baseline=rel.baseline or "zero",
                                        seed=cfg.seed, progress=False)
        old = {n: s["fan_out"] for n, s in layer_shapes(spec0).items()}
        summary["prune_filters"] = {"ratio": cfg.prune_filters, "scope": cfg.prune_scope, "steps": cfg.prune_steps,
                                    "widths": {n: [old[n], len(k)] for n, k in keep_total.items()},
                                    "keep": keep_total}

    # 2. bits (optionally iterative, on the quantized model)
    table = None
    if _needs_table(cfg):
        x, y = sample_batch(splits, cfg.relevance_samples, "train")
        table = _table_for(spec, state, cfg, rel, x, y, spec_changed=bool(cfg.prune_filters))
    budgets = _bit_schedule(spec, cfg)
    for k, budget_text in enumerate(budgets[:-1]):
        plan_k = make_plan(spec, replace(cfg, bits=budget_text, iterative=None), rel, None, table)
        state, rel, table = _bit_step(spec, plan_k, state, splits, cfg, rel, table)
        summary.setdefault("bit_schedule", []).append({"budget": budget_text, "plan": plan_k,
                                                       "relevance_delta": rel.convergence.get("relative") if rel else None})
    hess = None
    if table is None and cfg.allocator == "hessian" and isinstance(cfg.bits, str) and not cfg.bits.startswith("uniform:"):
        x, y = sample_batch(splits, cfg.relevance_samples, "train")
        hess = hessian_sensitivity(spec, _float_state(spec, state), x, y, iters=cfg.hessian_iters, seed=cfg.seed)
    plan = make_plan(spec, replace(cfg, bits=budgets[-1], iterative=None) if budgets else cfg, rel, hess, table)
    if table is not None:
        table.save(out / "sensitivity.json")
        summary["sensitivity"] = {"method": table.method, "damage": table.damage(
            {n: e["weight_bits"] for n, e in plan["layers"].items()},
            {n: e["act_bits"] for n, e in plan["layers"].items() if "act_bits" in e})}

    # 3. unstructured masks, 4. clusters
    fm = build_float(spec)
    fm.load_state_dict(_float_state(spec, state))
    mask_hook = cluster_hook = None
    if cfg.prune_weights:
        masks = weight_masks(fm, spec, rel, cfg.prune_weights, scope=cfg.prune_scope,
                             per_unit=cfg.prune_weights_per_unit)
        mask_hook = MaskHook(masks)
        state = mask_hook.apply_state(state)
        fm.load_state_dict(_float_state(spec, state))
        summary["prune_weights"] = {"ratio": cfg.prune_weights, "per_unit": cfg.prune_weights_per_unit,
                                    "sparsity": mask_hook.sparsity()}
    if cfg.cluster:
        clusters = {}
        for l in quant_layers(spec):
            n = l["name"]
            w = fm.layer(n).weight
            r = weight_relevance(rel, n, w) if (cfg.cluster_weighted and rel is not None) else None
            m = mask_hook.masks.get(n) if mask_hook else None
            clusters[n] = cluster_layer(w, cfg.cluster, relevance=r, mask=m, seed=cfg.seed)
        cluster_hook = ClusterHook(clusters)
        state = cluster_hook.apply_state(state)

    plan_out = dict(plan)
    if cfg.prune_filters:
        plan_out["prune"] = {"filters": summary["prune_filters"]["widths"], "scope": cfg.prune_scope}
    if cfg.prune_weights:
        plan_out["prune"] = {**plan_out.get("prune", {}), "weight_sparsity": summary["prune_weights"]["sparsity"]}
    if cfg.cluster:
        plan_out["cluster"] = {"k": cfg.cluster, "weighted": cfg.cluster_weighted,
                               "effective_bits": math.log2(cfg.cluster) if cfg.cluster > 1 else 0.0}

    qcfg = cfg.qat
    hooks = chain_hooks(mask_hook, cluster_hook)
    if not cfg.quantize:
        return _finish_float(spec, state, hooks, splits, cfg, out, summary, spec0, fm, t0)

    # 5. QAT with the hooks
    qat = run_qat(Path(float_ckpt), plan_out, out, qcfg, name="qat", splits=splits, spec=spec, state_dict=state,
                  after_step=hooks,
                  extra_meta={"compressed": True, "relevance_method": rel.method if rel else None})
    summary.update(qat_test_acc=qat["test_acc"], qat_val_acc=qat["val_acc"], test_acc=qat["test_acc"])

    # 6. snap shared weights to the integer grid, re-evaluate, re-save
    if cluster_hook is not None:
        model, qck = load_quant_model(out / "qat.pt")
        if mask_hook is not None:
            mask_hook(model)
        report = snap_to_grid(model, cluster_hook.clusters)
        _, _, test_loader = make_loaders(splits, qcfg.batch_size, qcfg.seed)
        acc, _ = evaluate(model, test_loader)
        meta = dict(qck["meta"], test_acc=acc, test_acc_before_snap=qat["test_acc"])
        save_checkpoint(out / "qat.pt", model, spec, plan_out, meta)
        summary.update(test_acc=acc, cluster=report)
        plan_out["cluster"]["layers"] = report
    save_plan(out / "plan.json", plan_out)

    summary.update(
        plan=plan, spec=spec, weights=count_weights(fm),
        nonzero_weights=int(sum(int((fm.layer(l["name"]).weight != 0).sum()) for l in quant_layers(spec))),
        weights_before=sum(s["weights"] for s in layer_shapes(spec0).values()),
        avg_weight_bits=average_weight_bits(spec, plan), weight_memory_bits=weight_memory_bits(spec, plan),
        qat_epochs=qcfg.epochs)
    # 7. export
    if cfg.export:
        onnx_path = export_checkpoint(out / "qat.pt", out / "model.onnx", check_samples=cfg.check_samples,
                                      splits=splits)
        levels = onnx_weight_levels(str(onnx_path))
        names = [l["name"] for l in quant_layers(spec)]
        summary["onnx"] = {"path": str(onnx_path),
                           "weight_levels": {n: lv for n, lv in zip(names, levels)}}
    summary["seconds"] = time.time() - t0
    write_json(out / "compress.json", summary)
    log.info("compressed %s: test accuracy %.4f (float %s), %d weights, avg %.2f weight bits",
             spec0["name"], summary["test_acc"] or float("nan"), summary["float_test_acc"],
             summary["weights"], summary["avg_weight_bits"])
    return summary


def _finish_float(spec: Spec, state: dict, hooks, splits: DatasetSplits, cfg: CompressConfig, out: Path,
                  summary: dict, spec0: Spec, fm, t0: float) -> dict[str, Any]:
    """Float fine-tuning with the compression hooks (``quantize=False``)."""
    model = build_float(spec)
    model.load_state_dict(state)
    res = fit(model, splits, cfg.qat, after_step=hooks)
    summary.update(test_acc=res.test_acc, val_acc=res.best_val_acc, spec=spec, quantized=False,
                   weights=count_weights(model),
                   nonzero_weights=int(sum(int((model.layer(l["name"]).weight != 0).sum()) for l in quant_layers(spec))),
                   weights_before=sum(s["weights"] for s in layer_shapes(spec0).values()),
                   avg_weight_bits=32.0, finetune_epochs=cfg.qat.epochs, seconds=time.time() - t0)
    save_checkpoint(out / "compressed_float.pt", model, spec, None, {"stage": "compressed_float",
                                                                     "test_acc": res.test_acc})
    write_json(out / "compress.json", summary)
    return summary


def config_dict(cfg: CompressConfig) -> dict:
    d = asdict(cfg)
    d.pop("cost", None)
    d.pop("sensitivity", None)
    return d
