"""Foundation benchmark (issue 2): QAT vs float training speed, and TFC/SFC accuracy on
Fashion-MNIST at float, w4a4 and w2a2 after a fixed epoch budget.

Speed is reported as a ratio measured in the same run (machines here are noisy).
Writes benchmarks/results/foundation.json and prints a markdown table.

    .venv/bin/python benchmarks/bench_foundation.py [--float-epochs 5] [--qat-epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from codesign.atomic import write_json
from codesign.data import load_dataset, make_loaders
from codesign.models import build_float, make_spec, quant_from_float, uniform_plan
from codesign.train import TrainConfig, fit

RESULTS = Path(__file__).resolve().parent / "results"


def images_per_second(model: torch.nn.Module, loader, batches: int) -> float:
    """Training throughput (forward + backward + step) over `batches` batches."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    n, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 1:  # first batch warms up (allocations, Brevitas init)
            t0, n = time.perf_counter(), 0
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        n += len(x)
        if i >= batches:
            break
    return n / (time.perf_counter() - t0)


def digits_qat_seconds() -> dict:
    """The foundation's "QAT on digits >= 90% in under a minute": the same recipe as
    tests/test_models.py::test_qat_on_digits_reaches_90_percent, timed here, not in the test."""
    t0 = time.time()
    splits = load_dataset("digits", seed=0)
    spec = make_spec("tfc", splits.input_shape, splits.num_classes)
    fmodel = build_float(spec)
    fit(fmodel, splits, TrainConfig(epochs=15, lr=3e-3, batch_size=64, progress=False, seed=0))
    qmodel = quant_from_float(spec, uniform_plan(spec, 4, 4), fmodel.state_dict())
    res = fit(qmodel, splits, TrainConfig(epochs=8, lr=1e-3, batch_size=64, progress=False, seed=0))
    return {"test_acc": res.test_acc, "seconds": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float-epochs", type=int, default=5)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--models", default="tfc,sfc")
    ap.add_argument("--quick", action="store_true", help="10k training images, 2+1 epochs")
    ap.add_argument("--out", type=Path, default=RESULTS / "foundation.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    limit = 10000 if args.quick else None
    fe, qe = (2, 1) if args.quick else (args.float_epochs, args.qat_epochs)
    digits = digits_qat_seconds()
    print(f"digits QAT w4a4: {json.dumps(digits)}", file=sys.stderr)
    splits = load_dataset("fashion-mnist", seed=0, limit_train=limit)
    results: dict = {"dataset": "fashion-mnist", "train_images": len(splits.train), "float_epochs": fe,
                     "qat_epochs": qe, "torch_threads": torch.get_num_threads(), "digits_qat_w4a4": digits,
                     "models": {}}
    for name in args.models.split(","):
        spec = make_spec(name, splits.input_shape, splits.num_classes)
        torch.manual_seed(0)
        fmodel = build_float(spec)
        t = time.time()
        fres = fit(fmodel, splits, TrainConfig(epochs=fe, lr=1e-3, seed=0, progress=False, patience=None))
        entry = {"float": {"test_acc": fres.test_acc, "seconds": time.time() - t}}
        loader = make_loaders(splits, batch_size=128, seed=0)[0]
        for bits in ((4, 4), (2, 2)):
            plan = uniform_plan(spec, *bits)
            qmodel = quant_from_float(spec, plan, fmodel.state_dict())
            t = time.time()
            qres = fit(qmodel, splits, TrainConfig(epochs=qe, lr=5e-4, seed=0, progress=False, patience=None))
            entry[f"w{bits[0]}a{bits[1]}"] = {"test_acc": qres.test_acc, "seconds": time.time() - t}
        # throughput, measured back to back on the same batches
        f_ips = images_per_second(build_float(spec), loader, 30)
        q_ips = images_per_second(quant_from_float(spec, uniform_plan(spec, 4, 4), fmodel.state_dict()), loader, 30)
        entry["train_images_per_s"] = {"float": f_ips, "qat_w4a4": q_ips, "qat_over_float": q_ips / f_ips}
        results["models"][name] = entry
        print(f"{name}: {json.dumps(entry)}", file=sys.stderr)
    write_json(args.out, results)
    print("| model | float | w4a4 | w2a2 | QAT/float train speed |")
    print("|---|---|---|---|---|")
    for name, e in results["models"].items():
        print(f"| {name.upper()} | {e['float']['test_acc']:.4f} | {e['w4a4']['test_acc']:.4f} | "
              f"{e['w2a2']['test_acc']:.4f} | {e['train_images_per_s']['qat_over_float']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
