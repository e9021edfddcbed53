"""Vivado project for a compiled accelerator: IP packaging, block design, bitstream, PYNQ deploy folder.

`write_vivado_project(build_dir, board, out_dir)` turns a build folder (`dataflow.onnx`,
`rtl/*.v` with top `codesign_top`, `report/*.json`) into a folder a Vivado user builds with one
command (`./build.sh`), laid out as:

    NAME/build.sh, build.tcl          entry points (batch Vivado)
    NAME/tcl/package_ip.tcl           RTL -> IP (ipx::package_project)
    NAME/tcl/block_design.tcl         PS + AXI DMA + width converters + accelerator, addresses
    NAME/tcl/build_bitstream.tcl      synth, impl, write_bitstream, copy .bit/.hwh
    NAME/rtl/                         the accelerator RTL (copied) + the TLAST generator
    NAME/deploy/bitfile/NAME.{bit,hwh}  (written by the build)
    NAME/deploy/driver/               the PYNQ driver package (codesign.hw.driver)
    NAME/deploy_info.json             what was generated, for humans and tools

Why the shape: Vivado is not installable here, so the TCL is the product; every TCL file comes
from a Jinja2 template and every value placed in it passes `tcl_word` (a whitelist), so a name
with a space or a quote is rejected here instead of producing a script that breaks in Vivado.
The relative layout (`[info script]`) keeps the folder movable: nothing absolute is baked in.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign import atomic
from codesign.errors import CodesignError
from codesign.hw import driver as drv

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates"
TOP_MODULE = "codesign_top"
BD_NAME = "codesign_bd"
IP_VENDOR = "codesign.local"
IP_LIBRARY = "user"
IP_VERSION = "1.0"
TLAST_MODULE = "codesign_axis_tlast"
VIVADO_VERSION_HINT = "2022.2 or newer (tested flow of FINN v0.10 uses 2022.2)"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_TCL_SAFE_RE = re.compile(r"^[A-Za-z0-9_.:/*+-]+$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HDL_EXT = {".v", ".sv"}
_MEM_EXT = {".dat", ".mem", ".hex", ".coe"}
_TB_RE = re.compile(r"^(tb_.*|.*_tb\.s?v|.*harness.*)$")


@dataclass(frozen=True)
class DeployBoard:
    """What the block design needs beyond the part: PS kind, HP width, board-file pattern, addresses."""

    name: str
    part: str
    family: str          # "zynq7000" | "zynq_us+"
    hp_width_bits: int
    board_part_glob: str  # matched with get_board_parts; board files are optional
    ctrl_base: int        # base of the PS master port's address window
    default_clock_ns: float
    ps_fallback: tuple[tuple[str, str], ...] = ()  # PS CONFIG.* used when no board files are installed

    @property
    def ps7(self) -> bool:
        return self.family == "zynq7000"


# Board files (Vivado board store) by board name; the PS preset comes from them when installed.
_BOARD_PART_GLOB = {
    "Pynq-Z1": "*:pynq-z1:*", "Pynq-Z2": "*:pynq-z2:*", "Ultra96-V2": "*:ultra96v2:*",
    "ZCU104": "*:zcu104:*", "ZCU102": "*:zcu102:*", "KV260": "*:kv260_som:*",
}
# Without board files the Zynq-7000 PS still needs its DDR; Pynq-Z1/Z2 carry MT41K256M16 RE-125
# on a 16-bit x 2 bus (TUL/Digilent board files). UltraScale+ boards rely on their board files.
_PYNQ_PS7_FALLBACK = (
    ("PCW_UIPARAM_DDR_PARTNO", "MT41K256M16 RE-125"),
    ("PCW_UIPARAM_DDR_BUS_WIDTH", "16 Bit"),
    ("PCW_PRESET_BANK1_VOLTAGE", "LVCMOS 1.8V"),
    ("PCW_UART0_PERIPHERAL_ENABLE", "1"),
)


def deploy_board(name: str) -> DeployBoard:
    """Board lookup through `codesign.dataflow.boards` (unknown names list the known boards)."""
    from codesign.dataflow.boards import get_board

    b = get_board(name)
    fam = b.family
    if fam not in ("zynq7000", "zynq_us+"):
        raise CodesignError(f"board {b.name}: family {fam} has no Vivado block design template "
                            "(supported: Zynq-7000, Zynq UltraScale+)")
    return DeployBoard(
        name=b.name, part=b.part, family=fam, hp_width_bits=int(b.axi_hp_width),
        board_part_glob=_BOARD_PART_GLOB.get(b.name, "*:" + b.name.lower() + ":*"),
        ctrl_base=0x40000000 if fam == "zynq7000" else 0xA0000000,
        default_clock_ns=float(b.default_clock_ns),
        ps_fallback=_PYNQ_PS7_FALLBACK if b.name in ("Pynq-Z1", "Pynq-Z2") else (),
    )


def tcl_word(value: Any) -> str:
    """One TCL word for a template value: numbers as is, strings brace-quoted after a whitelist check.

    The whitelist (letters, digits, `_ . : / * + -`) excludes whitespace, quotes, brackets, `$`,
    `;`, braces and backslashes: nothing that TCL would substitute or split.
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    s = str(value)
    if not _TCL_SAFE_RE.match(s):
        raise CodesignError(f"refusing to put {s!r} into a TCL script: only letters, digits and _ . : / * + - "
                            "are allowed (spaces, quotes, brackets or $ would break or inject TCL)")
    return "{" + s + "}"


