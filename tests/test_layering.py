"""Imports go upward only (DESIGN.md): a lower package never imports a higher one, so each
layer can be used and tested without the ones above it. The check reads every module's import
statements (including imports inside functions, which are still dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "codesign"

#: package -> packages (and third-party roots) it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "dataflow": ("torch", "brevitas", "codesign.hw", "codesign.designspace", "codesign.compress", "codesign.search",
                 "codesign.commands", "codesign.cli"),
    "hw": ("torch", "brevitas", "codesign.designspace", "codesign.compress", "codesign.search", "codesign.commands",
           "codesign.cli"),
    "designspace": ("codesign.compress", "codesign.search", "codesign.commands", "codesign.cli"),
    "compress": ("codesign.search", "codesign.commands", "codesign.cli"),
    "search": ("codesign.commands", "codesign.cli"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_upward_only(package):
    bad = []
    for f in sorted((PKG / package).rglob("*.py")):
        for line, mod in _imports(f):
            if any(mod == b or mod.startswith(b + ".") for b in FORBIDDEN[package]):
                bad.append(f"{f.relative_to(PKG.parent)}:{line} imports {mod}")
    assert not bad, "upward-only imports broken:\n" + "\n".join(bad)
