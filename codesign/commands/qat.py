"""`codesign qat`: quantization-aware training with Brevitas for a per-layer bit plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from codesign.commands.common import add_train_args, train_config
from codesign.errors import CodesignError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qat", help="quantization-aware training for a bit plan",
                       description="Fine-tune a float checkpoint with Brevitas at a per-layer bit plan; "
                                   "writes RUN/qat.pt and RUN/plan.json.",
                       epilog="example: codesign qat runs/tfc/float.pt --bits w4a4 --epochs 3 --out runs/tfc")
    p.add_argument("checkpoint", type=Path, help="float checkpoint (RUN/float.pt)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", type=Path, help="plan.json with per-layer bits")
    g.add_argument("--bits", help="uniform bits, e.g. w4a4 (1 = bipolar)")
    p.add_argument("--input-bits", type=int, default=8, help="input activation bits with --bits (default 8)")
    add_train_args(p, epochs=5, lr=5e-4)
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.flow import check_spec, run_qat
    from codesign.models import load_plan, parse_bits, uniform_plan
    from codesign.train import load_checkpoint

    from codesign.commands.common import check_out_dir

    check_out_dir(args.out)
    ck = load_checkpoint(args.checkpoint)
    if ck["spec"] is None:
        raise CodesignError(f"{args.checkpoint} holds no model spec; train it with `codesign train`")
    check_spec(args.checkpoint, ck["spec"])
    if args.plan:
        plan = load_plan(args.plan, ck["spec"])
    else:
        w, a = parse_bits(args.bits)
        plan = uniform_plan(ck["spec"], w, a, args.input_bits)
    s = run_qat(args.checkpoint, plan, args.out, train_config(args))
    print(f"QAT: test accuracy {s['test_acc']:.4f} -> {args.out / 'qat.pt'}")
    return 0