def tcl_text(value: str) -> str:
    """A brace-quoted TCL word that may contain spaces (fixed Vivado property values such as
    "MT41K256M16 RE-125"); braces, brackets, quotes, `$` and backslashes are still refused."""
    s = str(value)
    if not re.match(r"^[A-Za-z0-9_.:/*+ -]+$", s):
        raise CodesignError(f"refusing to put {s!r} into a TCL script (unsafe characters)")
    return "{" + s + "}"


def check_project_name(name: str) -> str:
    """Vivado project / bitfile names: a letter, then letters, digits, underscores (max 64)."""
    if not _NAME_RE.match(name or ""):
        raise CodesignError(
            f"project name {name!r} is not usable: use a letter followed by letters, digits or underscores "
            "(no spaces, quotes, dots or dashes; at most 64 characters), e.g. --out vivado_projects/tfc_w2a2")
    return name


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["tcl"] = tcl_word
    env.filters["tcl_text"] = tcl_text
    env.filters["hex32"] = lambda v: "0x%08X" % int(v)
    return env


def clock_ns_from_build(build_dir: Path) -> float | None:
    """The build's clock period from its reports, or None when the reports do not say."""
    for name in ("estimate_network_performance.json", "rtlsim_performance.json"):
        p = build_dir / "report" / name
        if not p.is_file():
            continue
        rep = atomic.read_json(p)
        for key in ("synth_clk_period_ns", "clk_ns", "clock_ns"):
            if rep.get(key):
                return float(rep[key])
        for key in ("fclk[mhz]", "fclk_mhz"):
            if rep.get(key):
                return 1000.0 / float(rep[key])
        # FINN's keys: throughput = f_clk / max_cycles, so f_clk = throughput * max_cycles.
        if rep.get("estimated_throughput_fps") and rep.get("max_cycles"):
            return round(1e9 / (float(rep["estimated_throughput_fps"]) * float(rep["max_cycles"])), 6)
    return None


_PORT_RE = r"(?:input|output)\s+(?:wire\s+|reg\s+|logic\s+)?(?:\[\s*(\d+)\s*:\s*0\s*\]\s*)?{port}\b"


def _top_stream_widths(rtl_files: list[Path]) -> tuple[int | None, int | None]:
    """TDATA widths of `codesign_top`'s s_axis_0/m_axis_0 from its Verilog (None if parameterised)."""
    for f in rtl_files:
        text = f.read_text(errors="replace")
        m = re.search(r"\bmodule\s+" + TOP_MODULE + r"\b(.*?)\bendmodule\b", text, re.S)
        if not m:
            continue
        body = m.group(1)
        widths = []
        for port in ("s_axis_0_tdata", "m_axis_0_tdata"):
            pm = re.search(_PORT_RE.format(port=port), body)
            if not pm and not re.search(r"\b" + port + r"\b", body):
                raise CodesignError(f"{f}: module {TOP_MODULE} has no port {port} (docs/contracts.md: "
                                    "s_axis_0_*/m_axis_0_* stream ports)")
            widths.append(int(pm.group(1)) + 1 if pm and pm.group(1) else (1 if pm else None))
        for port in ("ap_clk", "ap_rst_n", "s_axis_0_tvalid", "s_axis_0_tready", "m_axis_0_tvalid", "m_axis_0_tready"):
            if not re.search(r"\b" + port + r"\b", body):
                raise CodesignError(f"{f}: module {TOP_MODULE} has no port {port} (docs/contracts.md)")
        return widths[0], widths[1]
    raise CodesignError(f"no Verilog file defines module {TOP_MODULE}; run `codesign compile ... --rtl` again")


