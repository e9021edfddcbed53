"""`codesign run CONFIG.yaml`: the whole job end to end from one config file.

Steps whose output already exists in the run folder are skipped, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole flow from a config file",
                       description="Train (or reuse) the float model, quantization-aware train, export to QONNX "
                                   "and report, as configured in a YAML file (see examples/).",
                       epilog="example: codesign run examples/tfc_fashionmnist_pynqz2.yaml")
    p.add_argument("config", type=Path, help="run config (.yaml)")
    p.add_argument("--out", type=Path, default=None, help="override the config's run folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codesign.commands.info import print_table, qonnx_rows
    from codesign.config import load_config
    from codesign.data import load_dataset
    from codesign.flow import export_checkpoint, run_qat, train_float
    from codesign.models import parse_bits, uniform_plan
    from codesign.train import TrainConfig, load_checkpoint

    cfg = load_config(args.config)
    out = Path(args.out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed,
                          limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    t = cfg.train
    if (out / "float.pt").is_file():
        log.info("reusing %s", out / "float.pt")
    else:
        train_float(cfg.model, cfg.dataset, out,
                    TrainConfig(epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, patience=t.patience,
                                seed=cfg.seed, max_batches_per_epoch=t.max_batches, progress=progress),
                    data_dir=cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test, splits=splits)
    float_acc = load_checkpoint(out / "float.pt")["meta"].get("test_acc")
    q = cfg.qat
    spec = load_checkpoint(out / "float.pt")["spec"]
    w, a = parse_bits(q.bits)
    plan = uniform_plan(spec, w, a, q.input_bits)
    if not (out / "qat.pt").is_file():
        run_qat(out / "float.pt", plan, out,
                TrainConfig(epochs=q.epochs, lr=q.lr, batch_size=q.batch_size, patience=q.patience,
                            seed=cfg.seed, max_batches_per_epoch=q.max_batches, progress=progress),
                splits=splits)
    qat_acc = load_checkpoint(out / "qat.pt")["meta"].get("test_acc")
    onnx_path = export_checkpoint(out / "qat.pt", out / "model.onnx", splits=splits)
    rows, totals = qonnx_rows(onnx_path)
    print_table(f"{cfg.name}: {onnx_path}", rows, totals)
    print(f"float test accuracy {float_acc:.4f} | QAT {q.bits} test accuracy {qat_acc:.4f} | "
          f"{totals['macs']:,} MACs, {totals['weight_mem_bits']:,} weight bits")
    return 0
