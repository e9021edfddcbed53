"""Acceptance test of "one op = one place": every registered HW op type (and its FINN names)
is named only in its own op module, its lowering transforms and the registration module; every
op implements the whole op interface, and its FIFO I/O pattern agrees with its cycle model."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign.dataflow.ops import OPS, custom_op, op_class
from codesign.dataflow.ops.base import HWCustomOp

PKG = Path(__file__).resolve().parents[1] / "codesign"
TEMPLATES = Path(__file__).resolve().parents[1] / "accel_templates"
REGISTRATION = PKG / "dataflow" / "ops" / "__init__.py"
LOWERING = PKG / "dataflow" / "transforms"
SOURCES = sorted(list(PKG.rglob("*.py")) + list(PKG.rglob("*.json")))


def _names(cls: type[HWCustomOp]) -> set[str]:
    return {cls.__name__, *cls.finn_op_names()}


def _allowed(cls: type[HWCustomOp]) -> set[Path]:
    own = Path(sys.modules[cls.__module__].__file__).resolve()
    return {own, REGISTRATION.resolve(), *(p.resolve() for p in LOWERING.glob("*.py"))}


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.__name__)
def test_op_type_named_only_in_its_places(cls):
    assert len(SOURCES) > 50  # the scan sees the package
    pats = [re.compile(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9])") for n in _names(cls)]
    allowed = _allowed(cls)
    offenders = []
    for path in SOURCES:
        if path.resolve() in allowed:
            continue
        in_op_module = path.resolve().parent == REGISTRATION.parent.resolve()
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            # FINN's lowering of one op may use FINN's op of another (a max pool becomes FINN's
            # sliding window + Pool): that declaration belongs to the lowered op's module
            if in_op_module and line.lstrip().startswith("finn_lowering ="):
                continue
            if any(p.search(line) for p in pats):
                offenders.append(f"{path.relative_to(PKG.parent)}:{lineno}: {line.strip()}")
    assert not offenders, "op type named outside its module:\n" + "\n".join(offenders)


def test_the_scan_finds_a_stray_name():
    """The pattern is not vacuous: it catches an op type in a table, an f-string, a FINN name."""
    pat = re.compile(r"(?<![A-Za-z0-9_])MVAU(?![A-Za-z0-9])")
    for hit in ('{"MVAU": 1}', "f'{x}' if op == 'MVAU'", "MVAU_hls_0", "node MVAU_0"):
        assert pat.search(hit), hit
    for miss in ("pin_mvaus", "FINN_MVAU_WWIDTH_MAX", "MVAUs"):
        assert not pat.search(miss), miss


HOOKS = ("params_from_attrs", "cycles", "resources", "io_pattern", "generate_rtl")


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.__name__)
def test_every_op_implements_the_interface(cls):
    for hook in HOOKS:
        assert getattr(cls, hook).__func__ is not getattr(HWCustomOp, hook).__func__, (cls.__name__, hook)
    assert cls.template and (TEMPLATES / cls.template).is_file(), cls.template
    assert custom_op[cls.__name__] is cls and op_class(cls.__name__) is cls
    base = cls.finn_op_names()[0]
    assert cls.finn_op_names() == (base, f"{base}_hls", f"{base}_rtl")
    assert set(cls.finn_folding_attrs) >= set(cls.fold_dims)
    declared = set(cls.declared_defaults()) | {k for k, v in cls.get_nodeattr_types(cls.__new__(cls)).items()}
    for fattr, (dim_attr, _) in cls.fold_dims.items():
        assert {fattr, dim_attr} <= declared
    for a in (cls.in_fold_attr, cls.out_fold_attr):
        assert a is None or a in cls.fold_dims
    assert cls.layer_role in ("weights", "next", "previous")


_MODULE_DEF = re.compile(r"^\s*module\s+(\w+)", re.M)
_MODULE_USE = re.compile(r"^\s*(codesign_\w+)\s+(?:#\s*\(|\w+\s*\()", re.M)


@pytest.mark.parametrize("cls", OPS, ids=lambda c: c.__name__)
def test_template_files_define_every_module_the_core_instantiates(cls):
    """The RTL flow copies ``template_files`` into a design (Verilator, Yosys, nextpnr and the
    Vivado package read that folder), so every module one of them instantiates must be defined
    in one of them: a shared module (the popcount tree) the op forgot to declare fails here, not
    in a tool run."""
    files = cls.template_files()
    assert files[0] == cls.template and len(set(files)) == len(files)
    texts = [(TEMPLATES / f).read_text() for f in files]
    defined = {m for t in texts for m in _MODULE_DEF.findall(t)}
    used = {m for t in texts for m in _MODULE_USE.findall(t)}
    assert used <= defined, (cls.__name__, sorted(used - defined))
    assert cls.template[:-2] in defined


def test_the_module_scan_finds_an_instance():
    """The instantiation pattern is not vacuous: the threshold core's popcount tree is found."""
    text = (TEMPLATES / "codesign_thresholding.v").read_text()
    assert "codesign_adder_tree" in _MODULE_USE.findall(text)
    assert "codesign_adder_tree" not in _MODULE_DEF.findall(text)


