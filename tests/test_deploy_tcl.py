"""`codesign deploy`: the generated TCL runs in a real Tcl interpreter with Vivado's commands recorded.

Vivado is not installable here, so the TCL is the product under test: `tclsh` (Debian tcl 8.6)
sources the real `build.tcl` (which sources the three scripts), every Vivado command lands in a
recorder (`unknown`), Tcl's own commands (`file`, `glob`, `source`, `proc`, ...) run for real.
The recorded calls must contain the PS, DMA, width converters, accelerator IP, connections,
clock and addresses for Pynq-Z2 and for UltraScale+ (ZCU104).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codesign.errors import CodesignError
from codesign.hw import vivado
from test_driver import load_driver_modules, make_fake_build, mvau_graph, thresholding_graph

TCLSH = shutil.which("tclsh")
pytestmark = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (Debian package `tcl`)")

SEP = "\x1f"
# Commands the recorder may see: Vivado's. Anything else reaching `unknown` is a typo in a template.
VIVADO_COMMANDS = {
    "create_project", "add_files", "set_property", "update_compile_order", "ipx::package_project",
    "ipx::current_core", "ipx::infer_bus_interfaces", "ipx::associate_bus_interfaces", "ipx::create_xgui_files",
    "ipx::update_checksums", "ipx::check_integrity", "ipx::save_core", "close_project", "current_fileset",
    "current_project", "get_board_parts", "update_ip_catalog", "create_bd_design", "get_ipdefs", "create_bd_cell",
    "apply_bd_automation", "make_bd_intf_pins_external", "get_bd_pins", "get_bd_intf_pins", "connect_bd_intf_net",
    "connect_bd_net", "assign_bd_address", "get_bd_addr_spaces", "get_bd_addr_segs", "validate_bd_design",
    "save_bd_design", "make_wrapper", "get_files", "launch_runs", "wait_on_run", "get_property", "get_runs",
    "open_run", "report_utilization", "report_timing_summary",
}

PRELUDE = r"""
# Vivado stand-in: every unknown command is appended to a log (one call per line, words joined
# by \x1f) and answers with a plausible value so the scripts' own logic runs.
set ::rec_log [open $::env(CODESIGN_TCL_LOG) w]
fconfigure $::rec_log -encoding utf-8
proc unknown {cmd args} {
    puts $::rec_log [join [concat [list $cmd] $args] "\x1f"]
    flush $::rec_log
    switch -- $cmd {
        get_ipdefs { return [list [string map {* 9.9} [lindex $args end]]] }
        get_board_parts {
            if {[info exists ::env(FAKE_BOARD_PART)]} { return [list $::env(FAKE_BOARD_PART)] }
            return {}
        }
        get_property { if {[lindex $args 0] eq "PROGRESS"} { return "100%" } ; return {} }
        create_bd_cell { return [lindex $args end] }
        make_wrapper { return "/fake/codesign_bd_wrapper.v" }
        ipx::current_core { return core0 }
        get_bd_pins - get_bd_intf_pins - get_bd_addr_segs - get_bd_addr_spaces - get_files - get_runs {
            return [lindex $args end]
        }
        default { return {} }
    }
}
"""


def run_tcl(project: Path, script: str = "build.tcl", env_extra: dict | None = None,
            fake_outputs: bool = True) -> list[list[str]]:
    """Source `script` of the project in tclsh with the recorder; returns the recorded calls."""
    info = json.loads((project / "deploy_info.json").read_text())
    name, bd = info["name"], info["block_design"]
    if fake_outputs:  # what Vivado's implementation run would leave behind
        runs = project / "build" / name / f"{name}.runs" / "impl_1"
        hwh = project / "build" / name / f"{name}.gen" / "sources_1" / "bd" / bd / "hw_handoff"
        runs.mkdir(parents=True, exist_ok=True)
        hwh.mkdir(parents=True, exist_ok=True)
        (runs / f"{bd}_wrapper.bit").write_bytes(b"BIT")
        (hwh / f"{bd}.hwh").write_text("<HWH/>")
    log = project.parent / f"{project.name}.{script.replace('/', '_')}.log"
    main = project.parent / "run_recorded.tcl"
    main.write_text(PRELUDE + f"\nsource [file join {{{project}}} {script}]\nclose $::rec_log\n")
    env = {**os.environ, "CODESIGN_TCL_LOG": str(log), **(env_extra or {})}
    res = subprocess.run([TCLSH, str(main)], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, f"tclsh failed:\n{res.stdout}\n{res.stderr}"
    calls = [line.split(SEP) for line in log.read_text().splitlines() if line]
    unexpected = {c[0] for c in calls} - VIVADO_COMMANDS
    assert not unexpected, f"non-Vivado commands reached the recorder (template typo?): {unexpected}"
    return calls


def _cmd(calls, name):
    return [c for c in calls if c[0] == name]


def _intf_nets(calls) -> set[tuple[str, str]]:
    return {(c[1], c[2]) for c in _cmd(calls, "connect_bd_intf_net")}


def _props(calls) -> dict[str, str]:
    """All CONFIG.* values set anywhere (set_property -dict lists and single properties)."""
    out = {}
    for c in _cmd(calls, "set_property"):
        if c[1] == "-dict":
            words = c[2].split()
            out.update(dict(zip(words[::2], words[1::2])))
        elif c[1].startswith("CONFIG."):
            out[c[1]] = c[2]
    return out


@pytest.fixture
def pynq_project(tmp_path):
    build = make_fake_build(tmp_path)
    return vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "vivado_projects" / "tfc_w2a2")


def test_pynq_z2_block_design_recorded(pynq_project, tmp_path):
    calls = run_tcl(pynq_project)
    # Project and IP packaging.
    parts = {c[-1] for c in _cmd(calls, "create_project")}
    assert parts == {"xc7z020clg400-1"}
    assert _cmd(calls, "ipx::package_project")
    assert ["ipx::infer_bus_interfaces", "xilinx.com:interface:axis_rtl:1.0", "core0"] in calls
    added = [Path(c[-1]).name for c in _cmd(calls, "add_files")]
    assert "codesign_top.v" in added and "weights_0.dat" in added and "codesign_axis_tlast.v" in added
    assert "tb_codesign_top.v" not in added  # simulation-only files stay out of the IP
    # Cells: PS7, reset, DMA, GPIO, accelerator IP, TLAST module, two smartconnects, two DWCs.
    cells = {c[-1]: c[c.index("-vlnv") + 1] if "-vlnv" in c else c[c.index("-reference") + 1]
             for c in _cmd(calls, "create_bd_cell")}
    assert cells["ps"].startswith("xilinx.com:ip:processing_system7:")
    assert cells["axi_dma_0"].startswith("xilinx.com:ip:axi_dma:")
    assert cells["axi_gpio_frames"].startswith("xilinx.com:ip:axi_gpio:")
    assert cells["codesign_top_0"] == "codesign.local:user:codesign_top:1.0"
    assert cells["tlast_0"] == "codesign_axis_tlast"
    assert cells["rst_ps"].startswith("xilinx.com:ip:proc_sys_reset:")
    assert cells["dwc_in"].startswith("xilinx.com:ip:axis_dwidth_converter:")
    assert cells["ctrl_interconnect"].startswith("xilinx.com:ip:smartconnect:")
    # Clock 100 MHz from the build's estimate report (10 ns), HP0 at 64 bit, widths 8 B -> 2 B -> 1 B -> 8 B.
    p = _props(calls)
    assert p["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"
    assert p["CONFIG.PCW_S_AXI_HP0_DATA_WIDTH"] == "64" and p["CONFIG.PCW_USE_S_AXI_HP0"] == "1"
    assert p["CONFIG.c_m_axis_mm2s_tdata_width"] == "64" and p["CONFIG.c_include_sg"] == "0"
    assert p["CONFIG.WORDS_PER_FRAME"] == "2" and p["CONFIG.DATA_BYTES"] == "1"
    dwc = [c for c in _cmd(calls, "set_property") if c[1] == "-dict" and "S_TDATA_NUM_BYTES" in c[2]]
    assert "CONFIG.S_TDATA_NUM_BYTES 8 CONFIG.M_TDATA_NUM_BYTES 2" in dwc[0][2]
    assert "CONFIG.S_TDATA_NUM_BYTES 1 CONFIG.M_TDATA_NUM_BYTES 8" in dwc[1][2]
    # Interface connections: PS <-> interconnects <-> DMA, DMA -> DWC -> accelerator -> TLAST -> DWC -> DMA.
    nets = _intf_nets(calls)
    for pair in [("ps/M_AXI_GP0", "ctrl_interconnect/S00_AXI"), ("ctrl_interconnect/M00_AXI", "axi_dma_0/S_AXI_LITE"),
                 ("ctrl_interconnect/M01_AXI", "axi_gpio_frames/S_AXI"), ("axi_dma_0/M_AXI_MM2S", "mem_interconnect/S00_AXI"),
                 ("axi_dma_0/M_AXI_S2MM", "mem_interconnect/S01_AXI"), ("mem_interconnect/M00_AXI", "ps/S_AXI_HP0"),
                 ("axi_dma_0/M_AXIS_MM2S", "dwc_in/S_AXIS"), ("dwc_in/M_AXIS", "codesign_top_0/s_axis_0"),
                 ("codesign_top_0/m_axis_0", "tlast_0/s_axis"), ("tlast_0/m_axis", "dwc_out/S_AXIS"),
                 ("dwc_out/M_AXIS", "axi_dma_0/S_AXIS_S2MM")]:
        assert pair in nets, pair
    # One clock reaches every clocked pin, one reset every peripheral.
    clk = [c for c in _cmd(calls, "connect_bd_net") if c[1] == "ps/FCLK_CLK0"][0]
    for pin in ("codesign_top_0/ap_clk", "tlast_0/ap_clk", "axi_dma_0/m_axi_mm2s_aclk", "dwc_in/aclk",
                "dwc_out/aclk", "ps/S_AXI_HP0_ACLK", "ps/M_AXI_GP0_ACLK", "rst_ps/slowest_sync_clk"):
        assert pin in clk, pin
    rstn = [c for c in _cmd(calls, "connect_bd_net") if c[1] == "rst_ps/peripheral_aresetn"][0]
    assert "codesign_top_0/ap_rst_n" in rstn and "axi_dma_0/axi_resetn" in rstn
    assert ["connect_bd_net", "axi_gpio_frames/gpio_io_o", "tlast_0/frames"] in calls
    # Addresses, validation, wrapper, bitstream run.
    addr = {c[-2]: c[c.index("-offset") + 1] for c in _cmd(calls, "assign_bd_address") if "-offset" in c}
    assert addr == {"axi_dma_0/S_AXI_LITE/Reg": "0x40400000", "axi_gpio_frames/S_AXI/Reg": "0x41200000"}
    assert ["assign_bd_address"] in calls  # the DMA's DDR windows
    names = [c[0] for c in calls]
    assert names.index("validate_bd_design") < names.index("make_wrapper") < names.index("launch_runs")
    assert ["launch_runs", "impl_1", "-to_step", "write_bitstream", "-jobs", "4"] in calls
    assert ["set_property", "top", "codesign_bd_wrapper", ""] in calls  # "" = [current_fileset]
    # Bit and hwh under one name, the name the driver defaults to.
    bitdir = pynq_project / "deploy" / "bitfile"
    assert (bitdir / "tfc_w2a2.bit").read_bytes() == b"BIT" and (bitdir / "tfc_w2a2.hwh").is_file()
    drv_mod = load_driver_modules(pynq_project / "deploy" / "driver")["driver"]
    assert Path(drv_mod.DEFAULT_BITFILE).resolve() == (bitdir / "tfc_w2a2.bit").resolve()
    # Without board files the PS gets its DDR settings from the script.
    assert p["CONFIG.PCW_UIPARAM_DDR_PARTNO"] == "MT41K256M16 RE-125"
    assert not _cmd(calls, "apply_bd_automation")


def test_pynq_z2_with_board_files_uses_preset(pynq_project):
    calls = run_tcl(pynq_project, env_extra={"FAKE_BOARD_PART": "tul.com.tw:pynq-z2:part0:1.0"})
    assert ["set_property", "board_part", "tul.com.tw:pynq-z2:part0:1.0", ""] in calls
    auto = _cmd(calls, "apply_bd_automation")
    assert auto and auto[0][2] == "xilinx.com:bd_rule:processing_system7" and 'apply_board_preset "1"' in auto[0][4]
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in _props(calls)


def test_zcu104_ultrascale_block_design(tmp_path):
    build = make_fake_build(tmp_path, graph_fn=thresholding_graph, clock_ns=None)
    proj = vivado.write_vivado_project(build, "ZCU104", tmp_path / "zcu", clock_ns=5.0, name="thr_zcu104")
    calls = run_tcl(proj, env_extra={"FAKE_BOARD_PART": "xilinx.com:zcu104:part0:1.1"})
    assert {c[-1] for c in _cmd(calls, "create_project")} == {"xczu7ev-ffvc1156-2-e"}
    cells = {c[-1]: c for c in _cmd(calls, "create_bd_cell")}
    assert cells["ps"][cells["ps"].index("-vlnv") + 1].startswith("xilinx.com:ip:zynq_ultra_ps_e:")
    auto = _cmd(calls, "apply_bd_automation")
    assert auto[0][2] == "xilinx.com:bd_rule:zynq_ultra_ps_e"
    p = _props(calls)
    assert p["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == "200"
    assert p["CONFIG.PSU__SAXIGP2__DATA_WIDTH"] == "128" and p["CONFIG.c_m_axi_mm2s_data_width"] == "128"
    assert p["CONFIG.WORDS_PER_FRAME"] == "8"
    nets = _intf_nets(calls)
    assert ("ps/M_AXI_HPM0_FPD", "ctrl_interconnect/S00_AXI") in nets
    assert ("mem_interconnect/M00_AXI", "ps/S_AXI_HP0_FPD") in nets
    assert ("dwc_in/M_AXIS", "codesign_top_0/s_axis_0") in nets
    clk = [c for c in _cmd(calls, "connect_bd_net") if c[1] == "ps/pl_clk0"][0]
    assert "ps/saxihp0_fpd_aclk" in clk and "ps/maxihpm0_fpd_aclk" in clk
    addr = {c[-2]: c[c.index("-offset") + 1] for c in _cmd(calls, "assign_bd_address") if "-offset" in c}
    assert addr == {"axi_dma_0/S_AXI_LITE/Reg": "0xA0000000", "axi_gpio_frames/S_AXI/Reg": "0xA0010000"}
    assert (proj / "deploy" / "bitfile" / "thr_zcu104.bit").is_file()


def test_each_script_parses_and_package_ip_runs_alone(pynq_project):
    for f in ["build.tcl", *sorted(p.name for p in (pynq_project / "tcl").glob("*.tcl"))]:
        path = pynq_project / f if f == "build.tcl" else pynq_project / "tcl" / f
        res = subprocess.run([TCLSH], input=f"puts [info complete [read [open {{{path}}}]]]\n",
                             capture_output=True, text=True)
        assert res.stdout.strip() == "1", f
    calls = run_tcl(pynq_project, "tcl/package_ip.tcl", fake_outputs=False)
    assert _cmd(calls, "ipx::save_core") and not _cmd(calls, "create_bd_design")


def test_build_sh_without_vivado_explains(pynq_project):
    sh = pynq_project / "build.sh"
    assert os.access(sh, os.X_OK)
    assert subprocess.run(["bash", "-n", str(sh)]).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    if shutil.which("vivado", path=env["PATH"]):
        pytest.skip("vivado is installed: build.sh would really build")
    res = subprocess.run(["bash", str(sh)], capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert "vivado is not on PATH" in res.stderr and "settings64.sh" in res.stderr
    assert "vivado -mode batch -source build.tcl" in res.stderr and "xc7z020clg400-1" in res.stderr
    assert "deploy/bitfile/tfc_w2a2.bit" in res.stderr


def test_tlast_module_lints(pynq_project):
    try:
        from codesign.hw.tools import find_verilator

        verilator = str(find_verilator())
    except Exception as exc:  # noqa: BLE001 - any reason verilator is unusable
        pytest.skip(f"verilator unavailable: {exc}")
    res = subprocess.run([verilator, "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                          str(pynq_project / "rtl" / "codesign_axis_tlast.v")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---- bad inputs: clear errors, no broken TCL ----------------------------------------------------

def test_unknown_board_lists_boards(tmp_path):
    build = make_fake_build(tmp_path)
    with pytest.raises(CodesignError, match=r"unknown board 'Pynq-Z3'.*known boards: .*Pynq-Z2.*ZCU104"):
        vivado.write_vivado_project(build, "Pynq-Z3", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_build_without_rtl_says_compile_with_rtl(tmp_path):
    build = make_fake_build(tmp_path)
    shutil.rmtree(build / "rtl")
    with pytest.raises(CodesignError, match=r"codesign compile .*--rtl"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("name", ["my project", 'tfc"w2', "tfc'w2", "tfc$x", "tfc[exec]", "tfc{a}", "9lives",
                                  "tfc-w2a2", "tfc;rm"])
def test_bad_project_names_rejected(tmp_path, name):
    build = make_fake_build(tmp_path)
    with pytest.raises(CodesignError, match="project name .* is not usable"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists()


def test_bad_out_folder_name_rejected(tmp_path):
    build = make_fake_build(tmp_path)
    with pytest.raises(CodesignError, match="project name 'my proj' is not usable"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "my proj")


def test_path_with_spaces_still_gives_working_tcl(tmp_path):
    build = make_fake_build(tmp_path)
    proj = vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "dir with space" / "tfc")
    calls = run_tcl(proj)
    assert (proj / "deploy" / "bitfile" / "tfc.bit").is_file() and _cmd(calls, "make_wrapper")


@pytest.mark.parametrize("value", ['a"b', "a b", "$x", "[exec ls]", "{", "a\\b", "a;b", ""])
def test_tcl_word_rejects_unsafe(value):
    with pytest.raises(CodesignError, match="refusing to put"):
        vivado.tcl_word(value)


def test_unsafe_rtl_file_name_rejected(tmp_path):
    build = make_fake_build(tmp_path)
    (build / "rtl" / "bad name.v").write_text("module x; endmodule\n")
    with pytest.raises(CodesignError, match="file name not usable in TCL"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p")


def test_missing_clock_asks_for_clock_ns(tmp_path):
    build = make_fake_build(tmp_path, clock_ns=None)
    with pytest.raises(CodesignError, match="--clock-ns"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p")
    proj = vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p", clock_ns=8.0)
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {125}" in (proj / "tcl" / "block_design.tcl").read_text()


def test_rtl_width_mismatch_and_missing_port(tmp_path):
    build = make_fake_build(tmp_path)
    top = build / "rtl" / "codesign_top.v"
    top.write_text(top.read_text().replace("[15:0] s_axis_0_tdata", "[31:0] s_axis_0_tdata"))
    with pytest.raises(CodesignError, match="s_axis_0_tdata is 32 bits in the RTL but the dataflow graph says 16"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p")
    top.write_text(top.read_text().replace("m_axis_0_tready", "m_axis_0_ready"))
    with pytest.raises(CodesignError, match="no port m_axis_0_tready"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p2")


def test_missing_dataflow_graph(tmp_path):
    build = make_fake_build(tmp_path)
    (build / "dataflow.onnx").unlink()
    with pytest.raises(CodesignError, match="dataflow.onnx not found"):
        vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "p")


def test_cli_deploy(tmp_path, caplog):
    import argparse

    from codesign.commands import deploy

    build = make_fake_build(tmp_path)
    parser = argparse.ArgumentParser()
    deploy.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["deploy", str(build), "--board", "pynq-z2", "--out", str(tmp_path / "vp" / "demo")])
    with caplog.at_level("INFO"):
        assert args.func(args) == 0
    assert (tmp_path / "vp" / "demo" / "build.sh").is_file()
    assert "demo: Pynq-Z2 (xc7z020clg400-1), 100 MHz" in caplog.text


def test_deploy_real_rendered_rtl(tmp_path):
    """With the RTL room's renderer present: deploy accepts its `codesign_top` (ports, widths)."""
    from codesign.hw import rtl
    build = make_fake_build(tmp_path)
    shutil.rmtree(build / "rtl")
    mw, _ = mvau_graph()
    rtl.render_model(mw, build / "rtl")
    proj = vivado.write_vivado_project(build, "Pynq-Z2", tmp_path / "real")
    calls = run_tcl(proj)
    added = {Path(c[-1]).name for c in _cmd(calls, "add_files")}
    rendered = {p.name for p in (build / "rtl").iterdir() if p.suffix in (".v", ".dat", ".mem", ".hex")}
    assert "codesign_top.v" in rendered and rendered <= added, rendered - added
    assert (proj / "deploy" / "bitfile" / "real.bit").is_file()
