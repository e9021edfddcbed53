"""FINN's own RTL (finn-rtllib from the installed finn-plus wheel) for one MVAU layer, made
buildable by the open tools, next to ours.

Why: users compare our generated Verilog with FINN's hand-written RTL MVU (DSP packing),
binary-search thresholding and weight memstream. This module builds that layer the way FINN+
builds it for a Pynq-Z2, in a scratch folder, and exposes it as an `RTLDesign` with the same
stream ports as our `codesign_top`, so the same Verilator harness, the same golden outputs and
the same Yosys/nextpnr flows apply to both.

How FINN's side is made (nothing of FINN is copied into this repository):
- ``finn_rtl_codegen.py`` runs in the FINN+ interpreter and calls FINN+'s own ``generate_hdl``
  for an MVAU_rtl (mem_mode internal_decoupled, resType dsp) and a Thresholding_rtl node: the
  wrappers, the memstream wrapper, the weight file and the threshold files are FINN+'s.
- The library sources are copied from the installed package into the scratch folder and patched
  there (``ADAPTATIONS``; each patch must apply exactly once, else the build stops, so a new
  FINN+ release cannot silently change what is measured).
- A small stitching top (memstream -> MVU -> thresholding, AXI-lite ports tied off, the way
  FINN's IPI hierarchy connects them) is written here.

The three source adaptations, and why each keeps behaviour:
1. add_multi.sv: the constant function ``init_leaf_loads`` (and its array type) moves from inside
   the ``genTree`` generate block to module scope. It only reads the module parameter N, so its
   value is unchanged; Verilator 5.048 rejects a function declared in a generate block, and
   Yosys' slang frontend does too.
2. mvu.sv: the simulation-only DSP start-up watchdog (``#100ns`` in an initial block plus an
   assertion that only prints a warning) is wrapped in ``ifndef SYNTHESIS`` / ``ifndef VERILATOR``
   (synthesis reads with ``-D SYNTHESIS``; Verilator would need ``--timing`` for the delay, and
   its simulation uses the behavioural DSP model, which needs no recovery time). It drives no
   signal, so neither the netlist nor the simulated outputs change.
3. thresholding.sv: the per-stage choice ``Scope <= (SCOPE_REDUCE == 0) ? 1 : p.ptr[M-1:SN+1] < ...``
   becomes a generate-if on the constant SCOPE_REDUCE. When SCOPE_REDUCE is 0 the unused arm
   selects a reversed (empty) bit range, which slang refuses to elaborate ("unsynthesizable
   feature"); with the generate-if that arm is never elaborated. Same value in every case.
Plus, for synthesis only: blackbox definitions of the Xilinx ``LUT6_2`` and ``DSP48E1``
primitives FINN instantiates (Yosys' xc7 flow maps them onto its own cells of the same name),
and three ``read_slang`` options: ``--ignore-assertions`` (FINN's immediate assertions are checks,
not logic), ``--allow-use-before-declare`` (axilite.sv, instantiated by memstream_axi, uses
``snk_re`` a few lines before declaring it, which Vivado accepts) and ``-j 1`` (the WebAssembly
build cannot start threads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from codesign.errors import CodesignError, ToolMissingError
from codesign.hw.rtl import NodeRTL, RTLDesign, StreamSpec

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CODEGEN_SCRIPT = HERE / "finn_rtl_codegen.py"
FINN_TOP = "finn_layer_top"

# (library sub-path, file) in the order read_slang / Verilator need them (packages first)
LIB_FILES = [
    ("mvu", "mvu_pkg.sv"), ("mvu", "add_multi.sv"), ("mvu", "mvu.sv"), ("mvu", "replay_buffer.sv"),
    ("mvu", "mvu_vvu_axi.sv"), ("axi/hdl", "axilite.sv"), ("memstream/hdl", "memstream.sv"),
    ("memstream/hdl", "memstream_axi.sv"), ("thresholding/hdl", "thresholding.sv"),
    ("thresholding/hdl", "thresholding_axi.sv"),
]


class FinnRTLError(CodesignError):
    """FINN's RTL could not be generated or adapted."""


