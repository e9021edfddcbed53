"""Training loops for float models and QAT (generic over ``nn.Module``) and checkpoint files.

Why it looks like this:

* One loop serves the float model and the Brevitas QAT model: both are ``nn.Module``s that map
  ``(N, C, H, W)`` images to logits, so nothing here knows about quantization.
* Model selection uses the *validation* split only; the test split is evaluated once, on the
  restored best weights, so the reported test accuracy is not tuned on.
* Compression hooks in through ``after_step(model)``, called after every optimizer step:
  pruning uses it to keep masked weights at zero, weight clustering to re-tie shared weights.
  Doing this after the step (rather than masking gradients) also undoes weight decay and
  momentum drift on the masked weights.
* Checkpoints hold only tensors and JSON-like values (docs/contracts.md), so they load with
  ``torch.load(..., weights_only=True)``: loading a checkpoint never executes code. They are
  written atomically so an interrupted run never leaves a half-written ``.pt`` behind, and
  ``fit`` can resume from the ``"train_state"`` an interrupted run left.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from codesign.atomic import atomic_write
from codesign.data import DatasetSplits, make_loaders
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")


@dataclass
class TrainConfig:
    """Settings of one training run (float or QAT).

    ``patience``: stop after this many epochs without a new best validation accuracy
    (``None`` disables early stopping). ``max_batches_per_epoch`` caps the training batches of
    each epoch, for smoke runs and searches; evaluation always sees the full splits.
    ``schedule``: ``cosine`` anneals to 0 over ``epochs``; ``step`` multiplies the rate by 0.1
    every ``max(1, epochs // 3)`` epochs; ``none`` keeps it constant.
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    optimizer: str = "adam"
    schedule: str = "cosine"
    patience: int | None = 5
    seed: int = 0
    max_batches_per_epoch: int | None = None
    progress: bool = True
    device: str = "cpu"  # "cuda", "cuda:1", ...: where fit() trains; the model comes back on the CPU

    def __post_init__(self) -> None:
        self.device = check_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise CodesignError(f"unknown optimizer {self.optimizer!r}; choose one of "
                                f"{', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise CodesignError(f"unknown schedule {self.schedule!r}; choose one of "
                                f"{', '.join(SCHEDULES)}.")
        if self.epochs < 1:
            raise CodesignError(f"epochs must be >= 1, got {self.epochs}.")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise CodesignError(f"lr must be a finite number >= 0, got {self.lr}.")
        if self.batch_size < 1:
            raise CodesignError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.patience is not None and self.patience < 1:
            raise CodesignError(f"patience must be >= 1 or None (no early stop), got {self.patience}.")
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            raise CodesignError("max_batches_per_epoch must be >= 1 or None, got "
                                f"{self.max_batches_per_epoch}.")


@dataclass
class TrainResult:
    """Outcome of :func:`fit`. ``history`` has one dict per epoch run (this call and any
    resumed earlier ones): ``epoch, loss, train_acc, val_acc, val_loss, lr, seconds``."""

    best_val_acc: float
    test_acc: float | None
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False


def check_device(device: str | None) -> str:
    """A torch device string that exists here, or one clear error naming the fix."""
    name = str(device or "cpu").strip().lower()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise CodesignError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CodesignError(f"device {device!r} asked for, but this torch has no usable CUDA GPU "
                                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                                "install a CUDA build of torch on this worker or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CodesignError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type != "cpu":
        raise CodesignError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return name


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch, so a run with the same seed gives the same model."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _logits(out: Any) -> torch.Tensor:
    """Model output -> plain tensor (Brevitas may return a QuantTensor with ``.value``)."""
    if isinstance(out, torch.Tensor):
        return out
    value = getattr(out, "value", None)
    if isinstance(value, torch.Tensor):
        return value
    raise CodesignError(f"the model returned {type(out).__name__}, expected a tensor of logits; "
                        "set return_quant_tensor=False on the last layer.")


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable) -> tuple[float, float]:
    """(accuracy in [0, 1], mean cross-entropy loss) over a loader, in eval mode.

    The model's train/eval mode is restored afterwards, so this can be called mid-training.
    An empty loader gives ``(nan, nan)`` rather than a misleading 0.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = _logits(model(x))
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(dim=1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was_training)
    if total == 0:
        return float("nan"), float("nan")
    return correct / total, loss_sum / total


# ------------------------------------------------------------------------------ checkpoints

_JSON_SCALARS = (str, int, float, bool, type(None))


def _check_storable(obj: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, _JSON_SCALARS) or isinstance(obj, torch.Tensor):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CodesignError(f"checkpoint {where}: key {k!r} is a {type(k).__name__}; "
                                    "use str keys (contracts: JSON-like values only).")
            _check_storable(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_storable(v, f"{where}[{i}]")
        return
    raise CodesignError(f"checkpoint {where} is a {type(obj).__name__}, which "
                        "torch.load(weights_only=True) cannot read back; convert it to a "
                        "str/int/float/list/dict or a tensor.")


def _cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.detach().to("cpu").clone() if isinstance(v, torch.Tensor) else v)
            for k, v in state.items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    spec: dict | None,
    plan: dict | None,
    meta: dict | None,
    train_state: dict | None = None,
) -> Path:
    """Write ``{"state_dict", "spec", "plan", "meta"[, "train_state"]}`` atomically.

    ``model`` may be a module or a state dict. Everything must be tensors or JSON-like values
    (checked before writing, with the offending key named) so the file loads with
    ``weights_only=True``. ``train_state`` is what :func:`fit` needs to resume.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    payload: dict[str, Any] = {
        "state_dict": _cpu_state(state),
        "spec": spec,
        "plan": plan,
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    for key in ("spec", "plan", "meta", "train_state"):
        if key in payload:
            _check_storable(payload[key], key)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``: no code runs while loading).

    Returns the dict with ``state_dict``, ``spec``, ``plan``, ``meta`` (and ``train_state``
    when present). Missing, corrupt or foreign files raise a CodesignError saying what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CodesignError(f"checkpoint {path} not found; train the model first "
                            "(`codesign train`) or check the run folder path.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CodesignError(
            f"checkpoint {path} cannot be read safely ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it is corrupt, truncated or not "
            "a codesign checkpoint (pickled objects are refused on purpose). Delete it and "
            "re-run the step that writes it."
        ) from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CodesignError(f"{path} is a torch file but not a codesign checkpoint (expected a "
                            "dict with 'state_dict', 'spec', 'plan', 'meta'); re-run the step "
                            "that writes it.")
    ckpt.setdefault("spec", None)
    ckpt.setdefault("plan", None)
    if ckpt.get("meta") is None:
        ckpt["meta"] = {}
    return ckpt


# -------------------------------------------------------------------------------- training

def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CodesignError("the model has no trainable parameters; nothing to train.")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                           nesterov=True)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.epochs // 3), gamma=0.1)
    return None


