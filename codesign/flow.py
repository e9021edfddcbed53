"""The software half of the flow as plain functions: train float -> QAT -> export.

The CLI sub-commands, `codesign run` and the co-design search all call these, so each step
behaves the same whichever way it is started. Every function reads and writes files in a run
folder (checkpoints, plan.json, model.onnx) so any step can be re-run on its own.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from codesign.atomic import write_json
from codesign.data import DatasetSplits, load_dataset, sample_batch
from codesign.errors import CodesignError
from codesign.models import build_float, quant_from_float, save_plan, validate_plan
from codesign.train import TrainConfig, fit, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def dataset_for(meta: dict[str, Any], **overrides: Any) -> DatasetSplits:
    """Reload the dataset a checkpoint was trained on (name, folder, seed, limits in its meta)."""
    kw = {"data_dir": meta.get("data_dir"), "seed": meta.get("split_seed", 0),
          "limit_train": meta.get("limit_train"), "limit_test": meta.get("limit_test")}
    kw.update({k: v for k, v in overrides.items()})
    if "dataset" not in meta:
        raise CodesignError("checkpoint does not say which dataset it was trained on (meta.dataset)")
    return load_dataset(meta["dataset"], **kw)


def train_float(model_name: str, dataset: str, out: Path, cfg: TrainConfig, data_dir: str | None = None,
                limit_train: int | None = None, limit_test: int | None = None,
                splits: DatasetSplits | None = None) -> dict:
    """Train the float model of a zoo topology, or of the user's own module
    (`model_name` = 'package.module:function', traced into a spec: codesign/models/trace.py);
    writes out/float.pt and out/float.json. A user's module starts from its own weights; a
    Brevitas one also leaves its bit widths as out/user_plan.json (for `codesign qat --plan`)."""
    from codesign.models.trace import check_model_name, is_entry_point, resolve_model

    out = Path(out)
    check_model_name(model_name)  # a typo or a bad entry point before the dataset is loaded
    splits = splits or load_dataset(dataset, data_dir=data_dir, seed=cfg.seed,
                                    limit_train=limit_train, limit_test=limit_test)
    torch.manual_seed(cfg.seed)  # before the user's build(): its initial weights are seeded too
    traced = resolve_model(model_name, splits.input_shape, splits.num_classes)
    spec = traced.spec
    model = build_float(spec)
    meta = {"stage": "float", "model": model_name, "dataset": splits.name, "data_dir": data_dir,
            "split_seed": cfg.seed, "limit_train": limit_train, "limit_test": limit_test}
    if is_entry_point(model_name):
        keys = set(model.state_dict())
        model.load_state_dict({k: v for k, v in traced.state_dict.items() if k in keys})
        meta["layer_sources"] = dict(traced.layer_sources)
        if traced.plan is not None:
            save_plan(out / "user_plan.json", traced.plan)
            log.info("the bit widths of %s are in %s", model_name, out / "user_plan.json")
    log.info("training float %s on %s (%d train / %d val / %d test)", model_name, splits.name,
             len(splits.train), len(splits.val), len(splits.test))
    res = fit(model, splits, cfg, checkpoint_path=out / "float.pt.partial", meta=meta, spec=spec)
    meta.update({"val_acc": res.best_val_acc, "test_acc": res.test_acc, "epochs": res.epochs_run})
    save_checkpoint(out / "float.pt", model, spec, None, meta)
    (out / "float.pt.partial").unlink(missing_ok=True)
    summary = {"test_acc": res.test_acc, "val_acc": res.best_val_acc, "epochs": res.epochs_run,
               "history": res.history, "config": asdict(cfg)}
    write_json(out / "float.json", summary)
    log.info("float %s: test accuracy %.4f", model_name, res.test_acc or float("nan"))
    return summary


def check_spec(path: str | Path, spec: Any) -> None:
    """A checkpoint's model spec must build a model: a malformed one is one line naming the file."""
    try:
        build_float(spec)
    except CodesignError as exc:
        if str(path) in str(exc):
            raise
        try:
            named = type(exc)(f"{path}: {exc}")
        except TypeError:
            named = CodesignError(f"{path}: {exc}")
        raise named from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CodesignError(f"{path}: the model spec is malformed ({type(exc).__name__}: {exc}); "
                            "re-run the step that wrote it") from exc


