#!/usr/bin/env python
"""Work split of the shared search: designs trained per minute with 1, 2 and 4 worker
processes on one study, and the database load per trained design.

Each run is a fresh study (a fresh PostgreSQL database on a throwaway local server, see
`codesign.search.pgserver`; `--sqlite` adds the same on SQLite) and the `random` strategy with
the same seed in every worker, the worst case for coordination: every worker proposes the
same designs in the same order, only the claims table keeps them apart. Reported per run:

* wall seconds of `codesign search CONFIG --trials-only --workers N` (includes each worker's
  start-up: imports, data, float model and relevance read back),
* designs trained per minute, end to end and in the steady state (first trial start to last
  trial end, from the study's timestamps),
* designs trained twice (must be 0) and duplicate proposals skipped (cheap, never trained),
* PostgreSQL statements and committed transactions per trained design
  (pg_stat_statements / pg_stat_database deltas of that database).

Every worker trains with one thread (OMP_NUM_THREADS=1), so the CPU count caps the scaling:
on a 2-core machine 4 workers cannot train faster than 2; the point is that coordination
costs nothing measurable and nothing is duplicated.

    python benchmarks/bench_workers.py --quick     # digits, 8 trials per run, PostgreSQL
    python benchmarks/bench_workers.py             # Fashion-MNIST TFC, 16 trials, + SQLite

Writes benchmarks/results/workers.json and workers.md; run folder in runs/bench_workers/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_workers")


def config(out: Path, quick: bool, trials: int, study: str) -> dict:
    rank = {"epochs": 1, "max_batches": 12 if quick else 40, "val_samples": 256 if quick else 2000}
    return {"name": "bench-workers", "model": "tfc", "dataset": "digits" if quick else "fashion-mnist",
            "out": str(out), "target_fps": 1_000_000 if quick else 100_000,
            "limit_train": None if quick else 12000, "limit_test": None if quick else 2000,
            "train": {"epochs": 1 if quick else 2, "max_batches": 20 if quick else None},
            "search": {"strategy": "random", "trials": trials, "study_name": study,
                       "budget": {"LUT": 6000 if quick else 8000}, "heartbeat_s": 5, "grace_s": 20,
                       "weight_bits": [2, 3, 4], "act_bits": [2, 3, 4], "prune_levels": [0.0, 0.25, 0.5],
                       "rank": rank, "relevance": {"samples": 64}}}


def study_stats(url: str, name: str) -> dict:
    import optuna
    from optuna.trial import TrialState

    from codesign.search.study import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.load_study(study_name=name, storage=make_storage(url))
    trials = st.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE and "plan_hash" in t.user_attrs]
    per_hash = Counter(t.user_attrs["plan_hash"] for t in done)
    starts = [t.datetime_start for t in done if t.datetime_start]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if done else 0.0
    return {"trained": len(done), "trained_twice": sum(c - 1 for c in per_hash.values()),
            "duplicates_skipped": sum(1 for t in trials if t.state == TrialState.PRUNED
                                      and t.user_attrs.get("feasible") is not False),
            "infeasible_rejected": sum(1 for t in trials if t.user_attrs.get("feasible") is False),
            "workers_used": len({t.user_attrs.get("worker") for t in done}),
            "mean_train_s": sum(float(t.user_attrs.get("train_seconds", 0)) for t in done) / max(len(done), 1),
            "steady_span_s": span}


def one_run(backend: str, workers: int, run_dir: Path, quick: bool, trials: int, pg) -> dict:
    study = f"w{workers}-{backend}"
    if backend == "postgresql":
        db = f"bench_{workers}"
        url = pg.create_database(db)
        s0, c0 = pg.statements(db), pg.commits(db)
    else:
        db_path = run_dir / f"bench-{workers}.db"
        for f in (db_path, Path(str(db_path) + ".lock")):
            f.unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
    cfg = run_dir.parent / f"workers-{study}.yaml"
    cfg.write_text(yaml.safe_dump(config(run_dir, quick, trials, study)))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "codesign.cli", "search", str(cfg), "--trials-only", "--no-progress",
                        "--storage", url, "--workers", str(workers)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"{study} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    res = {"backend": backend, "workers": workers, "wall_s": round(wall, 1), **study_stats(url, study)}
    res["designs_per_min"] = round(60 * res["trained"] / wall, 2)
    res["designs_per_min_steady"] = round(60 * res["trained"] / max(res["steady_span_s"], 1e-9), 2)
    if backend == "postgresql":
        s1, c1 = pg.statements(db), pg.commits(db)
        n = max(res["trained"], 1)
        res["statements_per_design"] = round((s1 - s0) / n, 1) if s0 is not None and s1 is not None else None
        res["commits_per_design"] = round((c1 - c0) / n, 1)
    log.info("%s: %s", study, json.dumps(res))
    return res


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Shared-study work split ({meta['mode']}, {meta['cpus']} CPU cores, {meta['trials']} designs per run)", "",
             "| backend | workers | wall s | designs/min (end to end) | designs/min (steady) | trained twice | "
             "duplicates skipped | statements / design | commits / design |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['workers']} | {r['wall_s']} | {r['designs_per_min']} | "
                     f"{r['designs_per_min_steady']} | {r['trained_twice']} | {r['duplicates_skipped']} | "
                     f"{r.get('statements_per_design', '-')} | {r.get('commits_per_design', '-')} |")
    lines += ["", f"Command: `{meta['command']}`. Strategy `random`, same seed in every worker (every proposal "
              "collides); one torch thread per worker.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, 8 designs per run, PostgreSQL only")
    ap.add_argument("--sqlite", action="store_true", help="also run on SQLite (default in the full mode)")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--trials", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from codesign.config import RunConfig, _build
    from codesign.search.loop import prepare
    from codesign.search.pgserver import LocalPostgres, unavailable_reason

    trials = args.trials or (8 if args.quick else 16)
    run_dir = ROOT / "runs" / "bench_workers" / ("quick" if args.quick else "full") / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare(_build(RunConfig, config(run_dir, args.quick, trials, "prep"), "bench"), run_dir)  # float + relevance once
    backends = ["postgresql"] + (["sqlite"] if args.sqlite or not args.quick else [])
    reason = unavailable_reason()
    pg = None
    if reason:
        log.warning("PostgreSQL runs skipped: %s", reason)
        backends = [b for b in backends if b != "postgresql"] or ["sqlite"]
    else:
        pg = LocalPostgres.start()
    rows = []
    try:
        for b in backends:
            for w in [int(x) for x in args.workers.split(",")]:
                rows.append(one_run(b, w, run_dir, args.quick, trials, pg))
    finally:
        if pg is not None:
            pg.cleanup()
    meta = {"mode": "quick" if args.quick else "full", "cpus": os.cpu_count(), "trials": trials,
            "command": "python benchmarks/bench_workers.py" + (" --quick" if args.quick else "")
            + (" --sqlite" if args.sqlite else ""), "postgres_skipped": reason}
    name = "workers"  # one file; meta.mode says quick or full
    res_dir = ROOT / "benchmarks" / "results"
    from codesign.atomic import write_json, write_text

    write_json(res_dir / f"{name}.json", {"meta": meta, "runs": rows})
    write_text(res_dir / f"{name}.md", markdown(rows, meta))
    sys.stdout.write(markdown(rows, meta))
    bad = [r for r in rows if r["trained_twice"] or r["trained"] < trials]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
