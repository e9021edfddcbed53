"""Folding: PE/SIMD per HW node, FINN-format folding JSON, auto-folding and max-FPS folding.

Why it looks like this:
- Constraints are data declared by each op class (`HWCustomOp.fold_dims`: folded attribute ->
  the dimension it must divide; `follows_consumer`; `fold_candidates`), so the checker, the
  error messages, the auto-folder and the vectorised search path share one definition.
- A typo in a folding JSON is an *error* naming the closest node names (FINN only warns, and a
  silently ignored folding is a classic FINN pitfall).
- `auto_fold` restates FINN's SetFolding idea (raise the input fold over the divisors of its
  dimension, respecting the weight-stream width limit, then the output fold) but evaluates the whole
  divisor grid of each node with the vectorised cost model and keeps the cheapest (fewest LUT,
  then BRAM, DSP, parallelism) choice that meets the target — a superset of the choices FINN's
  greedy walk visits, so never more expensive than it.
- `max_fps_fold` searches over the finite set of achievable bottleneck cycle counts, so the
  answer is exact for the cost model (given that cost grows as the target tightens); its fit
  check includes the width converters and FIFOs the build will insert (`adapter_cost`).
- FINN's own folding files are read as written (`map_finn_folding`): FINN names map onto ours
  by order and type, FINN-only keys are noted, derived attributes are checked, not applied.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from onnx import NodeProto, helper

from codesign.dataflow.cost import (CALIBRATED, DSP48, IDENTITY, RESOURCES, Calibration, hw_nodes, model_cost,
                                    node_attrs, node_params, op_cost)
from codesign.errors import FoldingError

log = logging.getLogger(__name__)



def fold_rules(op_type: str) -> dict[str, tuple[str, str]]:
    """{folded attribute: (dimension attribute, params key)} of an op type (empty: not foldable)."""
    from codesign.dataflow.ops import custom_op

    cls = custom_op.get(op_type)
    return dict(cls.fold_dims) if cls is not None else {}


def _op(op_type: str):
    from codesign.dataflow.ops import custom_op

    return custom_op.get(op_type)


#: keys a FINN folding config may carry besides PE/SIMD (finn-reference §1)
FINN_FOLDING_KEYS = ("PE", "SIMD", "ram_style", "resType", "mem_mode", "runtime_writeable_weights",
                     "parallel_window", "depth", "impl_style", "inFIFODepths", "outFIFODepths")
#: further keys FINN+ writes into its folding configs (``applied_folding_config.json``,
#: ``auto_folding_config.json``): FINN-only implementation choices this compiler does not model,
#: accepted and ignored with a note
FINN_ONLY_KEYS = ("EmbFold", "SeqFold", "ram_style_thresholds", "ram_style_mask", "mac_resource",
                  "depth_trigger_uram", "depth_trigger_bram", "preferred_impl_style", "parallel_window",
                  "impl_style", "depth")
#: weight-storage choices a folding config may set per layer (rom / codebook / constants)
STORAGE_KEYS = ("weight_storage", "codebook_bits")
#: attributes written into an extracted folding config when the node has them
EXPORT_KEYS = ("PE", "SIMD", "ram_style", "resType", "mem_mode", "runtime_writeable_weights",
               "parallel_window", "depth", "impl_style", "inFIFODepths", "outFIFODepths",
               "weight_storage", "codebook_bits")


def divisors(n: int) -> list[int]:
    """All positive divisors of n, ascending."""
    n = int(n)
    if n <= 0:
        return [1]
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


# --------------------------------------------------------------------------- attributes

def set_attr(node: NodeProto, name: str, value: Any) -> None:
    """Set (or replace) one ONNX attribute, keeping the attribute's existing type."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            old = helper.get_attribute_value(a)
            if isinstance(old, (int, np.integer)) and not isinstance(value, str):
                value = int(value)
            del node.attribute[i]
            break
    if isinstance(value, (np.integer,)):
        value = int(value)
    node.attribute.append(helper.make_attribute(name, value))


def _declared_attrs(node: NodeProto) -> set[str] | None:
    try:
        from qonnx.custom_op.registry import getCustomOp

        return set(getCustomOp(node).get_nodeattr_types())
    except Exception:
        return None


def check_node_folding(node: NodeProto, attrs: Mapping[str, Any] | None = None) -> None:
    """Raise FoldingError if a folded attribute does not divide its dimension; the message
    names the node and lists the legal values."""
    a = dict(node_attrs(node))
    if attrs:
        a.update(attrs)
    for fattr, (dim_attr, _) in fold_rules(node.op_type).items():
        if fattr not in a or dim_attr not in a:
            continue
        v = int(a[fattr])
        # a list-valued dimension (a concat's ChannelsPerStream): the fold divides every entry
        dims = [int(d) for d in a[dim_attr]] if isinstance(a[dim_attr], (list, tuple)) else [int(a[dim_attr])]
        if v < 1 or any(d % v for d in dims):
            shown = dims[0] if len(dims) == 1 else dims
            legal = divisors(math.gcd(*dims))
            raise FoldingError(f"{node.name} ({node.op_type}): {fattr}={v} does not divide {dim_attr}={shown}; "
                               f"valid {fattr} values: {legal}")


def check_folding(model: Any) -> None:
    """Check the folding constraints of every HW node."""
    for n in hw_nodes(model):
        check_node_folding(n)