def finn_python(explicit: str | Path | None = None) -> Path:
    """The FINN+ interpreter, located by FinnConfig (explicit > $CODESIGN_FINN_PYTHON >
    <repo>/.venv-finn), falling back to the main worktree's .venv-finn when this checkout is a
    git worktree (the setup script installs it once, in the main checkout)."""
    from codesign.backends.finn_plus import FinnConfig

    cfg = FinnConfig.from_env(explicit)
    if cfg.python.is_file():
        return cfg.python
    if explicit is None:
        try:
            common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                    cwd=HERE, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            common = ""
        if common:
            cand = Path(common).parent / ".venv-finn" / "bin" / "python"
            if cand.is_file():
                return cand
    raise ToolMissingError(f"FINN+ environment not found ({cfg.python}); run `bash tools/setup_finn.sh` "
                           "or set CODESIGN_FINN_PYTHON")


def finn_rtllib(python: Path) -> Path:
    """finn-rtllib inside the installed finn-plus package (read only)."""
    site = sorted((python.parent.parent / "lib").glob("python3*/site-packages/finn/finn-rtllib"))
    if not site:
        raise ToolMissingError(f"finn-rtllib not found beside {python}; reinstall with tools/setup_finn.sh")
    return site[0]


# --------------------------------------------------------------------------- adaptations

def _patch_add_multi(text: str) -> str:
    m = re.search(r"\n(\t\t// Compute the count of decendents.*?\n)(\t\ttypedef int unsigned  leaf_load_t\[2\*N-1\];\n"
                  r"\t\tfunction leaf_load_t init_leaf_loads\(\);.*?endfunction : init_leaf_loads\n)", text, re.S)
    if not m:
        raise FinnRTLError("add_multi.sv: init_leaf_loads not found where expected (FINN+ version changed?)")
    func = m.group(2).replace("\n\t\t", "\n\t")[1:]
    text = text[:m.start(2)] + text[m.end(2):]
    anchor = "\tlocalparam int unsigned  L = $clog2(N);"
    if text.count(anchor) != 1:
        raise FinnRTLError("add_multi.sv: module-scope anchor not found")
    return text.replace(anchor, "\t" + func + "\n" + anchor)


def _patch_mvu(text: str) -> str:
    start = "\tif(1) begin : blkRecoveryWatch"
    end = "\tend : blkRecoveryWatch\n"
    if text.count(start) != 1 or text.count(end) != 1:
        raise FinnRTLError("mvu.sv: blkRecoveryWatch not found (FINN+ version changed?)")
    text = text.replace(start, "`ifndef SYNTHESIS\n`ifndef VERILATOR\n" + start)
    return text.replace(end, end + "`endif\n`endif\n")


def _patch_thresholding(text: str) -> str:
    old = "\t\t\t\t\tScope <= (SCOPE_REDUCE == 0)? 1 : p.ptr[M-1:SN+1] < 2**stage - SCOPE_REDUCE;\n"
    anchor = "\t\t\tlogic  Scope = 'x;\t// Comparison in scope of specified threshold count\n"
    if text.count(old) != 1 or text.count(anchor) != 1:
        raise FinnRTLError("thresholding.sv: the Scope choice was not found (FINN+ version changed?)")
    gen = (anchor + "\t\t\tuwire  scope_next;\n"
           "\t\t\tif(SCOPE_REDUCE == 0) begin : genScopeAll\n\t\t\t\tassign  scope_next = 1;\n\t\t\tend\n"
           "\t\t\telse begin : genScopeCmp\n"
           "\t\t\t\tassign  scope_next = p.ptr[M-1:SN+1] < 2**stage - SCOPE_REDUCE;\n\t\t\tend\n")
    return text.replace(anchor, gen).replace(old, "\t\t\t\t\tScope <= scope_next;\n")


ADAPTATIONS: dict[str, Any] = {
    "add_multi.sv": _patch_add_multi,
    "mvu.sv": _patch_mvu,
    "thresholding.sv": _patch_thresholding,
}

