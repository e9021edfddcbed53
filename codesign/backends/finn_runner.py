"""FINN+ runner: executed by the FINN+ environment's interpreter (`.venv-finn/bin/python`), never
imported by codesign.

Why a separate process: FINN+'s pins conflict with the project's (onnx, onnxruntime, protobuf,
brevitas, ...), and its builder replaces `sys.stdout`/`sys.stderr` and reconfigures root logging
with `force=True`. This file imports only FINN+ (with its qonnx/onnx), the standard library and
numpy, so it runs in that environment; codesign talks to it through JSON files
(`codesign.backends.finn_plus`).

Commands:
    finn_runner.py self-check               import FINN+ through the workarounds, prove each is still needed
    finn_runner.py batch JOBS.json OUT.json run many jobs in one process (the ~4 s import is paid once)

A job is {"kind": "estimate", "build_dir": D, ...} (FINN+'s estimate-only flow on D/model.onnx with
D/dataflow_build_config.json) or {"kind": "execute", ...} (FINN+'s Python execution of a build's
HW graph on an .npy batch). Each job's result carries "ok" and, on failure, "error" (one line);
one failing job does not stop the others.

Every workaround below names the FINN+ version it was written for (`WORKAROUNDS_FOR`); `self-check`
fails when a workaround has become unnecessary or no longer applies, so a FINN+ upgrade is noticed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any, Iterator

# Run as a script, Python puts this file's folder first on sys.path, and codesign/backends/finn.py
# would then shadow FINN+'s `finn` package: drop it before anything imports finn.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

WORKAROUNDS_FOR = "1.6.1"  # finn-plus version every workaround in this file was measured on

# The import whose failure the SimEngine workaround exists for (finn-plus 1.6.1).
_BUILDER_STEPS = "finn.builder.build_dataflow_steps"


class _NoSimEngine:
    """Placeholder for `finn.xsi.SimEngine` (finn-plus 1.6.1).

    `finn.builder.build_dataflow_steps` does `from finn.xsi import SimEngine` at import time and
    finn.xsi's lazy loader raises OSError (not ImportError) without Vivado's XSI. The estimate flow
    never simulates, so binding this class first lets the builder import; any use fails clearly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("RTL simulation needs Vivado's XSI (finn.xsi); not available in this environment")


def _placeholder_vivado_root() -> str:
    """Stands in for `finn.util.basic.get_vivado_root` inside finn.builder.build_dataflow (finn-plus 1.6.1).

    `build_dataflow_cfg` ends in `exit_buildflow()`, which records the Vivado folder name in
    metadata_builder.json and raises without XILINX_VIVADO, so a build that wrote all its reports
    returned -1. Only that name is affected.
    """
    return os.environ.get("XILINX_VIVADO", "no-vivado")


def ensure_finn_env() -> None:
    """FINN+ 1.6.1 builds its settings from FINN_SETTINGS + FINN_BUILD_DIR (else it wants `run_finn.py`
    or writes ~/.finn); the build folder must exist, the settings file may be missing (defaults).
    codesign passes both (FinnConfig.env()); for a bare `self-check` they default to a temp folder."""
    if not os.environ.get("FINN_BUILD_DIR"):
        import tempfile

        os.environ["FINN_BUILD_DIR"] = tempfile.mkdtemp(prefix="finn_build_")
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINN_SETTINGS", str(Path(os.environ["FINN_BUILD_DIR"]) / "settings.yaml"))


def install_workarounds() -> None:
    """Make FINN+'s builder importable and its estimate flow finish without Vivado (finn-plus 1.6.1)."""
    ensure_finn_env()
    import finn.xsi

    if not (os.environ.get("XILINX_VIVADO") and Path(os.environ["XILINX_VIVADO"]).is_dir()):
        finn.xsi.SimEngine = _NoSimEngine  # type: ignore[attr-defined]  # finn-plus 1.6.1, see _NoSimEngine
        import finn.builder.build_dataflow as bd

        bd.get_vivado_root = _placeholder_vivado_root  # finn-plus 1.6.1, see _placeholder_vivado_root


@contextlib.contextmanager
def restored_io() -> Iterator[None]:
    """Give back stdout/stderr and root logging after a FINN+ build (finn-plus 1.6.1's setup_logging
    replaces both streams with its PrintLogger and calls logging.basicConfig(force=True))."""
    out, err = sys.stdout, sys.stderr
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                with contextlib.suppress(Exception):
                    h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)
        sys.stdout, sys.stderr = out, err


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"[:400]


