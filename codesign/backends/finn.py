"""The same model handed to a real FINN: a FINN+ build directory, and FINN+'s estimate flow on it.

This module writes what FINN consumes (the QONNX `model.onnx`, `dataflow_build_config.json`,
`folding_config.json`, a `build.py` using FINN+'s Python API) and, through
`codesign.backends.finn_plus` (FINN+ runs in its own environment as a subprocess), runs FINN+'s
estimate-only flow on it. The embedded backend's folding is translated to FINN's node names so
both backends build the same design point and their reports can be compared side by side. The
hardware steps (stitched IP, bitfile) need Vivado: `finn_command_hint` says what to run.

Node-name mapping (and its risk). FINN names its HW nodes itself after its own lowering:
`GiveUniqueNodeNames` numbers each op type in graph order (`<Op>_0`, `<Op>_1`, ...), and after
`step_specialize_layers` (FINN >= 0.10) the op type carries the implementation style
(`<Op>_hls_0`, `<Op>_rtl_0`, ...). Our nodes map by order and type (each op class declares
its FINN lowering, `HWCustomOp.finn_lowering_steps`: a max pool, say, becomes a sliding window
plus `Pool` in FINN+), counting the host-side nodes FINN+ puts in hardware (the input quantizer); each entry
is written under the plain and the `_hls`/`_rtl` names, because which style FINN picks depends on
its version and settings, and FINN only warns about names that do not exist. The risk: when
FINN's lowering yields a different number or order of nodes of a type than ours (e.g. a
standalone threshold node FINN keeps where we absorbed it, or the reverse), entries land on the
wrong node or nowhere, silently in FINN. `folding_name_map.json` records the mapping, and
`check_applied_folding()` compares FINN's folded model against it after a FINN build.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from codesign import atomic
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates"

# codesign op type -> FINN op type, the folding attributes FINN accepts per FINN op type, how
# FINN+ lowers each of our ops (in stream order) and the ops FINN creates itself later
# (step_set_fifo_depths, stitching): all asked of the op classes (one op = one place).
def _finn_tables() -> tuple[dict[str, str], dict[str, tuple[str, ...]],
                            dict[str, tuple[tuple[str, dict[str, str] | None], ...]], tuple[str, ...]]:
    from codesign.dataflow.ops import OPS

    op_type = {c.__name__: c.finn_op_names()[0] for c in OPS}
    attrs = {c.finn_op_names()[0]: tuple(c.finn_folding_attrs) for c in OPS}
    lowering: dict[str, tuple[tuple[str, dict[str, str] | None], ...]] = {}
    for c in OPS:
        steps = c.finn_lowering_steps()
        if steps:
            lowering[c.__name__] = steps
            for fop, amap in steps:
                if fop not in attrs and amap:
                    attrs[fop] = tuple(amap.values())
    inserts = tuple(c.__name__ for c in OPS if c.finn_inserts_itself)
    return op_type, attrs, lowering, inserts


FINN_OP_TYPE, FINN_FOLDING_ATTRS, FINN_LOWERING, FINN_INSERTS_ITSELF = _finn_tables()


def _finn_host_before() -> dict[str, str]:
    """Host-side op type -> the FINN op FINN+ 1.6.1 turns it into before our HW chain."""
    from codesign.dataflow.ops import OPS

    return {host: c.finn_op_names()[0] for c in OPS for host in c.finn_host_ops_before}
FINN_STYLE_SUFFIXES = ("", "_hls", "_rtl")
# FINN's board names (its part map keys) for our boards.
FINN_BOARD = {"Pynq-Z1": "Pynq-Z1", "Pynq-Z2": "Pynq-Z2", "Ultra96-V2": "Ultra96-V2", "ZCU104": "ZCU104",
              "ZCU102": "ZCU102", "KV260": "KV260_SOM"}
FINN_OUTPUTS = ["estimate_reports", "stitched_ip", "rtlsim_performance", "bitfile", "pynq_driver",
                "deployment_package"]
FINN_MVAU_WWIDTH_MAX = 36
HW_DOMAIN = "codesign.dataflow.ops"


# Host-side nodes of our graph FINN+ 1.6.1 puts in hardware: the float input quantizer becomes a
# HW op before our first HW node (the op class that FINN+ uses declares it,
# `finn_host_ops_before`), the output scale an ElementwiseMul/Add after the last.
FINN_HOST_TO_HW_BEFORE = _finn_host_before()
FINN_HOST_TO_HW_AFTER = {"Mul": "ElementwiseMul", "Add": "ElementwiseAdd"}


def finn_lowering(op_type: str) -> tuple[tuple[str, dict[str, str] | None], ...] | None:
    """FINN+'s node types for one of our HW op types, in order (None: FINN has no counterpart)."""
    return FINN_LOWERING.get(op_type)