def _resolve_loaders(data: Any, cfg: TrainConfig) -> tuple[Any, Any, Any]:
    if isinstance(data, DatasetSplits):
        return make_loaders(data, batch_size=cfg.batch_size, seed=cfg.seed)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        train, val = data[0], data[1]
        test = data[2] if len(data) == 3 else None
        return train, val, test
    raise CodesignError("fit() needs a DatasetSplits or a (train_loader, val_loader[, "
                        f"test_loader]) tuple, got {type(data).__name__}.")


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


#: settings a resumed run must share with the run it continues: the optimizer state, the
#: shuffling sequence and the schedule in the checkpoint were built from them
RESUME_KEYS = ("lr", "batch_size", "weight_decay", "optimizer", "schedule", "seed")


def _check_resume_settings(path: Path, saved: dict | None, cfg: TrainConfig) -> None:
    """Refuse to resume (or reuse a finished checkpoint) with other training settings than it
    was started with: the old optimizer state and schedule would silently win."""
    if not isinstance(saved, dict):
        return
    now = asdict(cfg)
    diff = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in RESUME_KEYS if k in saved and saved[k] != now[k]]
    if diff:
        raise CodesignError(f"{path} was trained with other settings ({', '.join(diff)}); resuming would keep the "
                            "old ones. Re-run with the old settings, or delete the checkpoint to train anew")