# ---------------------------------------------------------------------------------------- estimate


def _resolve(base: Path, p: str | None) -> str | None:
    if p is None:
        return None
    q = Path(p)
    return str(q if q.is_absolute() else base / q)


def estimate(job: dict[str, Any]) -> dict[str, Any]:
    """FINN+'s estimate-only flow on `build_dir` (model.onnx + dataflow_build_config.json + folding).

    The config's own generate_outputs/steps are for a user with Vivado; here they are replaced by
    FINN+'s `estimate_only_dataflow_steps` and ESTIMATE_REPORTS. Relative paths in the config are
    relative to the build directory (as in FINN's build_dataflow_directory).
    """
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, estimate_only_dataflow_steps

    d = Path(job["build_dir"]).resolve()
    cfg_dict = json.loads((d / job.get("config", "dataflow_build_config.json")).read_text())
    cfg_dict.update(job.get("overrides", {}))
    out_dir = Path(_resolve(d, job.get("output_dir") or cfg_dict["output_dir"]))
    cfg_dict["output_dir"] = str(out_dir)
    if cfg_dict.get("folding_config_file"):
        cfg_dict["folding_config_file"] = _resolve(d, cfg_dict["folding_config_file"])
    cfg_dict["steps"] = list(estimate_only_dataflow_steps)
    cfg_dict["generate_outputs"] = ["estimate_reports"]
    cfg_dict["save_intermediate_models"] = True
    cfg = DataflowBuildConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    stdout, root_handlers = sys.stdout, list(logging.getLogger().handlers)
    with restored_io():
        rc = build_dataflow_cfg(str(d / job.get("model", "model.onnx")), cfg)
        # finn-plus 1.6.1 leaves its PrintLogger on stdout and its own root handlers: the reason for restored_io
        took_over = sys.stdout is not stdout and logging.getLogger().handlers != root_handlers
    restored = sys.stdout is stdout and logging.getLogger().handlers == root_handlers
    seconds = time.perf_counter() - t0
    rep = out_dir / "report"
    reports = {f.stem: json.loads(f.read_text()) for f in sorted(rep.glob("*.json"))} if rep.is_dir() else {}
    res: dict[str, Any] = {"ok": rc == 0, "rc": rc, "seconds": round(seconds, 3), "output_dir": str(out_dir),
                           "reports": reports, "builder_took_over_io": took_over, "io_restored": restored}
    if rc != 0:
        res["error"] = f"FINN+ build returned {rc}; see {out_dir}/build_dataflow.log"
    return res


# ---------------------------------------------------------------------------------------- execute


def _despecialise(model: Any) -> Any:
    """FINN+'s HW graph with every `*_hls`/`*_rtl` node turned back into its base HW op.

    The specialised classes only execute in cppsim/rtlsim (Vitis headers / Vivado XSI); the base op
    (same attributes) has FINN's Python execution, which is what this cross-check runs.
    """
    for node in model.graph.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow.") and node.op_type.endswith(("_hls", "_rtl")):
            node.op_type = node.op_type.rsplit("_", 1)[0]
            node.domain = "finn.custom_op.fpgadataflow"
    return model


