#!/usr/bin/env python
"""What the full paper study costs per model on this machine: the plan for CNV and ResNet-8.

`scripts/paper_experiments.py --full-data` ran SFC and LeNet to completion on the 2-core CPU
machine. The issue also asks for CNV and ResNet-8. Whether that fits a session is a measured
question, not a guess. So this benchmark times one training step of every model, float and
Brevitas QAT at w4a4, on batches of real Fashion-MNIST images, side by side in one run. It then
projects each model's study from the LeNet cells that actually ran:

    hours(model) = hours(LeNet cells, measured) x step time(model) / step time(LeNet)

This is done per kind of cell: float fine-tuning cells scale with the float step, the bits
study with the QAT step. The projection is a ratio, so the noise of a loaded machine mostly
cancels. The cost of the fine-tune-0 cells (evaluation only) is small and is scaled the same
way. The ``--device`` flag times a GPU where one exists: the study runs there with
`paper_experiments.py --device cuda`.

    .venv/bin/python benchmarks/bench_study_cost.py            # ~2 min
    .venv/bin/python benchmarks/bench_study_cost.py --device cuda

Results: benchmarks/results/study_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codesign.atomic import write_json, write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("sfc", "lenet", "resnet8", "cnv")
CELLS = RESULTS / "paper_cells_60k"
log = logging.getLogger("bench_study_cost")


def step_seconds(model_name: str, quant: bool, x, y, device: str, steps: int, warmup: int = 2) -> float:
    """Median seconds of one Adam training step (forward, backward, update) on batch (x, y)."""
    import torch

    from codesign.models import build_float, build_quant, make_spec, uniform_plan

    spec = make_spec(model_name, (1, 28, 28), 10)
    torch.manual_seed(0)
    model = build_quant(spec, uniform_plan(spec, 4, 4)) if quant else build_float(spec)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = x.to(device), y.to(device)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measured_hours(cells: Path, model: str) -> dict[str, float]:
    """Hours of cell compute per seed that the cached study cells of ``model`` recorded, split
    into float cells (pruning, clustering) and QAT cells (bits); mean over the seeds present."""
    per_seed: dict[int, dict[str, float]] = {}
    for f in sorted(cells.glob(f"*__{model}__*.json")):
        row = json.loads(f.read_text())
        kind = "qat" if row["study"] == "bits" else "float"
        d = per_seed.setdefault(int(row["seed"]), {"float": 0.0, "qat": 0.0, "cells": 0})
        d[kind] += float(row.get("seconds") or 0.0) / 3600
        d["cells"] += 1
    full = [d for d in per_seed.values() if d["cells"] == max(v["cells"] for v in per_seed.values())]
    if not full:
        return {}
    return {k: statistics.fmean(d[k] for d in full) for k in ("float", "qat", "cells")} | {"seeds": len(full)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batch", type=int, default=128, help="the study's training batch size")
    p.add_argument("--steps", type=int, default=8, help="timed steps per model and mode")
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", default="lenet", help="the model whose measured cells scale the projection")
    p.add_argument("--cells", type=Path, default=CELLS)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from codesign.data import load_dataset, sample_batch
    from codesign.train import check_device

    device = check_device(args.device)
    splits = load_dataset("fashion-mnist", seed=0, limit_train=max(2000, args.batch), limit_test=100)
    x, y = sample_batch(splits, args.batch, "train")
    models = list(dict.fromkeys([args.reference, *args.models]))
    steps: dict[str, dict[str, float]] = {}
    for m in models:
        steps[m] = {mode: step_seconds(m, mode == "qat", x, y, device, args.steps) for mode in ("float", "qat")}
        log.info("%s: float step %.1f ms, QAT step %.1f ms", m, 1e3 * steps[m]["float"], 1e3 * steps[m]["qat"])
    ref = measured_hours(args.cells, args.reference)
    if not ref:
        raise SystemExit(f"no study cells of {args.reference} under {args.cells}: run scripts/paper_experiments.py "
                         f"--full-data --models {args.reference} first, or pass --reference")
    rows = []
    for m in models:
        r = {k: steps[m][k] / steps[args.reference][k] for k in ("float", "qat")}
        proj = ref["float"] * r["float"] + ref["qat"] * r["qat"]
        done = measured_hours(args.cells, m)
        rows.append({"model": m, "float_step_ms": 1e3 * steps[m]["float"], "qat_step_ms": 1e3 * steps[m]["qat"],
                     "float_ratio": r["float"], "qat_ratio": r["qat"], "projected_hours_per_seed": proj,
                     "measured_hours_per_seed": (done["float"] + done["qat"]) if done else None})
    result = {"command": "python benchmarks/bench_study_cost.py" + (f" --device {device}" if device != "cpu" else ""),
              "device": device, "threads": torch.get_num_threads(), "batch": args.batch, "reference": args.reference,
              "reference_cells": ref, "rows": rows}
    write_json(args.out / "study_cost.json", result)
    lines = [f"# The full paper study's cost per model ({device}, {torch.get_num_threads()} torch threads)", "",
             f"Command: `{result['command']}`. One training step = forward, backward and Adam update of a "
             f"batch of {args.batch} real images; median of {args.steps}. Projection: the {args.reference} "
             f"study's measured cell hours per seed ({ref['float']:.2f} h float cells, {ref['qat']:.2f} h QAT "
             f"cells, {int(ref['cells'])} cells) times each model's step-time ratio.", "",
             "| model | float step ms | QAT step ms | x float | x QAT | projected h / seed | measured h / seed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        meas = "-" if r["measured_hours_per_seed"] is None else f"{r['measured_hours_per_seed']:.2f}"
        lines.append(f"| {r['model']} | {r['float_step_ms']:.1f} | {r['qat_step_ms']:.1f} | {r['float_ratio']:.1f} "
                     f"| {r['qat_ratio']:.1f} | {r['projected_hours_per_seed']:.1f} | {meas} |")
    write_text(args.out / "study_cost.md", "\n".join(lines) + "\n")
    log.info("wrote %s", args.out / "study_cost.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
