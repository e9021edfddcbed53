"""Argument groups shared by several sub-commands (training settings, dataset selection)."""

from __future__ import annotations

import argparse

from pathlib import Path

from codesign.errors import CodesignError
from codesign.train import TrainConfig


def check_out_dir(out: Path | str, flag: str = "--out") -> Path:
    """A run/build folder argument: refuse an existing file there (one line, not a mkdir
    traceback after minutes of work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CodesignError(f"{flag} {out} is an existing file: give a folder")
    return out


def add_train_args(p: argparse.ArgumentParser, epochs: int = 10, lr: float = 1e-3) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help=f"maximum epochs (default {epochs})")
    g.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr})")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--patience", type=int, default=5, help="early stop after N epochs without a better val accuracy")
    g.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-batches", type=int, default=None, help="cap training batches per epoch (quick runs)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                       schedule=args.schedule, seed=args.seed, max_batches_per_epoch=args.max_batches,
                       progress=not args.no_progress)


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | mnist | digits | cifar10")
    g.add_argument("--data-dir", default=None, help="folder with the dataset files (required for cifar10)")
    g.add_argument("--limit-train", type=int, default=None, help="use a seeded subset of N training images")
    g.add_argument("--limit-test", type=int, default=None, help="use a seeded subset of N test images")