PRIMITIVE_STUBS = """\
// Blackbox stand-ins for the two Xilinx primitives FINN's MVU instantiates; Yosys' xc7 flow
// maps cells of these names onto its own primitives (synthesis only).
(* blackbox *)
module LUT6_2 #(parameter [63:0] INIT = 64'h0) (output O6, output O5, input I0, I1, I2, I3, I4, I5);
endmodule
(* blackbox *)
module DSP48E1 #(
    parameter integer ACASCREG = 1, ADREG = 1, ALUMODEREG = 1, AREG = 1, BCASCREG = 1, BREG = 1,
    CARRYINREG = 1, CARRYINSELREG = 1, CREG = 1, DREG = 1, INMODEREG = 1, MREG = 1, OPMODEREG = 1, PREG = 1,
    parameter A_INPUT = "DIRECT", B_INPUT = "DIRECT", USE_DPORT = "FALSE", USE_MULT = "MULTIPLY",
    USE_SIMD = "ONE48", AUTORESET_PATDET = "NO_RESET", SEL_MASK = "MASK", SEL_PATTERN = "PATTERN",
    USE_PATTERN_DETECT = "NO_PATDET",
    parameter [47:0] MASK = 48'h3fffffffffff, PATTERN = 48'h0,
    parameter [0:0] IS_CLK_INVERTED = 1'b0, IS_CARRYIN_INVERTED = 1'b0,
    parameter [3:0] IS_ALUMODE_INVERTED = 4'b0, parameter [4:0] IS_INMODE_INVERTED = 5'b0,
    parameter [6:0] IS_OPMODE_INVERTED = 7'b0
) (
    output [29:0] ACOUT, output [17:0] BCOUT, output CARRYCASCOUT, output [3:0] CARRYOUT,
    output MULTSIGNOUT, output OVERFLOW, output [47:0] P, output PATTERNBDETECT, output PATTERNDETECT,
    output [47:0] PCOUT, output UNDERFLOW,
    input [29:0] A, input [29:0] ACIN, input [3:0] ALUMODE, input [17:0] B, input [17:0] BCIN,
    input [47:0] C, input CARRYCASCIN, input CARRYIN, input [2:0] CARRYINSEL, input CEA1, CEA2, CEAD,
    input CEALUMODE, CEB1, CEB2, CEC, CECARRYIN, CECTRL, CED, CEINMODE, CEM, CEP, input CLK,
    input [24:0] D, input [4:0] INMODE, input MULTSIGNIN, input [6:0] OPMODE, input [47:0] PCIN,
    input RSTA, RSTALLCARRYIN, RSTALUMODE, RSTB, RSTC, RSTCTRL, RSTD, RSTINMODE, RSTM, RSTP
);
endmodule
"""

