"""`codesign train`: train a zoo topology in float precision (the start of every flow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from codesign.commands.common import add_data_args, add_train_args, train_config
from codesign.models import ZOO


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a float model of the zoo",
                       description="Train a float model (TFC/SFC/LFC/CNV/LeNet) and write RUN/float.pt.",
                       epilog="example: codesign train --model tfc --dataset fashion-mnist --epochs 5 --out runs/tfc")
    p.add_argument("--model", required=True, choices=ZOO)
    add_data_args(p)
    add_train_args(p)
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.commands.common import check_out_dir
    from codesign.flow import train_float

    check_out_dir(args.out)
    s = train_float(args.model, args.dataset, args.out, train_config(args), data_dir=args.data_dir,
                    limit_train=args.limit_train, limit_test=args.limit_test)
    print(f"float {args.model}: test accuracy {s['test_acc']:.4f} after {s['epochs']} epochs -> {args.out / 'float.pt'}")
    return 0
