"""Foundation benchmark (issue 2): QAT vs float training speed, and TFC/SFC accuracy on
Fashion-MNIST at float, w4a4 and w2a2 after a fixed epoch budget.

Speed is reported as a ratio measured interleaved in the same run (machines here are noisy).
Writes benchmarks/results/foundation.json and prints a markdown table.

    .venv/bin/python benchmarks/bench_foundation.py [--float-epochs 5] [--qat-epochs 3] [--quick]
    .venv/bin/python benchmarks/bench_foundation.py --throughput-only
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


def train_throughput(models: dict[str, torch.nn.Module], loader, batches: int) -> dict[str, float]:
    """Training images/s (forward + backward + step) of several models, measured interleaved:
    each batch is trained by every model in turn, so background load hits all of them alike and
    their ratio is meaningful on a noisy machine. The first batch warms up and is not timed."""
    loss_fn = torch.nn.CrossEntropyLoss()
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    spent = dict.fromkeys(models, 0.0)
    n = 0
    for i, (x, y) in enumerate(loader):
        for k, m in models.items():
            m.train()
            t0 = time.perf_counter()
            opts[k].zero_grad()
            loss_fn(m(x), y).backward()
            opts[k].step()
            if i > 0:
                spent[k] += time.perf_counter() - t0
        if i > 0:
            n += len(x)
        if i >= batches:
            break
    return {k: n / spent[k] for k in models}


def throughput_entry(spec: dict, fmodel: torch.nn.Module, loader) -> dict:
    """QAT vs float training speed on one thread: with several threads, any other process on a
    2-core machine makes OpenMP's spinning threads collide and the numbers swing 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ips = train_throughput({"float": build_float(spec),
                                "qat_w4a4": quant_from_float(spec, uniform_plan(spec, 4, 4), fmodel.state_dict())},
                               loader, 60)
    finally:
        torch.set_num_threads(threads)
    return {**ips, "qat_over_float": ips["qat_w4a4"] / ips["float"], "threads": 1}


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
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the QAT/float training-speed ratio and the digits QAT time "
                         "(writes foundation_throughput.json)")
    args = ap.parse_args(argv)
    if args.throughput_only:
        return throughput_only(args)
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
        entry["train_images_per_s"] = throughput_entry(spec, fmodel, loader)
        results["models"][name] = entry
        print(f"{name}: {json.dumps(entry)}", file=sys.stderr)
    write_json(args.out, results)
    print("| model | float | w4a4 | w2a2 | QAT/float train speed |")
    print("|---|---|---|---|---|")
    for name, e in results["models"].items():
        print(f"| {name.upper()} | {e['float']['test_acc']:.4f} | {e['w4a4']['test_acc']:.4f} | "
              f"{e['w2a2']['test_acc']:.4f} | {e['train_images_per_s']['qat_over_float']:.2f}x |")
    return 0


def throughput_only(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    splits = load_dataset("fashion-mnist", seed=0, limit_train=10000)
    loader = make_loaders(splits, batch_size=128, seed=0)[0]
    out = {"digits_qat_w4a4": digits_qat_seconds(), "train_images_per_s": {}}
    for name in args.models.split(","):
        spec = make_spec(name, splits.input_shape, splits.num_classes)
        out["train_images_per_s"][name] = throughput_entry(spec, build_float(spec), loader)
    write_json(RESULTS / "foundation_throughput.json", out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
