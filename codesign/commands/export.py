"""`codesign export`: Brevitas checkpoint -> checked QONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a QAT checkpoint to QONNX",
                       description="Export a QAT checkpoint to a cleaned QONNX model and check it against "
                                   "torch on real test images (written to MODEL.check.json).",
                       epilog="example: codesign export runs/tfc/qat.pt --out runs/tfc/model.onnx")
    p.add_argument("checkpoint", type=Path, help="QAT checkpoint (RUN/qat.pt)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx path")
    p.add_argument("--check-samples", type=int, default=64, help="test images for the numeric check (0 = skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.flow import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out, args.check_samples)
    print(f"QONNX model -> {path}")
    return 0