def finn_base_type(finn_op_type: str) -> str:
    """`<Op>_hls` -> `<Op>`: FINN's op type without its implementation style."""
    return re.sub(r"_(hls|rtl)$", "", finn_op_type)


def host_nodes_finn_puts_in_hw(dataflow_onnx: Path | None) -> tuple[list[str], list[str]]:
    """FINN op types FINN+ adds before / after our HW chain for nodes we keep on the host."""
    if dataflow_onnx is None or not dataflow_onnx.is_file():
        return [], []
    import onnx

    g = onnx.load(str(dataflow_onnx), load_external_data=False).graph
    idx = [i for i, n in enumerate(g.node) if n.domain == HW_DOMAIN]
    if not idx:
        return [], []
    before = [FINN_HOST_TO_HW_BEFORE[n.op_type] for n in g.node[:idx[0]] if n.op_type in FINN_HOST_TO_HW_BEFORE]
    after = [FINN_HOST_TO_HW_AFTER[n.op_type] for n in g.node[idx[-1] + 1:] if n.op_type in FINN_HOST_TO_HW_AFTER]
    return before, after


def _node_attrs(dataflow_onnx: Path | None) -> dict[str, dict[str, Any]]:
    """Our HW nodes' attributes by name (empty without the graph)."""
    if dataflow_onnx is None or not dataflow_onnx.is_file():
        return {}
    import onnx
    from onnx import helper

    g = onnx.load(str(dataflow_onnx), load_external_data=False).graph
    out: dict[str, dict[str, Any]] = {}
    for n in g.node:
        if n.domain == HW_DOMAIN:
            a = {}
            for at in n.attribute:
                v = helper.get_attribute_value(at)
                a[at.name] = v.decode() if isinstance(v, bytes) else v
            out[n.name] = a
    return out


def _op_order(folding: dict[str, Any], dataflow_onnx: Path | None) -> list[tuple[str, str]]:
    """(our node name, our op type) for the folding's entries, in graph order."""
    if dataflow_onnx is not None and dataflow_onnx.is_file():
        import onnx

        g = onnx.load(str(dataflow_onnx), load_external_data=False).graph
        return [(n.name, n.op_type) for n in g.node if n.domain == HW_DOMAIN and n.name in folding]
    # No graph: node names are `<OpType>_<i>` (our compiler's GiveUniqueNodeNames), order by index.
    items = []
    for name in folding:
        if name == "Defaults":
            continue
        m = re.match(r"^([A-Za-z]+?)(?:_hls|_rtl)?_(\d+)$", name)
        if not m:
            raise CodesignError(f"folding entry {name!r}: cannot tell its op type without the dataflow graph; "
                                "pass the build's folding_config.json with dataflow.onnx beside it")
        items.append((int(m.group(2)), m.group(1), name))
    return [(name, op) for _, op, name in sorted(items)]


