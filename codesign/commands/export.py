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


def check_output(inp: Path, out: Path, suffix: str, flag: str = "--out") -> None:
    """Refuse an output that would overwrite the input or has the wrong extension (a
    checkpoint silently replaced by ONNX bytes cannot be recovered)."""
    from codesign.errors import CodesignError

    if out.resolve() == inp.resolve():
        raise CodesignError(f"{flag} {out} is the input {inp}: it would be overwritten; choose another name")
    if out.suffix.lower() != suffix:
        raise CodesignError(f"{flag} {out}: expected a {suffix} file name")
    if out.exists() and out.is_dir():
        raise CodesignError(f"{flag} {out} is a folder: give a {suffix} file name")


def run(args: argparse.Namespace) -> int:
    from codesign.flow import export_checkpoint

    check_output(args.checkpoint, args.out, ".onnx")

    path = export_checkpoint(args.checkpoint, args.out, args.check_samples)
    print(f"QONNX model -> {path}")
    return 0
