"""`codesign relevance`: relevance of every filter/neuron/layer of a checkpoint (relevance.json + plot)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from codesign.relevance import BASELINES, METHODS

    p = sub.add_parser("relevance", help="relevance scores (DeepLIFT, ...) per filter, neuron and layer",
                       description="Attribute the checkpoint's predictions on training images to its "
                                   "filters/neurons with captum (or a non-XAI criterion); writes "
                                   "relevance.json and a PNG plot beside it.",
                       epilog="example: codesign relevance runs/lenet/float.pt --method deeplift "
                              "--samples 512 --out runs/lenet/relevance.json")
    p.add_argument("checkpoint", type=Path, help="float or QAT checkpoint (RUN/float.pt)")
    p.add_argument("--method", default="deeplift", help=f"one of {', '.join(METHODS)} (default deeplift)")
    p.add_argument("--baseline", default="zero", choices=BASELINES, help="DeepLIFT/IG reference image")
    p.add_argument("--samples", type=int, default=512, help="training images to attribute (default 512)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --out)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, required=True, help="relevance.json path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.commands.export import check_output
    from codesign.relevance import plot_relevance, relevance_for_checkpoint

    check_output(args.checkpoint, args.out, ".json")
    if args.plot is not None:
        check_output(args.checkpoint, args.plot, ".png", "--plot")

    rel = relevance_for_checkpoint(args.checkpoint, method=args.method, samples=args.samples,
                                   baseline=args.baseline, batch_size=args.batch_size, seed=args.seed,
                                   progress=not args.no_progress)
    rel.save(args.out)
    plot = args.plot or args.out.with_suffix(".png")
    plot_relevance(rel, plot)
    scores = ", ".join(f"{n} {s:.3f}" for n, s in rel.layer_scores().items())
    log.info("wrote %s and %s; layer relevance: %s", args.out, plot, scores)
    if "max_abs" in rel.convergence:
        log.info("convergence delta: max |delta| %.3g", rel.convergence["max_abs"])
    return 0