def translate_folding(folding: dict[str, Any], dataflow_onnx: Path | None = None
                      ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """codesign folding (keyed by our node names) -> FINN folding (keyed by FINN's), plus the name map.

    FINN numbers its nodes per op type in graph order, counting the nodes it adds itself (the
    input quantizer, a max pool's sliding window), so those advance the counters
    too; each entry is written under the plain and the _hls/_rtl names (FINN ignores the others).
    """
    from codesign.dataflow.ops import op_class

    finn_cfg: dict[str, Any] = {"Defaults": {}}
    name_map: dict[str, list[str]] = {}
    counters: dict[str, int] = {}
    graph_attrs = _node_attrs(dataflow_onnx)
    for fop in host_nodes_finn_puts_in_hw(dataflow_onnx)[0]:
        counters[fop] = counters.get(fop, 0) + 1
    for ours, op in _op_order(folding, dataflow_onnx):
        if op in FINN_INSERTS_ITSELF:
            log.info("folding entry %s (%s) skipped: FINN inserts and sizes its own FIFOs/width converters "
                     "after applying the folding (auto_fifo_depths)", ours, op)
            continue
        lowering = finn_lowering(op)
        if lowering is None:
            log.warning("folding entry %s (%s) has no FINN counterpart; skipped", ours, op)
            continue
        name_map[ours] = []
        # the op says what FINN+'s node(s) need, from the node's attributes and its folding
        per_step = op_class(op).finn_folding_for({**graph_attrs.get(ours, {}), **folding[ours]})
        for (fop, _), attrs in zip(lowering, per_step):
            idx = counters.get(fop, 0)
            counters[fop] = idx + 1
            names = [f"{fop}{suffix}_{idx}" for suffix in FINN_STYLE_SUFFIXES]
            for n in names:
                finn_cfg[n] = dict(attrs)
            name_map[ours] += names
    return finn_cfg, name_map


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.filters["pyrepr"] = repr
    return env


def write_finn_build_dir(qonnx_path: str | Path, out_dir: str | Path, board: str, clock_ns: float,
                         target_fps: int | None = None, folding: str | Path | dict | None = None) -> Path:
    """Write a FINN build directory for `qonnx_path`; returns `out_dir`.

    `folding` is the embedded backend's folding (a `folding_config.json` path, its `dataflow.onnx`
    beside it giving the op types, or the dict itself); without it FINN folds for `target_fps`.
    """
    from codesign.dataflow.boards import get_board

    qonnx_path, out_dir = Path(qonnx_path), Path(out_dir)
    if not qonnx_path.is_file():
        raise CodesignError(f"{qonnx_path}: QONNX model not found; run `codesign export` first")
    b = get_board(board)
    if b.name not in FINN_BOARD:
        raise CodesignError(f"board {b.name} has no FINN board name; FINN boards: {', '.join(FINN_BOARD)}")
    if not (0.5 <= float(clock_ns) <= 100.0):
        raise CodesignError(f"clock period {clock_ns} ns is out of range (0.5 .. 100 ns)")
    if target_fps is not None and int(target_fps) <= 0:
        raise CodesignError("target_fps must be a positive integer")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.atomic_write(out_dir / "model.onnx", lambda p: shutil.copyfile(qonnx_path, p))
    data = qonnx_path.with_name(qonnx_path.name + ".data")
    if data.is_file():  # dynamo export keeps weights beside the model
        atomic.atomic_write(out_dir / data.name, lambda p: shutil.copyfile(data, p))

    folding_dict: dict[str, Any] | None = None
    dataflow_onnx: Path | None = None
    if isinstance(folding, (str, Path)):
        folding_dict = atomic.read_json(folding)
        dataflow_onnx = Path(folding).with_name("dataflow.onnx")
    elif isinstance(folding, dict):
        folding_dict = folding

    cfg: dict[str, Any] = {
        "output_dir": f"output_{qonnx_path.stem}_{FINN_BOARD[b.name]}",
        "synth_clk_period_ns": float(clock_ns),
        "board": FINN_BOARD[b.name],
        "fpga_part": b.part,
        "shell_flow_type": "vivado_zynq",
        "generate_outputs": list(FINN_OUTPUTS),
        "mvau_wwidth_max": FINN_MVAU_WWIDTH_MAX,
        "auto_fifo_depths": True,
        "save_intermediate_models": True,
    }
    if target_fps is not None:
        cfg["target_fps"] = int(target_fps)
    if folding_dict is not None:
        finn_folding, name_map = translate_folding(folding_dict, dataflow_onnx)
        atomic.write_json(out_dir / "folding_config.json", finn_folding)
        atomic.write_json(out_dir / "folding_name_map.json", name_map)
        cfg["folding_config_file"] = "folding_config.json"
        if target_fps is not None:
            log.info("both a folding and target_fps given: FINN applies the folding after its FPS pass")
    elif target_fps is None:
        raise CodesignError("give a folding (the build's folding_config.json) or a target FPS, "
                            "otherwise FINN builds the slowest (fully folded) design")
    atomic.write_json(out_dir / "dataflow_build_config.json", cfg)
    atomic.write_text(out_dir / "build.py",
                      _env().get_template("driver/finn_build.py.j2").render(out_dir_name=out_dir.name))
    log.info("wrote FINN build directory %s (%s, %s, %.3f ns)", out_dir, cfg["board"], b.part, float(clock_ns))
    return out_dir


def finn_command_hint(finn_dir: str | Path) -> str:
    """The hardware steps (stitched IP, rtlsim, bitfile) for a user with Vivado and FINN+."""
    d = Path(finn_dir).resolve()
    return ("FINN+'s hardware steps need Vivado and Vitis HLS. With FINN+ installed (bash tools/setup_finn.sh, "
            "or pip install finn-plus==1.6.1) and both tools' settings64.sh sourced, run:\n"
            f"    cd {d} && finn build dataflow_build_config.json model.onnx\n"
            f"(or: cd {d} && python build.py). Without Vivado, `codesign finn --run` runs FINN+'s "
            "estimate steps here.")


def run_finn_build(finn_dir: str | Path, collect_to: str | Path | None = None, config: Any = None) -> Path:
    """FINN+'s estimate-only flow on the directory (in the FINN+ environment, as a subprocess);
    copies its report/*.json to `collect_to`. Returns FINN's output folder.

    The hardware steps need Vivado and are not run here (see `finn_command_hint`).
    """
    from codesign.backends.finn_plus import FinnConfig, estimate_builds

    finn_dir = Path(finn_dir)
    cfg = config or FinnConfig.from_env()
    res = estimate_builds([finn_dir], cfg)[0]
    if not res.get("ok"):
        raise CodesignError(f"FINN+ estimate build of {finn_dir} failed: {res.get('error')}")
    out = Path(res["output_dir"])
    if collect_to is not None:
        collect_reports(out, collect_to)
    return out


def collect_reports(finn_output_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy FINN's report/*.json next to the embedded backend's (e.g. BUILD/report/finn/)."""
    src, dest = Path(finn_output_dir) / "report", Path(dest)
    if not src.is_dir():
        raise CodesignError(f"{src}: FINN wrote no reports (did the build finish?)")
    copied = []
    for f in sorted(src.glob("*.json")):
        copied.append(atomic.atomic_write(dest / f.name, lambda p, s=f: shutil.copyfile(s, p)))
    log.info("collected %d FINN reports into %s", len(copied), dest)
    return copied


def check_applied_folding(finn_model_path: str | Path, finn_folding: dict[str, Any]) -> list[str]:
    """Names of the FINN folding entries that match no node of FINN's folded model.

    Run on `intermediate_models/step_apply_folding_config.onnx` after a FINN build: FINN only
    warns about such entries; this makes a mis-mapped folding visible (each entry exists under
    three style names, so an entry counts as applied when any of its names matches).
    """
    import onnx

    names = {n.name for n in onnx.load(str(finn_model_path), load_external_data=False).graph.node}
    missing = []
    groups: dict[str, list[str]] = {}
    for key in finn_folding:
        if key == "Defaults":
            continue
        base = re.sub(r"(_hls|_rtl)(?=_\d+$)", "", key)
        groups.setdefault(base, []).append(key)
    for base, keys in groups.items():
        if not any(k in names for k in keys):
            missing.append(base)
    return missing
