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
    p.add_argument("--sensitivity", action="store_true",
                   help="also tabulate the relevance lost per (layer, bits) (sensitivity.json beside --out)")
    p.add_argument("--sensitivity-bits", default="1-8", help="bit widths of the table (default 1-8)")
    p.add_argument("--out", type=Path, required=True, help="relevance.json path")
    p.set_defaults(func=run)


def _bits(text: str) -> list[int]:
    from codesign.errors import CodesignError

    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise CodesignError(f"--sensitivity-bits '{text}' not understood: use 1-8 or 2,4,8") from exc


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
    if args.sensitivity:
        from codesign.compress.sensitivity import sensitivity_for_checkpoint, table_path_for

        table = sensitivity_for_checkpoint(args.checkpoint, rel, samples=args.samples, bits=_bits(args.sensitivity_bits))
        tpath = table_path_for(args.out)
        table.save(tpath)
        log.info("wrote %s (%s relevance lost per layer and bits)", tpath, table.method)
    if "max_abs" in rel.convergence:
        log.info("convergence delta: max |delta| %.3g", rel.convergence["max_abs"])
    return 0