def _node_index(model: Any) -> dict[str, NodeProto]:
    return {n.name: n for n in hw_nodes(model)}


def _unknown_node(name: str, names: list[str]) -> FoldingError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return FoldingError(f"folding config names node {name!r}, which is not in the graph{hint} "
                        f"(HW nodes: {', '.join(names)})")


def _check_attr_name(node: NodeProto, attr: str) -> None:
    declared = _declared_attrs(node)
    known = set(FINN_FOLDING_KEYS) | (declared if declared is not None else set(node_attrs(node)))
    if attr not in known:
        close = difflib.get_close_matches(attr, sorted(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FoldingError(f"{node.name} ({node.op_type}): unknown attribute {attr!r}{hint}")


#: FINN's weight/threshold memory modes (current names, and the older const/decoupled ones)
MEM_MODES = ("internal_embedded", "internal_decoupled", "external", "const", "decoupled")


def _check_attr_value(node: NodeProto, attr: str, value: Any) -> None:
    """Reject values the cost model and the RTL cannot use (a typo like ram_style="blok")."""
    from codesign.dataflow.cost import RAM_STYLES, RES_TYPES

    valid = {"ram_style": RAM_STYLES, "resType": RES_TYPES, "mem_mode": MEM_MODES}.get(attr)
    if valid is not None and value not in valid:
        raise FoldingError(f"{node.name} ({node.op_type}): {attr}={value!r} is not valid; valid: {', '.join(valid)}")
    if attr in ("PE", "SIMD", "depth") and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                                            or int(value) < 1):
        raise FoldingError(f"{node.name} ({node.op_type}): {attr} must be a positive integer, got {value!r}")


def set_folding(model: Any, folding: Mapping[str, Mapping[str, Any]]) -> Any:
    """Apply {node name: {attr: value}} to the model's HW nodes (in place; returns the model).

    Every name and attribute is validated before anything is changed, so a bad config leaves
    the model untouched.
    """
    idx = _node_index(model)
    names = list(idx)
    for name, attrs in folding.items():
        if name not in idx:
            raise _unknown_node(name, names)
        if not isinstance(attrs, Mapping):
            raise FoldingError(f"folding config entry {name!r} must map attribute -> value")
        for k, v in attrs.items():
            _check_attr_name(idx[name], k)
            _check_attr_value(idx[name], k, v)
        check_node_folding(idx[name], attrs)
    for name, attrs in folding.items():
        for k, v in attrs.items():
            set_attr(idx[name], k, v)
    return model


# --------------------------------------------------------------------------- FINN JSON

def _expand_defaults(model: Any, defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """FINN's "Defaults": attr -> [value, ["OpType", ...]] or [value, "all"]; applied to every
    matching node that has the attribute."""
    out: dict[str, dict[str, Any]] = {}
    for attr, spec in defaults.items():
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2):
            raise FoldingError(f"Defaults[{attr!r}] must be [value, [\"OpType\", ...]] or [value, \"all\"], "
                               f"got {spec!r}")
        value, scope = spec
        if scope != "all" and not (isinstance(scope, (list, tuple)) and all(isinstance(s, str) for s in scope)):
            raise FoldingError(f"Defaults[{attr!r}]: scope must be \"all\" or a list of op types, got {scope!r}")
        for n in hw_nodes(model):
            if scope != "all" and not (set(_op_aliases(n.op_type)) & set(scope)):
                continue
            declared = _declared_attrs(n)
            has = attr in (declared if declared is not None else set(node_attrs(n)))
            if not has:
                if scope != "all":
                    raise FoldingError(f"Defaults[{attr!r}]: op type {n.op_type} ({n.name}) has no attribute {attr!r}")
                continue
            out.setdefault(n.name, {})[attr] = value
    return out


def _op_aliases(op_type: str) -> tuple[str, ...]:
    """Our op type and every FINN name of it (base, _hls/_rtl, older releases' names)."""
    cls = _op(op_type)
    if cls is None:
        return (op_type,)
    return (op_type, *cls.finn_op_names(), *cls.finn_legacy_names)


def apply_folding_config(model: Any, config: Mapping[str, Any] | str | Path,
                         notes: list[str] | None = None) -> Any:
    """Apply a folding config (dict or JSON path): Defaults first, then per node.

    Entries are keyed by our node names or by FINN's (``<Op>_hls_0``, ``<Op>_rtl_2``, the
    names of FINN releases before 0.10, ...): a FINN file
    (finn-examples' ``folding_config/*.json``, FINN's ``auto_folding_config.json``, the
    ``folding_config_finn.json`` a build writes) is accepted as written, its nodes mapped onto
    ours by order and type (``map_finn_folding``). What was mapped, translated or ignored is
    logged and appended to ``notes``.
    """
    if not isinstance(config, Mapping):
        from codesign.atomic import read_json

        config = read_json(config)
    if not isinstance(config, Mapping):
        raise FoldingError("folding config must be a JSON object keyed by node name")
    for name, attrs in config.items():
        if name != "Defaults" and not isinstance(attrs, Mapping):
            raise FoldingError(f"folding config entry {name!r} must map attribute -> value")
    idx = _node_index(model)
    ours = {k: v for k, v in config.items() if k == "Defaults" or k in idx}
    foreign = {k: v for k, v in config.items() if k not in ours}
    local_notes: list[str] = []
    if foreign:
        mapped = map_finn_folding(model, foreign, local_notes)
        for name, attrs in mapped.items():
            ours.setdefault(name, {})
            ours[name] = {**attrs, **ours[name]}  # an entry under our own name wins
    merged = _expand_defaults(model, ours.get("Defaults", {}) or {})
    for name, attrs in ours.items():
        if name == "Defaults":
            continue
        merged.setdefault(name, {}).update(attrs)
    # validate node names first, even for nodes only mentioned with an empty dict
    for name in merged:
        if name not in idx:
            raise _unknown_node(name, list(idx))
    for name, attrs in merged.items():
        merged[name] = _drop_derived(idx[name], attrs)
    for n in local_notes:
        log.warning("folding config: %s", n)
    if notes is not None:
        notes.extend(local_notes)
    return set_folding(model, merged)


# --------------------------------------------------------------------------- FINN's node names

#: FINN's node names: ``<Op>[_hls|_rtl]_<index>`` (GiveUniqueNodeNames numbers each op type in
#: graph order; step_specialize_layers adds the implementation style)
_FINN_NAME = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9_]*?)(?:_(?P<style>hls|rtl))?_(?P<idx>0|[1-9]\d*)$")


