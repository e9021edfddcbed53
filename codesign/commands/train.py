"""`codesign train`: train a zoo topology, or your own model, in float precision (the start
of every flow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from codesign.commands.common import add_data_args, add_train_args, train_config
from codesign.models import ZOO


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a float model (zoo or your own)",
                       description="Train a float model (TFC/SFC/LFC/CNV/LeNet, or your own torch/Brevitas "
                                   "nn.Module traced into a spec) and write RUN/float.pt.",
                       epilog="examples: codesign train --model tfc --dataset fashion-mnist --epochs 5 --out runs/tfc; "
                              "PYTHONPATH=. codesign train --model mypkg.models:build --dataset digits --out runs/mine")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help=f"a zoo name ({', '.join(ZOO)}) or your own model as package.module:function "
                        "(called with no arguments, returning an nn.Module)")
    add_data_args(p)
    add_train_args(p)
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.commands.common import check_out_dir
    from codesign.flow import train_float

    from codesign.models.entry import check_model_name

    check_out_dir(args.out)
    check_model_name(args.model)
    s = train_float(args.model, args.dataset, args.out, train_config(args), data_dir=args.data_dir,
                    limit_train=args.limit_train, limit_test=args.limit_test)
    print(f"float {args.model}: test accuracy {s['test_acc']:.4f} after {s['epochs']} epochs -> {args.out / 'float.pt'}")
    return 0