def execute(job: dict[str, Any]) -> dict[str, Any]:
    """Run FINN+'s own graph of an estimate build (parent model + de-specialised dataflow child) on
    `inputs` (.npy, (N, ...) float images) one sample at a time; write the outputs to `outputs`."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    out_dir = Path(job["output_dir"])
    inter = out_dir / "intermediate_models"
    parent = ModelWrapper(str(inter / "dataflow_parent.onnx"))
    child = _despecialise(ModelWrapper(str(inter / job.get("child", "step_generate_estimate_reports.onnx"))))
    child_path = out_dir / "codesign_python_exec_child.onnx"
    child.save(str(child_path))
    parts = [n for n in parent.graph.node if n.op_type == "StreamingDataflowPartition"]
    if len(parts) != 1:
        return {"ok": False, "error": f"expected one dataflow partition in FINN+'s parent model, found {len(parts)}"}
    getCustomOp(parts[0]).set_nodeattr("model", str(child_path))
    x = np.load(job["inputs"])
    iname, oname = parent.graph.input[0].name, parent.graph.output[0].name
    ishape = tuple(parent.get_tensor_shape(iname))
    t0 = time.perf_counter()
    outs = []
    for i in range(x.shape[0]):
        outs.append(execute_onnx(parent, {iname: x[i:i + 1].reshape(ishape).astype(np.float32)})[oname])
    y = np.concatenate(outs, axis=0)
    np.save(job["outputs"], y)
    hw_ops = sorted({n.op_type for n in ModelWrapper(str(inter / job.get("child", "step_generate_estimate_reports.onnx"))).graph.node})
    host_ops = [n.op_type for n in parent.graph.node if n.op_type != "StreamingDataflowPartition"]
    return {"ok": True, "seconds": round(time.perf_counter() - t0, 3), "frames": int(x.shape[0]),
            "outputs": job["outputs"], "hw_op_types": hw_ops, "host_op_types": host_ops}


# ---------------------------------------------------------------------------------------- commands

def batch(jobs_path: str, out_path: str) -> int:
    """Run every job of JOBS.json; write their results (same order) to OUT.json."""
    import finn

    t0 = time.perf_counter()
    install_workarounds()
    import_s = time.perf_counter() - t0
    jobs = {"estimate": estimate, "execute": execute, "workarounds": check_workarounds}
    results = []
    for job in json.loads(Path(jobs_path).read_text()):
        kind = job.get("kind")
        try:
            if kind not in jobs:
                raise ValueError(f"unknown job kind {kind!r}")
            results.append(jobs[kind](job))
        except Exception as exc:  # one bad job must not lose the others' results
            results.append({"ok": False, "error": _one_line(exc), "traceback": traceback.format_exc()[-4000:]})
    doc = {"finn_plus_version": getattr(finn, "__version__", None) or _dist_version(), "import_seconds": round(import_s, 3),
           "results": results}
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, out_path)
    return 0


def _dist_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("finn-plus")
    except PackageNotFoundError:
        return None


def _child(code: str) -> subprocess.Popen:
    """A fresh interpreter of this environment without Vivado variables (started, not awaited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XILINX_")}
    return subprocess.Popen([sys.executable, "-c", code], cwd=os.environ["FINN_BUILD_DIR"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_workarounds(job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each workaround is still needed and still works with the installed FINN+.

    Needed: in fresh interpreters without the workarounds, importing the builder steps still raises
    OSError and get_vivado_root() still raises. Works: this process imported the builder through
    them (install_workarounds ran first) and its placeholder is in place. A FINN+ that no longer
    needs one makes it dead code to remove; one that breaks it must be re-measured: both are
    "problems" (self-check exits 1, the tests fail).
    """
    ensure_finn_env()
    problems: list[str] = []
    ver = _dist_version()
    if ver != WORKAROUNDS_FOR:
        problems.append(f"finn-plus {ver} installed, workarounds are for {WORKAROUNDS_FOR}: re-check them")
    bare = _child(f"import {_BUILDER_STEPS}")
    root = _child("from finn.util.basic import get_vivado_root\nget_vivado_root()")
    install_workarounds()
    works = True
    try:
        import importlib

        importlib.import_module(_BUILDER_STEPS)
        import finn.builder.build_dataflow as bd

        works = bd.get_vivado_root is _placeholder_vivado_root
    except Exception as exc:
        works = False
        problems.append(f"FINN+'s builder does not import through the workarounds: {_one_line(exc)}")
    _, bare_err = bare.communicate(timeout=300)
    _, root_err = root.communicate(timeout=300)
    xsi_needed = bare.returncode != 0 and "OSError" in bare_err
    if not xsi_needed:
        problems.append(f"`import {_BUILDER_STEPS}` no longer raises OSError without Vivado "
                        f"(rc {bare.returncode}): drop the SimEngine stub")
    root_needed = root.returncode != 0
    if not root_needed:
        problems.append("get_vivado_root() no longer raises without XILINX_VIVADO: drop the placeholder")
    if not works and not problems:
        problems.append("get_vivado_root placeholder not in place after install_workarounds()")
    return {"ok": not problems, "finn_plus_version": ver, "workarounds_for": WORKAROUNDS_FOR,
            "xsi_stub_needed": xsi_needed, "vivado_root_placeholder_needed": root_needed,
            "builder_imports_with_workarounds": works, "problems": problems}


def self_check() -> int:
    """`check_workarounds` as a command: prints its JSON, exit 1 on any problem."""
    res = check_workarounds()
    print(json.dumps(res))
    return 0 if res["ok"] else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["self-check"]:
        return self_check()
    if argv[:1] == ["batch"] and len(argv) == 3:
        return batch(argv[1], argv[2])
    print("usage: finn_runner.py self-check | batch JOBS.json OUT.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