M = dict(wbits=2, abits=2, obits=2, acc_bits=8, n_thr=3, ram_style="auto", resType="lut", xnor=0)
EXAMPLES = {
    "MVAU": [dict(MW=12, MH=6, PE=2, SIMD=3, Nv=5, **M), dict(MW=4, MH=4, PE=4, SIMD=4, Nv=1, **M)],
    "Thresholding": [dict(C=8, PE=2, n_steps=3, ibits=8, obits=2, Nv=6, ram_style="auto")],
    "SlidingWindow": [dict(C=4, SIMD=2, IH=7, IW=7, OH=5, OW=5, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, abits=2,
                           ram_style="auto"),
                      dict(C=2, SIMD=1, IH=8, IW=8, OH=4, OW=4, kh=2, kw=2, sh=2, sw=2, dh=1, dw=1, abits=2,
                           ram_style="auto")],
    "StreamingMaxPool": [dict(H=5, W=5, k=2, C=4, PE=2, bits=2, ram_style="auto")],
    "FMPadding": [dict(H=4, W=5, pad_t=1, pad_l=2, pad_b=0, pad_r=1, C=4, SIMD=2, bits=2)],
    "LabelSelect": [dict(L=10, PE=5, K=3, vbits=8)],
    "StreamingDataWidthConverter": [dict(total_bits=96, in_width=8, out_width=24),
                                    dict(total_bits=96, in_width=32, out_width=8)],
    "StreamingFIFO": [dict(depth=4, width=8, words=9, ram_style="auto")],
    "VVAU": [dict(K=9, C=4, PE=2, SIMD=1, Nv=6, **M), dict(K=9, C=4, PE=4, SIMD=3, Nv=2, **M)],
    "DuplicateStreams": [dict(C=8, PE=2, bits=4, Nv=6)],
    "AddStreams": [dict(C=8, PE=4, abits=2, bbits=4, obits=5, Nv=3)],
    "StreamingConcat": [dict(C0=8, C1=4, G=4, SIMD=2, ibits0=4, ibits1=4, obits=4, Nv=3),
                        dict(C0=3, C1=6, G=3, SIMD=3, ibits0=2, ibits1=3, obits=3, Nv=2)],
    "WindowMax": [dict(K=9, C=4, PE=2, bits=4, Nv=6), dict(K=4, C=3, PE=3, bits=1, Nv=5)],
}


def _words(op: str, p: dict) -> tuple[Any, int]:
    """Input/output words per frame, computed here from the op's semantics (a tuple of input
    words per stream where the inputs differ)."""
    if op == "StreamingConcat":
        return (p["Nv"] * p["C0"] // p["SIMD"], p["Nv"] * p["C1"] // p["SIMD"]), p["Nv"] * (p["C0"] + p["C1"]) // p["SIMD"]
    if op == "MVAU":
        return p["Nv"] * p["MW"] // p["SIMD"], p["Nv"] * p["MH"] // p["PE"]
    if op == "Thresholding":
        return (p["Nv"] * p["C"] // p["PE"],) * 2
    if op == "SlidingWindow":
        return p["IH"] * p["IW"] * p["C"] // p["SIMD"], p["OH"] * p["OW"] * p["kh"] * p["kw"] * p["C"] // p["SIMD"]
    if op == "StreamingMaxPool":
        return p["H"] * p["W"] * p["C"] // p["PE"], (p["H"] // p["k"]) * (p["W"] // p["k"]) * p["C"] // p["PE"]
    if op == "FMPadding":
        oh, ow = p["H"] + p["pad_t"] + p["pad_b"], p["W"] + p["pad_l"] + p["pad_r"]
        return p["H"] * p["W"] * p["C"] // p["SIMD"], oh * ow * p["C"] // p["SIMD"]
    if op == "LabelSelect":
        return p["L"] // p["PE"], p["K"]
    if op == "VVAU":
        return p["Nv"] * p["K"] * p["C"] // (p["PE"] * p["SIMD"]), p["Nv"] * p["C"] // p["PE"]
    if op == "WindowMax":
        return p["Nv"] * p["K"] * p["C"] // p["PE"], p["Nv"] * p["C"] // p["PE"]
    if op in ("DuplicateStreams", "AddStreams"):  # per stream: one word per Nv * C / PE
        return (p["Nv"] * p["C"] // p["PE"],) * 2
    if op == "StreamingDataWidthConverter":
        return p["total_bits"] // p["in_width"], p["total_bits"] // p["out_width"]
    return p["words"], p["words"]


def test_examples_cover_every_op():
    assert set(EXAMPLES) == set(custom_op)


@pytest.mark.parametrize("op,p", [(op, p) for op, ps in EXAMPLES.items() for p in ps],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_io_pattern_agrees_with_the_cycle_model(op, p):
    cls = op_class(op)
    n, cons, prod = cls.io_pattern(p)
    n_in, n_out = _words(op, p)
    ports = list(cons) if isinstance(cons, tuple) else [cons]  # per stream input where they differ
    assert n == int(cls.cycles(p)) and [len(c) for c in ports] == (list(n_in) if isinstance(n_in, tuple) else [n_in])
    assert len(prod) == n_out
    for steps in (*ports, prod):  # at most one word per clock, inside the frame
        assert np.all(np.diff(steps) >= 1) and steps.min() >= 0 and steps.max() < n
    if len(ports) > 1:  # the inputs take turns: never two input words on one clock
        allc = np.concatenate(ports)
        assert len(np.unique(allc)) == len(allc)
    est = cls.cost(p)
    assert int(est["cycles"]) == n and set(est) >= {"cycles", "LUT", "FF", "BRAM_18K", "URAM", "DSP", "mem_bits"}
    # array-polymorphic: the vectorised path evaluates the same formulas on candidate arrays
    fold = next(iter(cls.fold_dims), None)
    if fold is not None:
        q = dict(p)
        q[fold] = np.asarray([p[fold], p[fold]])
        arr = cls.cost(q)
        assert np.all(np.asarray(arr["cycles"]) == n) and np.all(np.asarray(arr["LUT"]) == int(est["LUT"]))
