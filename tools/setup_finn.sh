#!/usr/bin/env bash
# Optional FINN+ environment (PyPI finn-plus 1.6.1), idempotent, no root needed.
#
# Why a separate venv: FINN+'s pins (onnx 1.21.0, onnxruntime 1.25.1, protobuf 5.29.6, brevitas 0.13.0,
# bitstring <4.4, rich <14, scikit-learn <1.8, ...) conflict with requirements.lock in 8 places, and its
# builder takes over stdout and root logging, so codesign calls it as a subprocess
# (codesign/backends/finn_runner.py run with FINN_VENV/bin/python).
#
# Usage:  bash tools/setup_finn.sh            install from requirements-finn.lock (the normal path)
#         bash tools/setup_finn.sh --relock   resolve FINN+ 1.6.1 again and rewrite requirements-finn.lock
# Env:    FINN_VENV   where the venv goes (default <repo>/.venv-finn)
#         PYTHON      interpreter to build the venv from (default python3.11)
# On success it writes FINN_VENV/.codesign-finn-setup (the stamp the tests look for); on failure it
# prints why and exits non-zero (tools/setup.sh reports it and carries on: the env is optional).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${FINN_VENV:-$REPO/.venv-finn}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
LOCK="$REPO/requirements-finn.lock"
STAMP="$VENV/.codesign-finn-setup"
FAILED="$VENV/.codesign-finn-setup-failed"
RELOCK=0
[ "${1:-}" = "--relock" ] && RELOCK=1

if [ "$RELOCK" = 0 ] && [ -f "$STAMP" ] && [ ! "$LOCK" -nt "$STAMP" ] \
   && [ ! "$REPO/codesign/backends/finn_runner.py" -nt "$STAMP" ]; then
  echo "[setup-finn] ok (up to date: $VENV)"
  exit 0
fi
t0=$(date +%s)
rm -f "$STAMP"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup-finn] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
mkdir -p "$VENV"
rm -f "$FAILED"
trap 'echo "step failed at line $LINENO" > "$FAILED"' ERR
"$VPY" -m pip install -q --upgrade pip
# 1. torch CPU first: the pinned wheel (a plain resolve of finn-plus would pull a 6 GB CUDA build).
"$VPY" -m pip install -q -r "$REPO/requirements-torch.txt"
if [ "$RELOCK" = 1 ]; then
  # 2. finn-plus 1.6.1's requirements without brevitas (brevitas 0.13.0 pins setuptools<70, torch 2.13 needs
  #    setuptools>=77.0.3), then brevitas's own requirements except setuptools, 3. the two with --no-deps.
  "$VPY" -m pip install -q "setuptools>=77,<81" \
    "bitstring>=4.3.1,<4.4.0" "click>=8.1.8,<9.0.0" "cmake>=4.0.3,<4.1.0" "mashumaro[yaml]>=3.15,<4.0" \
    "matplotlib>=3.10.9,<3.11.0" "mip==1.17.0" "numpy>=2.4.6,<2.5.0" "onnx==1.21.0" "onnx-ir>=0.1.15" \
    "onnx-passes>=0.4.0" "onnxoptimizer>=0.4.2,<0.5.0" "onnxruntime==1.25.1" "onnxscript>=0.7.0" \
    "pandas>=2.3.1,<2.4.0" "protobuf==5.29.6" "pybind11==3.0.1" "pydantic>2.0" "pyyaml>=6.0.2,<6.1.0" \
    "qonnx==1.0.0" "rich>=13.9.4,<14.0.0" "scikit-learn>=1.7.2,<1.8.0" "scipy>=1.17.0,<1.18.0" \
    "termcolor>=2.5.0,<3.0.0" \
    "dependencies==2.0.1" packaging sympy "typing-extensions>=3.7.4" unfoldNd \
    psutil  # imported by finn/transformation/fpgadataflow/simulation_build.py, undeclared (FINN+ 1.6.1)
  "$VPY" -m pip install -q --no-deps brevitas==0.13.0 finn-plus==1.6.1
  tmp="$LOCK.tmp.$$"
  {
    echo "# FINN+ environment (tools/setup_finn.sh), frozen from a resolve of finn-plus==1.6.1 on $(date -u +%Y-%m-%d)."
    echo "# Installed with --no-deps after requirements-torch.txt; regenerate: bash tools/setup_finn.sh --relock"
    "$VPY" -m pip freeze --all | grep -v -E '^(pip|torch)==' | LC_ALL=C sort -f
  } > "$tmp"
  mv "$tmp" "$LOCK"
  echo "[setup-finn] wrote $LOCK ($(grep -c '==' "$LOCK") pins)"
else
  # 2. every package at its frozen pin, nothing resolved (the lock was made by --relock).
  "$VPY" -m pip install -q --no-deps -r "$LOCK"
fi
# 4. prove it works: FINN+ imports through the runner's workarounds and the workarounds are still needed.
"$VPY" "$REPO/codesign/backends/finn_runner.py" self-check
trap - ERR
touch "$STAMP"
echo "[setup-finn] ok ($VENV, $(( $(date +%s) - t0 )) s)"