def fit(
    model: nn.Module,
    splits_or_loaders: DatasetSplits | tuple,
    cfg: TrainConfig | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    meta: dict | None = None,
    on_epoch: Callable[[dict[str, float]], bool | None] | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    spec: dict | None = None,
    plan: dict | None = None,
) -> TrainResult:
    """Train ``model`` (logits out) with cross-entropy; keep and restore the best-val weights.

    ``splits_or_loaders``: a :class:`DatasetSplits` (loaders are built with ``cfg.batch_size``
    and ``cfg.seed``) or a ``(train, val[, test])`` tuple of loaders. An empty validation set
    falls back to training accuracy for model selection (with a warning).

    ``after_step(model)`` runs after every optimizer step, under ``torch.no_grad()``: the hook
    for compression to re-apply pruning masks or re-tie clustered weights in place.

    ``on_epoch(record)`` runs after each epoch with that epoch's history record; returning
    ``True`` stops training (e.g. a search pruning a hopeless trial).

    ``checkpoint_path``: after every epoch the best weights are saved there (with ``spec``,
    ``plan``, ``meta`` and a ``"train_state"`` holding the current weights, optimizer,
    scheduler and history), so an interrupted run resumes from the last finished epoch when
    ``fit`` is called again with the same path. A checkpoint of a finished run is not
    re-trained: its best weights are loaded and evaluated (delete the file to retrain).
    At the end the file holds the best weights, ``meta`` extended with the results, and a
    slim ``train_state`` marked done.
    """
    cfg = cfg or TrainConfig()
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and cfg.batch_size < 2:
        raise CodesignError(f"batch size {cfg.batch_size}: BatchNorm needs at least 2 samples per training batch; "
                            "use --batch-size 2 or more")
    set_seed(cfg.seed)
    train_loader, val_loader, test_loader = _resolve_loaders(splits_or_loaders, cfg)
    if cfg.device != "cpu":
        model.to(cfg.device)
    device = _device_of(model)
    optimizer = _make_optimizer(model, cfg)
    scheduler = _make_scheduler(optimizer, cfg)
    criterion = nn.CrossEntropyLoss()
    meta = dict(meta or {})
    use_val = _loader_len(val_loader) != 0
    if not use_val:
        log.warning("validation set is empty: selecting the model by training accuracy; "
                    "use val_fraction > 0 for honest model selection")

    history: list[dict[str, float]] = []
    best_acc, best_state = -1.0, _cpu_state(model.state_dict())
    start_epoch, stale, stopped_early, done = 0, 0, False, False
    resume_loader_rng: torch.Tensor | None = None

    ckpt_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        ts = ckpt.get("train_state")
        if ts is None:
            raise CodesignError(f"{ckpt_path} exists but holds no training state to resume from; "
                                "delete it or choose another checkpoint path to train anew.")
        try:
            best_state = _cpu_state(ckpt["state_dict"])
            model.load_state_dict(ts.get("model_state", best_state))
            if "optimizer" in ts:
                optimizer.load_state_dict(ts["optimizer"])
            if scheduler is not None and ts.get("scheduler"):
                scheduler.load_state_dict(ts["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CodesignError(f"cannot resume from {ckpt_path}: it belongs to a different "
                                f"model or optimizer ({str(exc).splitlines()[0]}); delete it "
                                "or choose another checkpoint path.") from exc
        _check_resume_settings(ckpt_path, ts.get("config"), cfg)
        history = list(ts.get("history", []))
        start_epoch = int(ts.get("epoch", 0))
        best_acc = float(ts.get("best_acc", -1.0))
        stale = int(ts.get("stale", 0))
        stopped_early = bool(ts.get("stopped_early", False))
        done = bool(ts.get("done", False))
        if isinstance(ts.get("torch_rng"), torch.Tensor):
            torch.set_rng_state(ts["torch_rng"])
        if isinstance(ts.get("loader_rng"), torch.Tensor):
            resume_loader_rng = ts["loader_rng"]
        log.info("resuming from %s at epoch %d (best %.4f)%s", ckpt_path, start_epoch,
                 best_acc, ", run already finished" if done else "")

    gen = getattr(train_loader, "generator", None)

    def save(epoch: int, finished: bool) -> None:
        if ckpt_path is None:
            return
        ts: dict[str, Any] = {
            "epoch": epoch, "best_acc": best_acc, "stale": stale, "history": history,
            "stopped_early": stopped_early, "done": finished, "config": asdict(cfg),
        }
        if not finished:   # what resuming needs; dropped at the end to keep the file slim
            ts["model_state"] = _cpu_state(model.state_dict())
            ts["optimizer"] = optimizer.state_dict()
            ts["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            ts["torch_rng"] = torch.get_rng_state()
            if isinstance(gen, torch.Generator):
                ts["loader_rng"] = gen.get_state()
        save_checkpoint(ckpt_path, best_state, spec, plan, meta, train_state=ts)

    if isinstance(gen, torch.Generator) and resume_loader_rng is not None and not done:
        # Continue the shuffling sequence of the interrupted run, not restart it.
        gen.set_state(resume_loader_rng)

    epoch = start_epoch
    n_batches = _loader_len(train_loader)
    if n_batches is not None and cfg.max_batches_per_epoch is not None:
        n_batches = min(n_batches, cfg.max_batches_per_epoch)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None  # type: ignore[assignment]

    while not done and epoch < cfg.epochs:
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        batches: Iterable = train_loader
        bar = None
        if tqdm is not None and cfg.progress:
            bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       unit="batch", dynamic_ncols=True)
        for i, (x, y) in enumerate(batches):
            if cfg.max_batches_per_epoch is not None and i >= cfg.max_batches_per_epoch:
                break
            if has_bn and int(y.numel()) < 2:
                # a last batch of one sample: BatchNorm cannot normalise it in training mode
                # (torch raises); drop it, as drop_last would, and say so once
                if seen == 0:
                    raise CodesignError("the training set yields batches of one sample; BatchNorm needs "
                                        "at least 2: use a larger --batch-size or more training data")
                log.debug("epoch %d: dropping a last training batch of 1 sample (BatchNorm)", epoch + 1)
                continue
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            out = _logits(model(x))
            loss = criterion(out, y)
            if not torch.isfinite(loss):
                if bar is not None:
                    bar.close()
                raise CodesignError(f"training diverged: the loss is {float(loss)} at epoch "
                                    f"{epoch + 1}, batch {i}; lower the learning rate "
                                    f"(now {lr:g}) or check the input data.")
            loss.backward()
            optimizer.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step(model)
            n = int(y.numel())
            loss_sum += float(loss.detach()) * n
            correct += int((out.detach().argmax(dim=1) == y).sum())
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
        if bar is not None:
            bar.close()
        if seen == 0:
            raise CodesignError("the training loader yielded no batches; check the dataset "
                                "limits and batch size.")
        if scheduler is not None:
            scheduler.step()
        train_acc = correct / seen
        if use_val:
            val_acc, val_loss = evaluate(model, val_loader)
        else:
            val_acc, val_loss = train_acc, loss_sum / seen
        epoch += 1
        record = {"epoch": epoch, "loss": loss_sum / seen, "train_acc": train_acc,
                  "val_acc": val_acc, "val_loss": val_loss, "lr": lr,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        if val_acc > best_acc:
            best_acc, best_state, stale = val_acc, _cpu_state(model.state_dict()), 0
        else:
            stale += 1
        log.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (best %.4f), lr %.2e, "
                 "%.1fs", epoch, cfg.epochs, record["loss"], train_acc, val_acc, best_acc, lr,
                 record["seconds"])
        if cfg.patience is not None and stale >= cfg.patience:
            stopped_early = True
            log.info("early stop: no better validation accuracy for %d epochs", stale)
        save(epoch, finished=False)
        if on_epoch is not None and on_epoch(dict(record)):
            log.info("stopped by the on_epoch callback after epoch %d", epoch)
            stopped_early = True
        if stopped_early:
            break

    model.load_state_dict(best_state)
    test_acc = None
    if test_loader is not None and _loader_len(test_loader) != 0:
        test_acc, _ = evaluate(model, test_loader)
    if cfg.device != "cpu":
        model.to("cpu")  # export, checkpoints and the compiler expect CPU tensors
    meta.update({"best_val_acc": best_acc, "test_acc": test_acc, "epochs_run": epoch,
                 "stopped_early": stopped_early, "train_config": asdict(cfg)})
    save(epoch, finished=True)
    log.info("training done: best val acc %.4f, test acc %s, %d epochs", best_acc,
             "n/a" if test_acc is None else f"{test_acc:.4f}", epoch)
    return TrainResult(best_val_acc=best_acc, test_acc=test_acc, epochs_run=epoch,
                       history=history, best_state_dict=best_state, stopped_early=stopped_early)