def _collect_rtl(build_dir: Path) -> tuple[list[Path], list[Path]]:
    rtl_dir = build_dir / "rtl"
    if not rtl_dir.is_dir() or not any(rtl_dir.glob("*.v")) and not any(rtl_dir.glob("*.sv")):
        raise CodesignError(f"{build_dir} has no RTL ({rtl_dir}/*.v); generate it with "
                            f"`codesign compile MODEL.onnx --out {build_dir} --rtl` first")
    hdl, mem = [], []
    for f in sorted(rtl_dir.iterdir()):
        if not f.is_file():
            continue
        ext = f.suffix.lower()
        if ext not in _HDL_EXT and ext not in _MEM_EXT:
            continue
        if not _FILE_RE.match(f.name):
            raise CodesignError(f"{f}: file name not usable in TCL (letters, digits, _ . - only); rename it")
        if _TB_RE.match(f.name.lower()):
            log.debug("skipping simulation-only file %s", f.name)
            continue
        (hdl if ext in _HDL_EXT else mem).append(f)
    if f"{TLAST_MODULE}.v" in {f.name for f in hdl}:
        raise CodesignError(f"{rtl_dir}/{TLAST_MODULE}.v clashes with the deploy flow's own module name")
    return hdl, mem


def write_vivado_project(build_dir: str | Path, board: str, out_dir: str | Path,
                         clock_ns: float | None = None, name: str | None = None) -> Path:
    """Write the self-contained Vivado project folder; returns `out_dir`.

    `clock_ns` overrides the build's reported clock; `name` (default: the folder name) names the
    Vivado project and the `.bit`/`.hwh` files and must be a plain identifier.
    """
    build_dir, out_dir = Path(build_dir), Path(out_dir)
    name = check_project_name(name or out_dir.name)
    b = deploy_board(board)
    if not build_dir.is_dir():
        raise CodesignError(f"build folder {build_dir} not found; run `codesign compile ... --out {build_dir} --rtl`")
    hdl, mem = _collect_rtl(build_dir)
    v_in, v_out = _top_stream_widths(hdl)
    onnx_path = build_dir / "dataflow.onnx"
    if not onnx_path.is_file():
        raise CodesignError(f"{onnx_path} not found: the driver needs the compiled graph; "
                            f"run `codesign compile MODEL.onnx --out {build_dir} --rtl`")
    iod = drv.extract_io_shape_dict(onnx_path)
    for label, v, d in (("s_axis_0", v_in, iod["in_width_bits"]), ("m_axis_0", v_out, iod["out_width_bits"])):
        if v is not None and v != d:
            raise CodesignError(f"{label}_tdata is {v} bits in the RTL but the dataflow graph says {d} bits "
                                "(fold x datatype, padded to bytes): the RTL is stale, regenerate it with --rtl")
    if clock_ns is None:
        clock_ns = clock_ns_from_build(build_dir)
        if clock_ns is None:
            raise CodesignError(f"{build_dir}/report/estimate_network_performance.json does not give the clock; "
                                "pass --clock-ns (e.g. --clock-ns 10 for 100 MHz)")
    if not (0.5 <= clock_ns <= 100.0):
        raise CodesignError(f"clock period {clock_ns} ns is out of range (0.5 .. 100 ns)")
    fclk_mhz = round(1000.0 / clock_ns, 3)
    fclk_str = ("%.3f" % fclk_mhz).rstrip("0").rstrip(".")

    out_dir.mkdir(parents=True, exist_ok=True)
    if " " in str(out_dir.resolve()):
        log.warning("%s contains spaces: the scripts cope, but Vivado itself handles such paths badly",
                    out_dir.resolve())
    rtl_out = out_dir / "rtl"
    rtl_out.mkdir(exist_ok=True)
    for f in hdl + mem:
        atomic.atomic_write(rtl_out / f.name, lambda p, src=f: shutil.copyfile(src, p))

    hp_bytes = b.hp_width_bits // 8
    ctx = {
        "name": name, "bd_name": BD_NAME, "top": TOP_MODULE, "board": b, "part": b.part,
        "ps7": b.ps7, "fclk_mhz": fclk_str, "clock_ns": clock_ns,
        "hp_width_bits": b.hp_width_bits, "hp_bytes": hp_bytes,
        "in_bytes": iod["in_width_bits"] // 8, "out_bytes": iod["out_width_bits"] // 8,
        "out_words_per_frame": iod["out_words_per_frame"],
        "hdl_files": [f.name for f in hdl], "mem_files": [f.name for f in mem],
        "ip_vendor": IP_VENDOR, "ip_library": IP_LIBRARY, "ip_version": IP_VERSION,
        "ip_vlnv": f"{IP_VENDOR}:{IP_LIBRARY}:{TOP_MODULE}:{IP_VERSION}",
        "tlast_module": TLAST_MODULE, "dma": drv.DMA_NAME, "gpio": drv.FRAMES_GPIO_NAME,
        "dma_addr": b.ctrl_base + 0x00400000 if b.ps7 else b.ctrl_base,
        "gpio_addr": b.ctrl_base + 0x01200000 if b.ps7 else b.ctrl_base + 0x00010000,
        "vivado_version": VIVADO_VERSION_HINT,
    }
    env = _env()
    outputs = {
        "tcl/package_ip.tcl": "vivado/package_ip.tcl.j2",
        "tcl/block_design.tcl": "vivado/block_design.tcl.j2",
        "tcl/build_bitstream.tcl": "vivado/build_bitstream.tcl.j2",
        "build.tcl": "vivado/build.tcl.j2",
        "build.sh": "vivado/build.sh.j2",
        f"rtl/{TLAST_MODULE}.v": "vivado/codesign_axis_tlast.v.j2",
    }
    for rel, tpl in outputs.items():
        atomic.write_text(out_dir / rel, env.get_template(tpl).render(**ctx))
    (out_dir / "build.sh").chmod(0o755)

    deploy = out_dir / "deploy"
    (deploy / "bitfile").mkdir(parents=True, exist_ok=True)
    drv.write_driver_package(iod, deploy / "driver", bitfile_name=f"{name}.bit", model_name=name)
    info = {
        "name": name, "board": b.name, "part": b.part, "family": b.family, "clock_ns": clock_ns,
        "fclk_mhz": fclk_mhz, "top_module": TOP_MODULE, "ip_vlnv": ctx["ip_vlnv"], "block_design": BD_NAME,
        "bitfile": f"deploy/bitfile/{name}.bit", "hwh": f"deploy/bitfile/{name}.hwh",
        "hp_width_bits": b.hp_width_bits, "s_axis_0_width_bits": iod["in_width_bits"],
        "m_axis_0_width_bits": iod["out_width_bits"],
        "addresses": {drv.DMA_NAME: ctx["dma_addr"], drv.FRAMES_GPIO_NAME: ctx["gpio_addr"]},
        "source_build": str(build_dir.resolve()),
        "rtl_files": ctx["hdl_files"] + ctx["mem_files"],
    }
    atomic.write_json(out_dir / "deploy_info.json", info)
    log.info("wrote Vivado project %s for %s (%s, %.3f MHz); build it with %s/build.sh",
             out_dir, b.name, b.part, fclk_mhz, out_dir)
    return out_dir


def run_build(project_dir: str | Path, jobs: int = 4) -> int:
    """Run `build.sh` (Vivado batch) if Vivado is on PATH; otherwise explain what to do."""
    import os
    import subprocess

    project_dir = Path(project_dir)
    if shutil.which("vivado") is None:
        from codesign.errors import ToolMissingError

        raise ToolMissingError(f"vivado is not on PATH: install Vivado {VIVADO_VERSION_HINT}, run "
                               f"`source <Xilinx>/Vivado/<version>/settings64.sh`, then `{project_dir}/build.sh`")
    log.info("running Vivado in batch mode (this takes tens of minutes)")
    return subprocess.call(["bash", str(project_dir / "build.sh")], env={**os.environ, "JOBS": str(jobs)})


def describe(project_dir: str | Path) -> str:
    """Short human summary of a generated project (used by the CLI)."""
    info = json.loads((Path(project_dir) / "deploy_info.json").read_text())
    return (f"{info['name']}: {info['board']} ({info['part']}), {info['fclk_mhz']:g} MHz, "
            f"bitfile {info['bitfile']}")
