"""`make bench`: every benchmark in one go, each writing its JSON into benchmarks/results/.

Quick modes by default (about half an hour on 2 cores); `--full` runs the full-size versions
(hours: see each script's docstring). Each benchmark runs in its own process so one failure
does not hide the others; the exit code is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK = [
    ["bench_foundation.py", "--quick"],
    ["bench_foundation.py", "--throughput-only"],
    ["bench_compiler.py", "--quick"],
    ["bench_rtlsim.py"],
    ["bench_codesign.py", "--quick"],
    ["bench_finn.py", "--quick"],
    ["bench_workers.py", "--quick"],
    ["bench_timing.py", "--quick"],
    ["bench_vs_finn_rtl.py", "--quick"],
]
FULL = [
    ["bench_foundation.py"],
    ["bench_foundation.py", "--throughput-only"],
    ["bench_compiler.py"],
    ["bench_rtlsim.py"],
    ["bench_codesign.py"],
    ["bench_finn.py"],
    ["bench_workers.py"],
    ["bench_timing.py"],
    ["bench_vs_finn_rtl.py", "--resume"],
    ["../scripts/paper_experiments.py"],
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size runs (hours)")
    args = ap.parse_args(argv)
    failed = []
    for cmd in FULL if args.full else QUICK:
        print(f"== {' '.join(cmd)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=HERE.parent)
        if rc:
            failed.append(" ".join(cmd))
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
