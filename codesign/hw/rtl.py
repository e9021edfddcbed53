"""Render HW nodes (or a whole compiled dataflow graph) into behavioural Verilog.

Each HW op maps to one parametric core in `accel_templates/codesign_*.v` (the op class's
``template``) and renders itself (``generate_rtl``). Ops with weight or threshold memories get a
generated wrapper (`rom_node.v.j2`) holding one `$readmemh` ROM per
PE, so the memory sits in a plain `reg` array Yosys can infer as LUTRAM/BRAM. The top module
(`top.v.j2`) connects the nodes (a chain, or a branching graph with forks and joins) with
FINN's stitched-IP stream names. All generated text goes
through Jinja2; the numbers that matter for bit-exactness (threshold conversion for XNOR,
accumulator width from the exact range, clipping of thresholds) are computed here, once.

`RTLDesign.save()` writes `design.json` beside the Verilog so `codesign rtlsim` / `synth` can
work from `BUILD/rtl/` alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2

from codesign.atomic import write_json, write_text
from codesign.dataflow.ops import op_class
from codesign.dataflow.ops.rtlgen import (DType, HWNodeSpec, NodeRTL, StreamSpec, dtype, port_name,  # noqa: F401
                                          signed_bits)
from codesign.errors import UnsupportedError

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates"
HW_DOMAIN = "codesign.dataflow.ops"
DEFAULT_TOP = "codesign_top"

_VERILOG_KEYWORDS = set(
    """always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign default
    defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule endprimitive
    endspecify endtable endtask event for force forever fork function generate genvar highz0 highz1 if
    ifnone incdir include initial inout input instance integer join large liblist library localparam
    macromodule medium module nand negedge nmos nor noshowcancelled not notif0 notif1 or output parameter
    pmos posedge primitive pull0 pull1 pulldown pullup pulsestyle_onevent pulsestyle_ondetect rcmos real
    realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small
    specify specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1
    triand trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
    logic bit byte int shortint longint inside step first last type class interface package program
    property sequence clocking string void enum struct union typedef import export final""".split()
)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --------------------------------------------------------------------------- names and types

def sanitize_identifiers(names: list[str]) -> list[str]:
    """Legal, unique Verilog identifiers for `names` (order kept; collisions get _1, _2, ...).

    Lower-cased uniqueness check, because some tools treat file/module names case-insensitively.
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        s = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "n"
        if not re.match(r"[A-Za-z_]", s):
            s = "n_" + s
        if s in _VERILOG_KEYWORDS:
            s = s + "_"
        base, k = s, 1
        while s.lower() in seen:
            s = f"{base}_{k}"
            k += 1
        seen.add(s.lower())
        out.append(s)
    return out


# --------------------------------------------------------------------------- data model