def check_plan(path: str | Path, spec: Any, plan: dict) -> None:
    """`validate_plan`, with a malformed spec or plan (not a mapping, missing keys) as one line."""
    try:
        validate_plan(spec, plan)
    except CodesignError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodesignError(f"{path}: the model spec or bit plan is malformed ({type(exc).__name__}: {exc}); "
                            "re-run the step that wrote it") from exc


def model_from_checkpoint(path: str | Path, spec: Any, plan: dict | None, state_dict: dict, *,
                          from_float: bool = False):
    """Build the model a checkpoint describes and load its weights, turning a spec or weights
    that do not fit together (an edited or foreign checkpoint, a plan for another topology) into
    one clear error instead of a torch traceback. `from_float`: a Brevitas model for `plan`
    initialised from float weights (QAT)."""
    from codesign.models import build_quant

    check_spec(path, spec)
    if plan is not None:
        check_plan(path, spec, plan)
    try:
        if from_float:
            return quant_from_float(spec, plan, state_dict)
        model = build_quant(spec, plan) if plan else build_float(spec)
        model.load_state_dict(state_dict)
        return model
    except CodesignError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = "; ".join(lines[:2]) if lines else type(exc).__name__
        raise CodesignError(f"{path}: its weights do not match its model spec/plan ({why[:300]}); the checkpoint "
                            "was edited or belongs to another model: re-run the step that wrote it") from exc


def run_qat(float_ckpt: Path, plan: dict, out: Path, cfg: TrainConfig, name: str = "qat",
            splits: DatasetSplits | None = None, spec: dict | None = None,
            state_dict: dict | None = None, after_step=None, extra_meta: dict | None = None) -> dict:
    """Quantization-aware training from float weights; writes out/<name>.pt and plan.json.

    `spec`/`state_dict` override the checkpoint's (compression passes a pruned spec and its
    already-shrunk weights); `after_step` is the compression hook (masks, shared weights).
    """
    out = Path(out)
    ck = load_checkpoint(float_ckpt)
    spec = spec or ck["spec"]
    if spec is None:
        raise CodesignError(f"{float_ckpt} holds no model spec; it was not written by codesign train")
    check_spec(float_ckpt, spec)  # before loading any data
    check_plan(float_ckpt, spec, plan)
    splits = splits or dataset_for(ck["meta"])
    torch.manual_seed(cfg.seed)
    model = model_from_checkpoint(float_ckpt, spec, plan, state_dict if state_dict is not None else ck["state_dict"],
                                  from_float=True)
    meta = dict(ck["meta"])
    meta.update({"stage": name, "parent": str(float_ckpt), **(extra_meta or {})})
    res = fit(model, splits, cfg, checkpoint_path=out / f"{name}.pt.partial", meta=meta, spec=spec,
              plan=plan, after_step=after_step)
    meta.update({"val_acc": res.best_val_acc, "test_acc": res.test_acc, "epochs": res.epochs_run})
    save_checkpoint(out / f"{name}.pt", model, spec, plan, meta)
    (out / f"{name}.pt.partial").unlink(missing_ok=True)
    save_plan(out / "plan.json", plan)
    summary = {"test_acc": res.test_acc, "val_acc": res.best_val_acc, "epochs": res.epochs_run,
               "history": res.history, "plan": plan}
    write_json(out / f"{name}.json", summary)
    log.info("QAT %s: test accuracy %.4f", name, res.test_acc or float("nan"))
    return summary


def load_quant_model(ckpt_path: Path):
    """(model, checkpoint) for a QAT checkpoint, in eval mode."""
    ck = load_checkpoint(ckpt_path)
    if ck["plan"] is None or ck["spec"] is None:
        raise CodesignError(f"{ckpt_path} is not a quantized checkpoint (no bit plan); "
                            "run `codesign qat` first")
    model = model_from_checkpoint(ckpt_path, ck["spec"], ck["plan"], ck["state_dict"])
    return model.eval(), ck


def export_checkpoint(ckpt_path: Path, out: Path, check_samples: int = 64,
                      splits: DatasetSplits | None = None) -> Path:
    """Export a QAT checkpoint to QONNX and check it on real test images."""
    from codesign.export import export_qonnx

    model, ck = load_quant_model(ckpt_path)
    splits = splits or dataset_for(ck["meta"])
    x, _ = sample_batch(splits, max(1, check_samples), split="test")
    return export_qonnx(model, x[:1], out, check_batch=x if check_samples > 0 else None)
