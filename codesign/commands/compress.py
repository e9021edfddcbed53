"""`codesign compress`: relevance-driven pruning, bit allocation and weight sharing, then QAT and export."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from codesign.commands.common import add_train_args, train_config
from codesign.errors import CodesignError

log = logging.getLogger(__name__)


def _ratio(text: str):
    """'0.5' or 'conv0=0.25,fc0=0.5' (per layer)."""
    try:
        if "=" in text:
            return {k.strip(): float(v) for k, v in (part.split("=", 1) for part in text.split(","))}
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"ratio '{text}' not understood: use 0.5 or conv0=0.25,fc0=0.5") from exc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="prune / allocate bits / share weights by relevance, then QAT + export",
                       description="Compress a float checkpoint: structured filter pruning, unstructured FC "
                                   "weight pruning, relevance-driven bit allocation and weight sharing, "
                                   "then QAT with the masks/shared weights kept, and QONNX export. Writes "
                                   "RUN/plan.json, RUN/qat.pt, RUN/model.onnx, RUN/compress.json.",
                       epilog="example: codesign compress runs/lenet/float.pt --relevance runs/lenet/relevance.json "
                              "--prune-filters 0.5 --bits avg:4 --cluster 8 --qat-epochs 3 --out runs/lenet-c")
    p.add_argument("checkpoint", type=Path, help="float checkpoint (RUN/float.pt)")
    p.add_argument("--relevance", type=Path, default=None, help="relevance.json of this checkpoint")
    p.add_argument("--prune-filters", type=_ratio, default=None, metavar="R",
                   help="remove this share of conv filters / FC neurons (0.5 or conv0=0.25,fc0=0.5)")
    p.add_argument("--prune-weights", type=_ratio, default=None, metavar="R",
                   help="zero this share of FC weights (masks kept through QAT)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer", help="ratio per layer or global")
    p.add_argument("--prune-weights-per-unit", action="store_true",
                   help="unstructured: every output unit loses the same fraction of its own weights, so no unit "
                        "(e.g. an output class) loses all of its inputs")
    p.add_argument("--prune-steps", type=int, default=1, help="iterative prune -> fine-tune steps (default 1)")
    p.add_argument("--finetune-epochs", type=int, default=1, help="float fine-tune epochs between steps")
    p.add_argument("--bits", default="uniform:w8a8",
                   help="uniform:w4a4 | avg:B | mem:BITS | ilp:LUT=8000,BRAM=100,fps=10000[,board=Pynq-Z2,act=follow] "
                        "(exact allocation under the hardware budget) | greedy:... (greedy walk, same budget)")
    p.add_argument("--allocator", choices=("relevance", "hessian", "uniform"), default="relevance",
                   help="sensitivity for budgets: the relevance table (of --relevance's criterion), the "
                        "HAWQ-V2 Hessian table, or uniform bits (default relevance)")
    p.add_argument("--sensitivity", type=Path, default=None,
                   help="sensitivity.json (default: the one beside --relevance if any, else measured)")
    p.add_argument("--iterative", type=int, default=None, metavar="STEPS",
                   help="iterative compression: STEPS prune steps and STEPS bit-lowering steps, each "
                        "fine-tuned and with relevance recomputed (on the quantized model for bits)")
    p.add_argument("--bit-schedule", default=None, metavar="B1;B2;...",
                   help="explicit bit budgets of the iterative lowering, e.g. 'avg:6;avg:5;avg:4'")
    p.add_argument("--act-bits", type=int, default=None, help="fixed activation bits (default: follow weights)")
    p.add_argument("--min-bits", type=int, default=2)
    p.add_argument("--max-bits", type=int, default=8)
    p.add_argument("--cluster", type=int, default=None, metavar="K", help="share K weight values per layer")
    p.add_argument("--plain-kmeans", action="store_true", help="cluster without relevance weighting")
    p.add_argument("--qat-epochs", type=int, default=3)
    p.add_argument("--no-export", action="store_true")
    add_train_args(p, epochs=3, lr=5e-4)
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.compress.pipeline import CompressConfig, compress
    from codesign.relevance import load_relevance

    if args.relevance is None and (args.prune_filters or args.prune_weights or args.cluster):
        raise CodesignError("pruning and clustering need --relevance relevance.json (see `codesign relevance`)")
    from codesign.compress.sensitivity import find_table, load_table

    rel = load_relevance(args.relevance) if args.relevance else None
    table = load_table(args.sensitivity) if args.sensitivity else find_table(args.relevance)
    args.epochs = args.qat_epochs
    tc = train_config(args)
    cfg = CompressConfig(prune_filters=args.prune_filters, prune_weights=args.prune_weights, prune_scope=args.scope,
                         prune_weights_per_unit=args.prune_weights_per_unit,
                         prune_steps=args.prune_steps, finetune_epochs=args.finetune_epochs, bits=args.bits,
                         allocator=args.allocator, act_bits=args.act_bits, bit_bounds=(args.min_bits, args.max_bits),
                         cluster=args.cluster, cluster_weighted=not args.plain_kmeans, qat=tc,
                         export=not args.no_export, seed=args.seed, sensitivity=table, iterative=args.iterative,
                         schedule=[b.strip() for b in args.bit_schedule.split(";") if b.strip()] if args.bit_schedule else None)
    from codesign.commands.common import check_out_dir

    check_out_dir(args.out)
    s = compress(args.checkpoint, rel, args.out, cfg)
    keys = ("test_acc", "float_test_acc", "weights_before", "weights", "avg_weight_bits", "weight_memory_bits")
    log.info("compress summary: %s", json.dumps({k: s.get(k) for k in keys}))
    return 0