@dataclass
class RTLDesign:
    """A rendered design in `out_dir`: Verilog files, data files, the stream interface."""

    out_dir: Path
    top: str
    verilog_files: list[str]
    data_files: list[str]
    nodes: list[NodeRTL]

    @property
    def in_stream(self) -> StreamSpec:
        return self.nodes[0].in_stream

    @property
    def out_stream(self) -> StreamSpec:
        return self.nodes[-1].out_stream

    @property
    def s_width(self) -> int:
        return 8 * ((self.in_stream.width + 7) // 8)

    @property
    def m_width(self) -> int:
        return 8 * ((self.out_stream.width + 7) // 8)

    def save(self) -> Path:
        d = {
            "top": self.top,
            "verilog_files": self.verilog_files,
            "data_files": self.data_files,
            "s_width": self.s_width,
            "m_width": self.m_width,
            "nodes": [asdict(n) for n in self.nodes],
        }
        return write_json(self.out_dir / "design.json", d)

    @classmethod
    def load(cls, rtl_dir: str | Path) -> "RTLDesign":
        rtl_dir = Path(rtl_dir)
        from codesign.atomic import read_json

        d = read_json(rtl_dir / "design.json")
        nodes = []
        for n in d["nodes"]:
            nodes.append(NodeRTL(
                node_name=n["node_name"], inst=n["inst"], op_type=n["op_type"], module=n["module"],
                params=[tuple(p) for p in n["params"]], in_stream=StreamSpec(**n["in_stream"]),
                out_stream=StreamSpec(**n["out_stream"]), files=n["files"], exp_cycles=n["exp_cycles"],
                extra_in=[StreamSpec(**x) for x in n.get("extra_in", [])],
                extra_out=[StreamSpec(**x) for x in n.get("extra_out", [])],
                inputs=list(n.get("inputs", [])), outputs=list(n.get("outputs", []))))
        return cls(rtl_dir, d["top"], d["verilog_files"], d["data_files"], nodes)


# --------------------------------------------------------------------------- per-op generators

class _Ctx:
    """The render context passed to each op's ``generate_rtl``: output folder, Jinja env, the
    top name (module prefix). The generators themselves live in the op modules
    (``codesign.dataflow.ops.<op>``, ``_gen_<op>``)."""

    def __init__(self, out_dir: Path, top: str) -> None:
        self.out_dir = out_dir
        self.top = top
        self.env = _env()
        self.data_files: list[str] = []

    def write_data(self, name: str, text: str) -> str:
        write_text(self.out_dir / name, text)
        self.data_files.append(name)
        return name

    def render(self, template: str, name: str, **kw: Any) -> str:
        write_text(self.out_dir / name, self.env.get_template(template).render(**kw))
        return name


# --------------------------------------------------------------------------- whole designs

def render_nodes(nodes: list[HWNodeSpec], out_dir: str | Path, top: str = DEFAULT_TOP) -> RTLDesign:
    """Render a chain of HW nodes into `out_dir` (cleared first) and stitch them into `top`."""
    if not nodes:
        raise UnsupportedError("no HW nodes to render")
    (top,) = sanitize_identifiers([top])
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    # render into a fresh sibling folder and swap it in at the end: a failure or a kill while
    # rendering leaves the previous, working RTL in place (files reference each other by name)
    out_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.new.", dir=final.parent))
    try:
        design = _render_into(nodes, out_dir, top)
        _swap_in(out_dir, final)
    finally:
        if out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
    design.out_dir = final
    log.info("rendered %d HW nodes into %s (top %s)", len(design.nodes), final, top)
    return design


def _swap_in(new: Path, final: Path) -> None:
    """Replace folder `final` by `new` with two renames (the old one is removed afterwards)."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        old.rmdir()
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _render_into(nodes: list[HWNodeSpec], out_dir: Path, top: str) -> RTLDesign:
    ctx = _Ctx(out_dir, top)
    insts = sanitize_identifiers([n.name for n in nodes])
    rendered: list[NodeRTL] = []
    for spec, inst in zip(nodes, insts):
        cls = op_class(spec.op_type, spec.name)
        if cls.template is None:
            raise UnsupportedError(f"{spec.name}: op type {spec.op_type!r} has no RTL template")
        rendered.append(cls.generate_rtl(spec, inst, ctx))
    stitch = _stitch(nodes, rendered)
    cores = []
    for n in rendered:
        for core in op_class(n.op_type).template_files():
            if core not in cores:
                cores.append(core)
                shutil.copyfile(TEMPLATE_DIR / core, out_dir / core)
    design = RTLDesign(out_dir, top, [], ctx.data_files, rendered)
    ctx.render("top.v.j2", f"{top}.v", top=top, nodes=stitch, s_width=design.s_width, m_width=design.m_width)
    design.verilog_files = cores + [f for n in rendered for f in n.files] + [f"{top}.v"]
    design.save()
    return design


def _stitch(specs: list[HWNodeSpec], rendered: list[NodeRTL]) -> list[dict[str, Any]]:
    """How the top connects the nodes: per node its input ports (each fed by one producer port
    or the top's s_axis_0) and output ports (each read by one consumer port or m_axis_0).

    Nodes without tensor names (``HWNodeSpec.inputs`` empty) form a chain in list order; with
    them the nodes may branch (a fork's two outputs, a join's two inputs). Every stream has
    exactly one producer and one consumer, the widths must agree, and exactly one stream enters
    (the first node's input) and one leaves (the last node's output)."""
    chain = not any(sp.inputs for sp in specs)
    for i, (sp, n) in enumerate(zip(specs, rendered)):
        if chain:
            n.inputs, n.outputs = [f"s{i}"], [f"s{i + 1}"]
        else:
            n.inputs, n.outputs = list(sp.inputs), list(sp.outputs)
        if len(n.inputs) != len(n.in_streams) or len(n.outputs) != len(n.out_streams):
            raise UnsupportedError(f"{n.node_name}: {len(n.inputs)} input / {len(n.outputs)} output tensors, but its "
                                   f"RTL has {len(n.in_streams)} / {len(n.out_streams)} stream ports")
    made: dict[str, tuple[NodeRTL, int]] = {}
    for n in rendered:
        for j, t in enumerate(n.outputs):
            made[t] = (n, j)
    read: dict[str, tuple[NodeRTL, int]] = {}
    for n in rendered:
        for k, t in enumerate(n.inputs):
            if t in read:
                raise UnsupportedError(f"stream {t} feeds both {read[t][0].node_name} and {n.node_name}: a stream has "
                                       "one consumer (a fork node is needed)")
            read[t] = (n, k)
    feeds = [t for n in rendered for t in n.inputs if t not in made]
    outs = [t for n in rendered for t in n.outputs if t not in read]
    if feeds != [rendered[0].inputs[0]] or outs != [rendered[-1].outputs[0]]:
        raise UnsupportedError(f"the HW nodes must form one graph from one input stream to one output stream "
                               f"(inputs {feeds}, outputs {outs})")

    def wire(n: NodeRTL, j: int) -> str:
        return f"{n.inst}_out" if j == 0 else f"{n.inst}_out{j}"

    out: list[dict[str, Any]] = []
    for n in rendered:
        ins = []
        for k, (t, s) in enumerate(zip(n.inputs, n.in_streams)):
            if t in made:
                p, j = made[t]
                if p.out_streams[j].width != s.width:
                    raise UnsupportedError(
                        f"stream width mismatch {p.node_name} -> {n.node_name}: {p.out_streams[j].width} != {s.width} "
                        "bits (a width converter is needed between them)")
                ins.append({"port": port_name("in", k), "src": wire(p, j), "width": s.width, "top": False,
                            "ready": f"{n.inst}_in{k}_tready"})
            else:
                ins.append({"port": port_name("in", k), "src": "s_axis_0", "width": s.width, "top": True,
                            "ready": f"{n.inst}_in{k}_tready"})
        outs_ = [{"port": port_name("out", j), "wire": wire(n, j), "width": s.width, "top": False}
                 for j, s in enumerate(n.out_streams)]
        out.append({"node_name": n.node_name, "op_type": n.op_type, "module": n.module, "params": n.params,
                    "inst": n.inst, "ins": ins, "outs": outs_})
    for entry, n in zip(out, rendered):
        for o, t in zip(entry["outs"], n.outputs):
            if t in read:
                c, k = read[t]
                o["dst_ready"] = f"{c.inst}_in{k}_tready"
            else:
                o["dst_ready"] = "m_axis_0_tready"
                o["top"] = True
    return out


def hw_node_specs(model: Any) -> list[HWNodeSpec]:
    """The contiguous chain of HW nodes of a compiled dataflow graph (a qonnx ModelWrapper)."""
    from onnx import helper

    specs = []
    for node in model.graph.node:
        if node.domain != HW_DOMAIN:
            continue
        attrs: dict[str, Any] = {}
        try:
            from qonnx.custom_op.registry import getCustomOp

            inst = getCustomOp(node)
            for name in inst.get_nodeattr_types():
                try:
                    attrs[name] = inst.get_nodeattr(name)
                except Exception:  # attribute without a default and not set
                    pass
        except Exception as exc:  # op classes not importable: fall back to the raw attributes
            log.debug("getCustomOp(%s) failed (%s); reading raw attributes", node.name, exc)
        for at in node.attribute:
            if at.name not in attrs:
                v = helper.get_attribute_value(at)
                attrs[at.name] = v.decode() if isinstance(v, bytes) else v
        inits = {}
        cls = op_class(node.op_type, node.name)
        for key, tensor in zip(cls.rtl_inputs, list(node.input)[cls.n_stream_inputs:]):
            if tensor:
                inits[key] = model.get_initializer(tensor)
        specs.append(HWNodeSpec(node.name or node.op_type, node.op_type, attrs, inits,
                                inputs=list(node.input)[: cls.n_stream_inputs], outputs=list(node.output)))
    return specs


def render_model(model: Any, out_dir: str | Path, top: str = DEFAULT_TOP) -> RTLDesign:
    """Render the HW part of a compiled dataflow graph (ModelWrapper or path) into `out_dir`."""
    if isinstance(model, (str, Path)):
        from qonnx.core.modelwrapper import ModelWrapper

        model = ModelWrapper(str(model))
    specs = hw_node_specs(model)
    if not specs:
        raise UnsupportedError(f"the graph has no nodes of domain {HW_DOMAIN}")
    return render_nodes(specs, out_dir, top)


def design_summary(design: RTLDesign) -> str:
    """One line per node, for logs."""
    return "\n".join(f"{n.inst}: {n.op_type} in {n.in_width}b x{n.in_stream.words_per_frame} "
                     f"out {n.out_width}b x{n.out_stream.words_per_frame}" for n in design.nodes)


__all__ = ["DType", "HWNodeSpec", "NodeRTL", "RTLDesign", "StreamSpec", "dtype", "hw_node_specs",
           "render_model", "render_nodes", "sanitize_identifiers", "signed_bits", "design_summary"]