def _finn_types() -> dict[str, Any]:
    """FINN op name (current and older releases') -> our op class."""
    from codesign.dataflow.ops import OPS

    out: dict[str, Any] = {}
    for cls in OPS:
        for nm in (cls.finn_op_names()[0], *cls.finn_legacy_names):
            out[nm] = cls
    return out


def _host_before_chain(model: Any) -> list[str]:
    """FINN op types FINN puts in hardware before our HW chain for nodes we keep on the host
    (the float input quantizer: declared by the op class FINN uses, ``finn_host_ops_before``)."""
    from codesign.dataflow.ops import OPS

    table = {host: cls.finn_op_names()[0] for cls in OPS for host in cls.finn_host_ops_before}
    chain = hw_nodes(model)
    if not chain:
        return []
    nodes = list(model.graph.node)
    first = nodes.index(chain[0])
    return [table[n.op_type] for n in nodes[:first] if n.op_type in table]


def _finn_sequence(model: Any, finn_plus: bool) -> dict[tuple[str, int], tuple[str | None, int, Any]]:
    """(FINN op type, index) -> (our node name or None for a host node, lowering step, op class).

    ``finn_plus``: FINN+ 1.6.1's lowering (``finn_lowering_steps``: a max pool is a sliding
    window plus ``Pool``); otherwise FINN's one node per op. FIFOs and width converters count on
    neither side (FINN inserts its own after the folding)."""
    seq: dict[tuple[str, int], tuple[str | None, int, Any]] = {}
    count: dict[str, int] = {}

    def add(fop: str, ours: str | None, step: int, cls: Any) -> None:
        i = count.get(fop, 0)
        count[fop] = i + 1
        seq[(fop, i)] = (ours, step, cls)

    ftypes = _finn_types()
    for fop in _host_before_chain(model):
        add(fop, None, 0, ftypes.get(fop))
    for n in hw_nodes(model):
        cls = _op(n.op_type)
        if cls is None or cls.finn_inserts_itself or cls.inserted_after_folding:
            continue
        steps = cls.finn_lowering_steps() if finn_plus else None
        if steps:
            for k, (fop, _) in enumerate(steps):
                add(fop, n.name, k, cls)
        else:
            add(cls.finn_op_names()[0], n.name, 0, cls)
    return seq


def _parse_finn_names(entries: Mapping[str, Any], our_names: list[str]) -> dict[str, tuple[str, int]]:
    """FINN name -> (FINN base op type, index); a name that is neither ours nor FINN's is an
    error naming the closest of our nodes."""
    ftypes = _finn_types()
    plus_only = _finn_plus_only_types()
    out: dict[str, tuple[str, int]] = {}
    for name in entries:
        m = _FINN_NAME.match(name)
        if m is None or (m.group("base") not in ftypes and m.group("base") not in plus_only):
            raise _unknown_node(name, our_names)
        out[name] = (m.group("base"), int(m.group("idx")))
    return out


def _finn_plus_only_types() -> set[str]:
    """FINN op types that appear only inside FINN+'s lowering of one of our ops (``Pool``)."""
    from codesign.dataflow.ops import OPS

    main = {c.finn_op_names()[0] for c in OPS}
    return {fop for c in OPS for fop, _ in (c.finn_lowering_steps() or ()) if fop not in main}


def _canonical(base: str) -> str:
    """An older FINN name of an op -> FINN's current one (as the op class declares them)."""
    cls = _finn_types().get(base)
    return cls.finn_op_names()[0] if cls is not None else base