_TOP = jinja2.Template("""\
// Generated by benchmarks/finn_rtl.py: FINN's MVAU_rtl layer (memstream -> MVU{{ " -> thresholding" if thr }})
// stitched with the stream names of codesign_top; AXI-lite and set-select ports tied off.
module {{ top }} (
    input  wire ap_clk,
    input  wire ap_rst_n,
    input  wire [{{ s_width - 1 }}:0] s_axis_0_tdata,
    input  wire s_axis_0_tvalid,
    output wire s_axis_0_tready,
    output wire [{{ m_width - 1 }}:0] m_axis_0_tdata,
    output wire m_axis_0_tvalid,
    input  wire m_axis_0_tready
);
    wire [{{ w_width_ba - 1 }}:0] w_tdata;
    wire w_tvalid, w_tready;
    {{ mvau }}_memstream_wrapper weights (
        .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axilite_AWVALID(1'b0), .s_axilite_AWPROT(3'b0), .s_axilite_AWADDR('0), .s_axilite_WVALID(1'b0),
        .s_axilite_WDATA(32'b0), .s_axilite_WSTRB(4'b0), .s_axilite_BREADY(1'b0), .s_axilite_ARVALID(1'b0),
        .s_axilite_ARPROT(3'b0), .s_axilite_ARADDR('0), .s_axilite_RREADY(1'b0),
        .s_axilite_AWREADY(), .s_axilite_WREADY(), .s_axilite_BVALID(), .s_axilite_BRESP(),
        .s_axilite_ARREADY(), .s_axilite_RVALID(), .s_axilite_RRESP(), .s_axilite_RDATA(),
        .s_axis_0_tvalid(1'b0), .s_axis_0_tdata('0), .s_axis_0_tready(),
        .m_axis_0_tready(w_tready), .m_axis_0_tvalid(w_tvalid), .m_axis_0_tdata(w_tdata));
{% if thr %}
    wire [{{ acc_width_ba - 1 }}:0] acc_tdata;
    wire acc_tvalid, acc_tready;
{% endif %}
    {{ mvau }} mvu (
        .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
        .in1_V_TDATA(w_tdata[{{ w_width - 1 }}:0]), .in1_V_TVALID(w_tvalid), .in1_V_TREADY(w_tready),
        .in0_V_TDATA(s_axis_0_tdata), .in0_V_TVALID(s_axis_0_tvalid), .in0_V_TREADY(s_axis_0_tready),
{% if thr %}
        .out0_V_TDATA(acc_tdata), .out0_V_TVALID(acc_tvalid), .out0_V_TREADY(acc_tready));
    {{ thr }} thresholds (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axilite_AWVALID(1'b0), .s_axilite_AWADDR('0), .s_axilite_WVALID(1'b0), .s_axilite_WDATA(32'b0),
        .s_axilite_WSTRB(4'b0), .s_axilite_BREADY(1'b0), .s_axilite_ARVALID(1'b0), .s_axilite_ARADDR('0),
        .s_axilite_RREADY(1'b0),
        .s_axilite_AWREADY(), .s_axilite_WREADY(), .s_axilite_BVALID(), .s_axilite_BRESP(),
        .s_axilite_ARREADY(), .s_axilite_RVALID(), .s_axilite_RDATA(), .s_axilite_RRESP(),
        .in1_V_TREADY(), .in1_V_TVALID(1'b0), .in1_V_TDATA('0),
        .in0_V_TDATA(acc_tdata), .in0_V_TVALID(acc_tvalid), .in0_V_TREADY(acc_tready),
        .out0_V_TDATA(m_axis_0_tdata), .out0_V_TVALID(m_axis_0_tvalid), .out0_V_TREADY(m_axis_0_tready));
{% else %}
        .out0_V_TDATA(m_axis_0_tdata), .out0_V_TVALID(m_axis_0_tvalid), .out0_V_TREADY(m_axis_0_tready));
{% endif %}
endmodule
""", trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@dataclass
class FinnLayer:
    """FINN's layer in `out_dir`: the simulation design and the synthesis file list."""

    design: RTLDesign
    sim_files: list[str]
    synth_files: list[str]
    info: dict[str, Any]

    def source_hash(self) -> str:
        """Hash of every source and data file (the cache key's FINN half)."""
        h = hashlib.sha256()
        for f in sorted(set(self.synth_files + self.sim_files + self.design.data_files)):
            h.update(f.encode())
            h.update((self.design.out_dir / f).read_bytes())
        return h.hexdigest()[:16]


def build_finn_layer(out_dir: Path, *, MW: int, MH: int, PE: int, SIMD: int, idt: str, wdt: str, accdt: str,
                     odt: str | None, W: np.ndarray, T: np.ndarray | None, act_val: int,
                     in_stream: StreamSpec, out_stream: StreamSpec, exp_cycles: int,
                     python: Path | None = None, timeout: int = 600) -> FinnLayer:
    """Generate FINN's layer with FINN+'s code generation, adapt the library copy, stitch a top."""
    for what, dt in (("weights", wdt), ("input activations", idt)):
        bits = int(dt.lstrip("UINT").lstrip("INT") or 1)
        if bits < 2:  # mvu.sv's elaboration check: WEIGHT_WIDTH / ACTIVATION_WIDTH >= 2
            raise FinnRTLError(f"FINN's RTL MVU needs >= 2-bit weights and activations (finn-rtllib mvu.sv); "
                               f"{what} are {dt}: FINN builds such a layer as MVAU_hls, not MVAU_rtl")
    python = python or finn_python()
    lib = finn_rtllib(python)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    gen = out_dir / "gen"
    gen.mkdir(parents=True)
    params = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, idt=idt, wdt=wdt, accdt=accdt, odt=odt or accdt,
                  mvau_name="MVAU_0", thr_name="Thresholding_0", thr_pe=PE, actval=int(act_val))
    (gen / "params.json").write_text(json.dumps(params))
    arrays = {"W": np.asarray(W)} if T is None else {"W": np.asarray(W), "T": np.asarray(T)}
    np.savez(gen / "layer.npz", **arrays)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    (out_dir / "finn_tmp").mkdir()
    env.update(FINN_BUILD_DIR=str(out_dir / "finn_tmp"), FINN_SETTINGS=str(out_dir / "finn_settings.yaml"))
    res = subprocess.run([str(python), str(CODEGEN_SCRIPT), "params.json", "layer.npz", str(out_dir)],
                         cwd=gen, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise FinnRTLError(f"FINN+ code generation failed (rc {res.returncode}): {(res.stdout + res.stderr)[-2000:]}")
    info = json.loads((out_dir / "finn_layer.json").read_text())
    shutil.rmtree(out_dir / "finn_tmp", ignore_errors=True)
    ms = out_dir / f"{info['mvau']['top']}_memstream_wrapper.v"
    # the weight file path FINN+ writes is absolute; the WebAssembly Yosys sees only its cwd, and
    # every file of the layer lies in one folder, so the path is made relative (same file)
    ms.write_text(ms.read_text().replace(f'"{out_dir}/memblock.dat"', '"memblock.dat"'))
    lib_names = []
    for sub, name in LIB_FILES:
        text = (lib / sub / name).read_text()
        if name in ADAPTATIONS:
            text = ADAPTATIONS[name](text)
        (out_dir / name).write_text(text)
        lib_names.append(name)
    mv = info["mvau"]
    wrappers = [f"{mv['top']}_memstream_wrapper.v", f"{mv['top']}_wrapper.v"]
    thr = info.get("thr")
    if thr:
        wrappers.append(f"{thr['top']}.v")
    for w in wrappers:
        if not (out_dir / w).is_file():
            raise FinnRTLError(f"FINN+ did not write {w}")
    s_width, m_width = 8 * ((in_stream.width + 7) // 8), 8 * ((out_stream.width + 7) // 8)
    if s_width != mv["in_width"] or m_width != (thr or mv)["out_width"]:
        raise FinnRTLError(f"stream widths differ: ours {s_width}/{m_width}, FINN {mv['in_width']}/"
                           f"{(thr or mv)['out_width']}")
    (out_dir / f"{FINN_TOP}.sv").write_text(_TOP.render(
        top=FINN_TOP, s_width=s_width, m_width=m_width, mvau=mv["top"], thr=thr["top"] if thr else None,
        w_width=mv["w_width"], w_width_ba=mv["w_width"], acc_width_ba=mv["out_width"]))
    (out_dir / "primitive_stubs.v").write_text(PRIMITIVE_STUBS)
    data = sorted(p.name for p in out_dir.glob("*.dat"))
    sim_files = lib_names + wrappers + [f"{FINN_TOP}.sv"]
    node = NodeRTL(node_name="finn_layer", inst="finn_layer", op_type="MVAU", module=FINN_TOP, params=[],
                   in_stream=in_stream, out_stream=out_stream, files=[], exp_cycles=exp_cycles)
    design = RTLDesign(out_dir, FINN_TOP, sim_files, data, [node])
    return FinnLayer(design, sim_files, ["primitive_stubs.v"] + sim_files, info)