def map_finn_folding(model: Any, entries: Mapping[str, Mapping[str, Any]],
                     notes: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """FINN-named folding entries -> entries keyed by our node names.

    FINN numbers its nodes per op type in graph order, so the i-th FINN node of a type is our
    i-th node of that type, counting the nodes FINN puts in hardware that we keep on the host
    (its input quantizer: such entries are ignored with a note). FINN+ 1.6.1 lowers a max pool
    to a sliding window plus ``Pool``; a file naming ``Pool`` nodes, or one whose indices only
    fit that numbering, is read in FINN+'s numbering, any other in FINN's. FIFO and width
    converter entries are ignored (this compiler sizes its own). The same node under several
    style names (``<Op>_0``, ``<Op>_hls_0``, ``<Op>_rtl_0``) must agree.
    """
    notes = notes if notes is not None else []
    our_names = list(_node_index(model))
    parsed = _parse_finn_names(entries, our_names)
    plus_only = _finn_plus_only_types()
    seqs = {False: _finn_sequence(model, False), True: _finn_sequence(model, True)}

    def resolves(plus: bool) -> bool:
        seq = seqs[plus]
        ftypes = _finn_types()
        for base, i in parsed.values():
            cls = ftypes.get(base)
            if cls is not None and (cls.finn_inserts_itself or cls.inserted_after_folding):
                continue
            if (_canonical(base), i) not in seq:
                return False
        return True

    wants_plus = any(base in plus_only for base, _ in parsed.values())
    plus = wants_plus or (not resolves(False) and resolves(True))
    seq = seqs[plus]
    convention = "FINN+ 1.6.1 (a max pool is a sliding window + Pool)" if plus else "FINN (one node per op)"
    ftypes = _finn_types()
    out: dict[str, dict[str, Any]] = {}
    source: dict[tuple[str, str], tuple[str, Any]] = {}
    mapped: list[str] = []
    for name, (base, i) in parsed.items():
        attrs = dict(entries[name])
        cls0 = ftypes.get(base)
        if cls0 is not None and (cls0.finn_inserts_itself or cls0.inserted_after_folding):
            notes.append(f"{name} ignored: FINN inserts and sizes its own FIFOs/width converters, this compiler "
                         "sizes its own from the cycle models")
            continue
        key = (_canonical(base), i)
        if key not in seq:
            have = sorted(j for (t, j) in seq if t == key[0])
            our = [seq[(key[0], j)][0] for j in have]
            raise FoldingError(
                f"folding config names FINN node {name!r}, but read in {convention} numbering this graph has "
                f"{len(have)} {key[0]} node(s) (FINN's {key[0]}_0..{len(have) - 1}: our "
                f"{', '.join(str(o) for o in our) or 'none'}); the file is for a different network")
        ours, step, cls = seq[key]
        if ours is None:
            notes.append(f"{name} ignored: FINN's hardware input quantizer; this compiler keeps it on the host")
            continue
        op_type_given = attrs.pop("op_type", None)
        if op_type_given is not None and str(op_type_given) not in (*cls.finn_op_names(), *cls.finn_legacy_names,
                                                                      cls.__name__) \
                and not (plus and finn_base_of(str(op_type_given)) == key[0]):
            raise FoldingError(f"folding config entry {name!r} says op_type={op_type_given!r}, but FINN's "
                               f"{key[0]}_{i} is our {ours} ({cls.__name__})")
        translated = _translate_finn_entry(name, ours, cls, step, plus, attrs, notes)
        for k, v in translated.items():
            prev = source.get((ours, k))
            if prev is not None and prev[1] != v:
                raise FoldingError(f"folding config entries {prev[0]!r} and {name!r} are both our {ours} but set "
                                   f"{k} to {prev[1]!r} and {v!r}")
            source[(ours, k)] = (name, v)
        out.setdefault(ours, {}).update(translated)
        mapped.append(f"{name}->{ours}")
    if mapped:
        notes.insert(0, f"FINN node names mapped onto ours by order and type in {convention} numbering: "
                        + ", ".join(mapped))
    return out


def finn_base_of(finn_op_type: str) -> str:
    """``<Op>_hls`` / ``<Op>_rtl`` -> ``<Op>``."""
    return re.sub(r"_(hls|rtl)$", "", finn_op_type)


def _translate_finn_entry(name: str, ours: str, cls: Any, step: int, plus: bool, attrs: Mapping[str, Any],
                          notes: list[str]) -> dict[str, Any]:
    """One FINN entry's attributes in our terms: renamed where FINN+ lowers our op to several
    nodes, FINN-only keys dropped with a note, the rest passed on (checked by set_folding)."""
    steps = cls.finn_lowering_steps() if plus else None
    rename = steps[step][1] if steps and len(steps) > step else None
    out: dict[str, Any] = {}
    dropped: list[str] = []
    declared = set(cls.get_nodeattr_types(cls.__new__(cls)))
    for k, v in attrs.items():
        if rename is not None:
            back = {f: o for o, f in rename.items()}
            if k in back:
                out[back[k]] = v
            else:
                dropped.append(k)
            continue
        if k in declared or k in cls.finn_folding_attrs:
            if k in declared:
                out[k] = v
            else:
                dropped.append(k)
        elif k in FINN_ONLY_KEYS or k in FINN_FOLDING_KEYS:
            dropped.append(k)
        else:
            close = difflib.get_close_matches(k, sorted(declared | set(FINN_FOLDING_KEYS)), n=3, cutoff=0.75)
            if close:
                raise FoldingError(f"{name} (our {ours}, {cls.__name__}): unknown attribute {k!r}; did you mean "
                                   f"{', '.join(close)}?")
            dropped.append(k)
    if dropped:
        notes.append(f"{name} (our {ours}): {', '.join(sorted(dropped))} ignored (FINN-only implementation "
                     "choice, not modelled by this compiler)")
    return out


def _drop_derived(node: NodeProto, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes FINN derives from the model (MW, MH, datatypes, accDataType, shapes) are
    checked, not applied: equal to the model's value -> dropped; different -> one clear error.
    Folding choices (the op's folding attributes and FINN's folding keys) pass through."""
    cls = _op(node.op_type)
    if cls is None:
        return dict(attrs)
    # weight_storage / codebook_bits are implementation choices a folding config may pin per layer
    # (the exported config writes them, `--weight-storage auto` keeps them): not derived
    folding_keys = set(FINN_FOLDING_KEYS) | set(STORAGE_KEYS) | set(cls.finn_folding_attrs) | set(cls.fold_dims)
    a = cls.declared_defaults()
    a.update(node_attrs(node))
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if k in folding_keys or k not in cls.get_nodeattr_types(cls.__new__(cls)):
            out[k] = v
            continue
        have = a.get(k)
        if have is None:
            continue  # the model does not set it (e.g. an accumulator not yet sized): nothing to check
        if _norm(have) != _norm(v):
            raise FoldingError(f"{node.name} ({node.op_type}): the folding config says {k}={v!r} but the model has "
                               f"{k}={have!r}; {k} is derived from the model, not a folding choice: remove it from "
                               "the file or compile the model it was written for")
    return out


def _norm(v: Any) -> Any:
    """Comparable form of an attribute value (lists of numbers, strings, scalars)."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def extract_folding_config(model: Any) -> dict[str, Any]:
    """The model's folding as a FINN folding config (with an empty "Defaults"); the stream
    plumbing inserted after folding is left out (its FIFO depths live in the neighbours'
    inFIFODepths/outFIFODepths, as in FINN)."""
    cfg: dict[str, Any] = {"Defaults": {}}
    for n in hw_nodes(model):
        cls = _op(n.op_type)
        if cls is not None and cls.inserted_after_folding:
            continue  # width converters/FIFOs: a fresh lowering has no such nodes
        a = node_attrs(n)
        ent = {k: a[k] for k in EXPORT_KEYS if k in a}
        if ent:
            cfg[n.name] = ent
    return cfg


def save_folding_config(model: Any, path: str | Path) -> Path:
    from codesign.atomic import write_json

    return write_json(path, extract_folding_config(model))


# --------------------------------------------------------------------------- auto folding

def target_cycles_for(target_fps: float, clock_ns: float) -> int:
    """FINN: floor(1e9 / (clk_ns * target_fps))."""
    if target_fps <= 0 or clock_ns <= 0:
        raise FoldingError(f"target FPS and clock must be positive (got {target_fps}, {clock_ns} ns)")
    return int(math.floor(1e9 / (clock_ns * target_fps)))


def fps_for(cycles: int, clock_ns: float) -> float:
    return 1e9 / (clock_ns * cycles) if cycles > 0 else float("inf")


@dataclass
class _Space:
    """Every folding choice of one node, costed once (arrays over the candidates)."""

    name: str
    op: str
    choices: list[dict[str, int]]
    cost: dict[str, np.ndarray]
    follow: tuple[str, str] | None = None  # (consumer name, attr) this node's attribute follows
    fattr: str | None = None
    dim: int = 1
    parallel: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: candidates whose input fold divides the dimension of the producer that follows it (no
    #: width converter between them); the others need one, chosen only when none of these meets
    #: the target
    compat: np.ndarray | None = None


def _consumer(model: Any, node: NodeProto) -> NodeProto | None:
    for o in node.output:
        c = model.find_consumer(o)
        if c is not None:
            return c
    return None


def _producer(model: Any, node: NodeProto) -> NodeProto | None:
    return model.find_producer(node.input[0]) if node.input else None


def _build_spaces(model: Any, mvau_wwidth_max: int, calibration: Calibration,
                  dsp_family: int, pinned: Mapping[str, Mapping[str, int]] | None = None) -> list[_Space]:
    """Cost every folding choice of every foldable node; `pinned` nodes keep the given values."""
    spaces: list[_Space] = []
    pinned = pinned or {}
    for n in hw_nodes(model):
        rule = fold_rules(n.op_type)
        if not rule:
            continue
        cls = _op(n.op_type)
        p = node_params(model, n)
        grids: dict[str, list[int]] = {}
        for fattr, (_, key) in rule.items():
            grids[fattr] = divisors(p[key])
        if n.name in pinned:
            check_node_folding(n, pinned[n.name])
            for k, v in pinned[n.name].items():
                if k in grids:
                    grids[k] = [int(v)]
        else:
            grids = cls.fold_candidates(p, grids, mvau_wwidth_max)
        prod = _producer(model, n) if n.name not in pinned else None
        pcls = _op(prod.op_type) if prod is not None else None
        fin = cls.in_fold_attr
        pdim = None
        if pcls is not None and pcls.follows_consumer and fin in grids:
            # the producer takes this input fold where it divides the producer's dimension;
            # other values (FINN's SetFolding allows them: SIMD only divides MW) need a width
            # converter from the producer's largest divisor below, so they are a fallback
            pdim = int(node_params(model, prod)[next(iter(pcls.fold_dims.values()))[1]])
        keys = list(grids)
        mesh = np.meshgrid(*[np.asarray(grids[k], np.int64) for k in keys], indexing="ij")
        flat = {k: m.ravel() for k, m in zip(keys, mesh)}
        q = dict(p)
        q.update(flat)
        est = calibration.apply(n.op_type, op_cost(q, dsp_family))
        choices = [{k: int(flat[k][i]) for k in keys} for i in range(len(flat[keys[0]]))]
        par = np.prod(np.stack([flat[k] for k in keys]), axis=0)
        sp = _Space(n.name, n.op_type, choices, {r: np.broadcast_to(np.asarray(est[r]), par.shape)
                                                 for r in CALIBRATED}, parallel=par)
        if pdim is not None:
            sp.compat = (pdim % flat[fin]) == 0
        if cls.follows_consumer:
            cons = _consumer(model, n)
            ccls = _op(cons.op_type) if cons is not None else None
            if ccls is not None and ccls.in_fold_attr in ccls.fold_dims:
                sp.follow = (cons.name, ccls.in_fold_attr)
                sp.fattr = keys[0]
                sp.dim = int(p[rule[keys[0]][1]])
        spaces.append(sp)
    return spaces


def _choose(spaces: list[_Space], target: int) -> tuple[dict[str, dict[str, int]], dict[str, int], list[str]]:
    """Cheapest choice per node meeting `target` cycles; consumers are decided before the
    producers that follow them. Returns (folding, chosen candidate index, infeasible nodes)."""
    by_name = {s.name: s for s in spaces}
    chosen: dict[str, dict[str, int]] = {}
    index: dict[str, int] = {}
    bad: list[str] = []
    order = [s for s in spaces if s.follow is None] + [s for s in spaces if s.follow is not None]
    # followers may chain (padding -> sliding window -> matrix unit): resolve in dependency order
    pending = list(order)
    while pending:
        progressed = False
        for s in list(pending):
            if s.follow is not None and s.follow[0] not in chosen and s.follow[0] in by_name:
                continue
            mask = s.cost["cycles"] <= target
            if s.follow is not None and s.follow[0] in chosen:
                base = chosen[s.follow[0]][s.follow[1]]
                base = max(d for d in divisors(s.dim) if d <= base) if base <= s.dim else s.dim
                vals = np.asarray([c[s.fattr] for c in s.choices])
                mask = mask & (vals >= base)
                if not mask.any():  # keep at least the follow value (its cycles are reported)
                    mask = vals == base if (vals == base).any() else vals >= base
                    if not (s.cost["cycles"][mask] <= target).any():
                        bad.append(s.name)
            elif not mask.any():
                bad.append(s.name)
                mask = s.cost["cycles"] == s.cost["cycles"].min()
            if s.compat is not None and (mask & s.compat).any():
                mask = mask & s.compat
            cand = np.nonzero(mask)[0]
            keys = (s.parallel[cand], s.cost["DSP"][cand], s.cost["BRAM_18K"][cand] + s.cost["URAM"][cand],
                    s.cost["LUT"][cand])
            i = int(cand[np.lexsort(keys)[0]])
            chosen[s.name] = s.choices[i]
            index[s.name] = i
            pending.remove(s)
            progressed = True
        if not progressed:  # a cycle of followers cannot happen in a chain; guard anyway
            raise FoldingError("folding dependencies could not be resolved")
    return chosen, index, bad


def _fixed_cost(model: Any, spaces: list[_Space], calibration: Calibration, dsp_family: int) -> dict[str, Any]:
    """Cost of HW nodes that folding does not touch (FIFOs, width converters)."""
    names = {s.name for s in spaces}
    from codesign.dataflow.cost import node_cost

    return {n.name: node_cost(model, n, calibration, dsp_family) for n in hw_nodes(model) if n.name not in names}


def _min_bottleneck(spaces: list[_Space]) -> tuple[int, str]:
    worst, who = 0, ""
    for s in spaces:
        m = int(s.cost["cycles"].min())
        if m > worst:
            worst, who = m, s.name
    return worst, who


@dataclass
class FoldResult:
    """What a folding search decided: the folding, its bottleneck and the achieved FPS."""

    folding: dict[str, dict[str, int]]
    target_cycles: int
    max_cycles: int
    max_cycles_node_name: str
    estimated_fps: float
    totals: dict[str, int]
    passes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def adapter_cost(model: Any, folding: Mapping[str, Mapping[str, Any]], calibration: Calibration | None = None,
                 dsp_family: int = DSP48, fifo_depth: int | None = None) -> dict[str, dict[str, Any]]:
    """Cost of the stream adapters (width converters, FIFOs) the build inserts for `folding`:
    the build's own passes (``insert_width_converters``, ``size_fifos``, ``insert_fifos``) on a
    copy of the model, so the search costs exactly what the build will contain."""
    import copy

    from codesign.dataflow.compiler import insert_fifos, insert_width_converters
    from codesign.dataflow.cost import node_cost
    from codesign.dataflow.fifo_sizing import size_fifos

    m = copy.deepcopy(model)
    set_folding(m, folding)
    before = {n.name for n in hw_nodes(m)}
    m = insert_width_converters(m)
    size_fifos(m, fifo_depth)
    m = insert_fifos(m, int(fifo_depth or 2))
    out: dict[str, dict[str, Any]] = {}
    for n in hw_nodes(m):
        cls = _op(n.op_type)
        if cls is not None and cls.inserted_after_folding and n.name not in before:
            out[n.name] = node_cost(m, n, calibration, dsp_family)
    return out


#: a callable folding -> {adapter node: cost} (``adapter_cost`` bound to a model), or None
Adapters = Any


def _with_adapters(res: FoldResult, adapters: Adapters, clock_ns: float) -> FoldResult:
    """`res` with the adapters' resources in the totals and their cycles in the bottleneck."""
    if adapters is None:
        return res
    extra = adapters(res.folding)
    totals = {r: int(res.totals[r] + sum(int(v[r]) for v in extra.values())) for r in RESOURCES}
    mx, who = res.max_cycles, res.max_cycles_node_name
    for k, v in extra.items():
        if int(v["cycles"]) > mx:
            mx, who = int(v["cycles"]), k
    return FoldResult(res.folding, res.target_cycles, mx, who, fps_for(mx, clock_ns), totals, res.passes)


def _plan(spaces: list[_Space], fixed: dict[str, Any], target: int, clock_ns: float,
          two_pass: bool) -> FoldResult:
    need, who = _min_bottleneck(spaces)
    fixed_max = max((c["cycles"] for c in fixed.values()), default=0)
    if need > target or fixed_max > target:
        if fixed_max > need:
            need, who = fixed_max, max(fixed, key=lambda k: fixed[k]["cycles"])
        raise FoldingError(
            f"target of {fps_for(target, clock_ns):.1f} FPS ({target} cycles at {clock_ns} ns) is infeasible: "
            f"{who} needs at least {need} cycles even fully parallel; best achievable: "
            f"{fps_for(need, clock_ns):.1f} FPS")
    chosen, index, bad = _choose(spaces, target)
    if bad:
        raise FoldingError(f"target {target} cycles not reachable for {', '.join(bad)} under the stream-width "
                           f"constraints; best achievable: {fps_for(need, clock_ns):.1f} FPS")
    passes = 1
    bottleneck = max(int(s.cost["cycles"][index[s.name]]) for s in spaces) if spaces else 0
    bottleneck = max(bottleneck, fixed_max)
    if two_pass and 0 < bottleneck < target:
        # second pass: re-target the achieved bottleneck so no node is faster than the pipeline
        # needs; with exhaustive cheapest choices this confirms the balance (no node can get
        # cheaper without lowering the achieved FPS)
        chosen2, index2, bad2 = _choose(spaces, bottleneck)
        if not bad2:
            chosen, index = chosen2, index2
        passes = 2
    by = {s.name: s for s in spaces}
    cyc = {n: int(by[n].cost["cycles"][i]) for n, i in index.items()}
    cyc.update({k: int(v["cycles"]) for k, v in fixed.items()})
    mx_name = max(cyc, key=cyc.get) if cyc else ""
    mx = cyc.get(mx_name, 0)
    totals = {r: int(sum(int(by[n].cost[r][i]) for n, i in index.items())
                     + sum(int(v[r]) for v in fixed.values())) for r in RESOURCES}
    return FoldResult(chosen, target, mx, mx_name, fps_for(mx, clock_ns), totals, passes)


def auto_fold(model: Any, target_fps: float, clock_ns: float, mvau_wwidth_max: int = 36,
              two_pass: bool = True, calibration: Calibration | None = None,
              dsp_family: int = DSP48, apply: bool = True, cost_adapters: bool = False,
              fifo_depth: int | None = None) -> FoldResult:
    """Fold every HW node for `target_fps` at `clock_ns` with the cheapest divisor choices.

    Raises FoldingError when the target cannot be met, stating the best achievable FPS.
    With apply=True the folding is written into the model's nodes; with cost_adapters the
    result's totals include the width converters and FIFOs the build will insert.
    """
    cal = calibration or IDENTITY
    target = target_cycles_for(target_fps, clock_ns)
    spaces = _build_spaces(model, mvau_wwidth_max, cal, dsp_family)
    res = _plan(spaces, _fixed_cost(model, spaces, cal, dsp_family), target, clock_ns, two_pass)
    if cost_adapters:
        res = _with_adapters(res, lambda f: adapter_cost(model, f, cal, dsp_family, fifo_depth), clock_ns)
    if apply:
        set_folding(model, res.folding)
    log.info("auto_fold: target %d cycles -> bottleneck %s at %d cycles (%.1f FPS)", target,
             res.max_cycles_node_name, res.max_cycles, res.estimated_fps)
    return res


def fold_around(model: Any, pinned: Mapping[str, Mapping[str, int]], clock_ns: float,
                calibration: Calibration | None = None, dsp_family: int = DSP48, apply: bool = True) -> FoldResult:
    """Keep the `pinned` nodes' folding (e.g. FINN's published folding of the weight layers) and
    give every other foldable node its cheapest choice that does not slow the pinned bottleneck
    down (followers take their consumer's input fold)."""
    cal = calibration or IDENTITY
    idx = _node_index(model)
    for name in pinned:
        if name not in idx:
            raise _unknown_node(name, list(idx))
    spaces = _build_spaces(model, 10 ** 9, cal, dsp_family, pinned)
    target = max(int(s.cost["cycles"].max()) for s in spaces if s.name in pinned)
    fixed = _fixed_cost(model, spaces, cal, dsp_family)
    need, _ = _min_bottleneck(spaces)
    res = _plan(spaces, fixed, max(target, need), clock_ns, two_pass=False)
    if apply:
        set_folding(model, res.folding)
    return res


def weight_layer_nodes(model: Any) -> list[NodeProto]:
    """The HW nodes that are a weight layer (op classes with ``layer_role == "weights"``), in order."""
    return [n for n in hw_nodes(model) if (_op(n.op_type) is not None and _op(n.op_type).layer_role == "weights")]


def pin_mvaus(model: Any, pe_simd: list[tuple[int, int]]) -> dict[str, dict[str, int]]:
    """{node name: {PE, SIMD}} for the weight-layer nodes in graph order (published foldings
    list them so)."""
    mv = weight_layer_nodes(model)
    if len(mv) != len(pe_simd):
        raise FoldingError(f"folding lists {len(pe_simd)} weight layers, the graph has {len(mv)}")
    return {n.name: {"PE": int(p), "SIMD": int(q)} for n, (p, q) in zip(mv, pe_simd)}


def max_fps_fold(model: Any, board: Any, clock_ns: float, util: float = 0.8, mvau_wwidth_max: int = 36,
                 calibration: Calibration | None = None, apply: bool = True, cost_adapters: bool = True,
                 fifo_depth: int | None = None) -> FoldResult:
    """The highest-FPS folding whose estimated resources fit `board` with every resource at
    most `util` of the board's total. Binary search over the achievable bottleneck cycle counts
    (the union of every node's candidate cycles), each step an auto-fold plus a cost check.

    The check counts everything the build will contain: with cost_adapters (default) the width
    converters and FIFOs the build inserts for the candidate folding (``adapter_cost``, the
    build's own passes; FIFO depths `fifo_depth` or sized), so the result fits as built."""
    from codesign.dataflow.boards import get_board, utilisation

    b = get_board(board)
    if not 0 < util <= 1:
        raise FoldingError(f"utilisation cap must be in (0, 1], got {util}")
    cal = calibration or IDENTITY
    spaces = _build_spaces(model, mvau_wwidth_max, cal, b.dsp_family)
    fixed = _fixed_cost(model, spaces, cal, b.dsp_family)
    lo_need, _ = _min_bottleneck(spaces)
    lo_need = max([lo_need] + [int(v["cycles"]) for v in fixed.values()])
    cands = sorted({int(c) for s in spaces for c in np.unique(s.cost["cycles"]) if c >= lo_need} | {lo_need})
    if not cands:
        raise FoldingError("no foldable HW nodes in the model")

    adapters = (lambda f: adapter_cost(model, f, cal, b.dsp_family, fifo_depth)) if cost_adapters else None

    def attempt(t: int) -> FoldResult | None:
        try:
            r = _plan(spaces, fixed, t, clock_ns, two_pass=False)
        except FoldingError:
            return None
        if not utilisation(r.totals, b, util)["fits"]:
            return None  # the adapters only add: no need to build them
        r = _with_adapters(r, adapters, clock_ns)
        return r if utilisation(r.totals, b, util)["fits"] else None

    best = attempt(cands[-1])
    if best is None:
        r = _with_adapters(_plan(spaces, fixed, cands[-1], clock_ns, two_pass=False), adapters, clock_ns)
        u = utilisation(r.totals, b, util)
        over = ", ".join(f"{k} {v['utilisation']:.0%}" for k, v in u["resources"].items() if v["utilisation"] > util)
        raise FoldingError(f"the model does not fit {b.name} under {util:.0%} even fully folded ({over}); "
                           f"slowest folding gives {r.estimated_fps:.1f} FPS")
    lo, hi = 0, len(cands) - 1  # cands[hi] fits; find the smallest index that fits
    while lo < hi:
        mid = (lo + hi) // 2
        r = attempt(cands[mid])
        if r is not None:
            hi, best = mid, r
        else:
            lo = mid + 1
    if apply:
        set_folding(model, best.folding)
    log.info("max_fps_fold: %s under %.0f%%: %.1f FPS (bottleneck %s, %d cycles)", b.name, util * 100,
             best.estimated_fps, best.max_cycles_node_name, best.max_cycles)
    return best


def folding_summary(model: Any, clock_ns: float, calibration: Calibration | None = None,
                    dsp_family: int = DSP48) -> FoldResult:
    """FoldResult describing the folding currently in the model (e.g. after a JSON config)."""
    check_folding(model)
    mc = model_cost(model, calibration, dsp_family)
    fold = {n: {k: v for k, v in node_attrs(nd).items() if k in ("PE", "SIMD")} for n, nd in _node_index(model).items()}
    return FoldResult(fold, mc["max_cycles"], mc["max_cycles"], mc["max_cycles_node_name"],
                      fps_for(mc["max_cycles"], clock_ns), mc["total"])


def insert_stream_adapters(model: Any, fifo_depth: int = 2) -> tuple[Any, list[str]]:
    """Insert width converters and FIFOs between the folded HW nodes with the lowering's
    passes (`codesign.dataflow.compiler.insert_stream_plumbing`: InsertDWC then InsertFIFO).

    Returns the model and the names of the passes applied (empty when not available).
    """
    try:
        from codesign.dataflow.compiler import insert_stream_plumbing
    except ImportError:
        log.warning("InsertDWC/InsertFIFO not available; graph left without width converters/FIFOs")
        return model, []
    return insert_stream_plumbing(model, fifo_depth=fifo_depth), ["InsertDWC", "InsertFIFO"]
