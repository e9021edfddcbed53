"""The reusable compile flow: QONNX -> HW graph -> folding -> stream adapters -> files + reports.

Why a function and not only a CLI: the search loop and the RTL step call `build_dataflow`
directly (no argv, no printing); the `codesign compile` command is a thin wrapper around it.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError

log = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    """How to fold and where to write. Exactly one of target_fps / folding / max_fps."""

    output_dir: str | Path
    board: str = "Pynq-Z2"
    clock_ns: float | None = None  # None -> the board's default clock
    target_fps: float | None = None
    folding: str | Path | dict | None = None
    max_fps: bool = False
    util: float = 0.8
    label_select: int | None = None
    mvau_wwidth_max: int = 36
    two_pass: bool = True
    calibration: str | Path | None = None
    insert_adapters: bool = True
    #: None: size every FIFO from the ops' cycle models (analytic); an int: that depth everywhere
    #: (a depth too shallow for the estimated throughput is then reported)
    fifo_depth: int | None = None
    #: "rom": weights in plain ROMs unless a folding config names another weight_storage;
    #: "auto": after folding, ChooseWeightStorage picks rom / codebook / constants per weight
    #: layer by the cost model (nodes whose folding entry sets weight_storage keep it)
    weight_storage: str = "rom"

    def mode(self) -> str:
        modes = [m for m, on in (("target_fps", self.target_fps is not None), ("folding", self.folding is not None),
                                 ("max_fps", self.max_fps)) if on]
        if len(modes) != 1:
            raise CodesignError("choose exactly one of --target-fps, --folding, --max-fps"
                                + (f" (got {', '.join(modes)})" if modes else ""))
        return modes[0]


@dataclass
class BuildResult:
    """Everything a caller needs after a build: the folded model, the files and the estimates."""

    model: Any
    output_dir: Path
    files: dict[str, str]
    cost: dict[str, Any]
    performance: dict[str, Any]
    utilisation: dict[str, Any] | None
    fold: dict[str, Any]
    adapters: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    fifo: dict[str, Any] = field(default_factory=dict)


def _lower(model: Any, label_select: int | None) -> Any:
    try:
        from codesign.dataflow.compiler import lower_to_hw
    except ImportError as exc:
        raise CodesignError("the lowering (codesign.dataflow.compiler.lower_to_hw) is not available "
                            f"in this checkout ({exc})") from exc
    kwargs: dict[str, Any] = {}
    if label_select:
        params = inspect.signature(lower_to_hw).parameters
        key = next((k for k in ("label_select", "label_select_k", "topk") if k in params), None)
        if key is None:
            raise CodesignError("this lower_to_hw does not support --label-select")
        kwargs[key] = int(label_select)
    return lower_to_hw(model, **kwargs)


def _forced_storage(folding: Any) -> set[str]:
    """Node names whose folding config entry sets weight_storage (auto mode leaves them alone)."""
    if folding is None:
        return set()
    if isinstance(folding, (str, Path)):
        import json

        folding = json.loads(Path(folding).read_text())
    return {k for k, v in dict(folding).items() if isinstance(v, dict) and "weight_storage" in v}


def build_dataflow(qonnx: str | Path | Any, cfg: BuildConfig) -> BuildResult:
    """Compile a QONNX model (path or ModelWrapper) or an already lowered HW graph.

    Writes BUILD/dataflow.onnx, BUILD/folding_config.json and BUILD/report/*.json, and, for a
    QONNX file, a copy of it as BUILD/source.onnx (what the build is verified against).
    """
    from qonnx.core.modelwrapper import ModelWrapper

    from codesign.atomic import atomic_write
    from codesign.dataflow.boards import get_board
    from codesign.dataflow.cost import Calibration, hw_nodes
    from codesign.dataflow.compiler import insert_fifos, insert_width_converters
    from codesign.dataflow.fifo_sizing import check_fifos, size_fifos
    from codesign.dataflow.folding import apply_folding_config, auto_fold, folding_summary, max_fps_fold, save_folding_config
    from codesign.dataflow.reports import write_reports

    mode = cfg.mode()
    if cfg.fifo_depth is not None and int(cfg.fifo_depth) < 1:
        raise CodesignError(f"FIFO depth must be >= 1, got {cfg.fifo_depth}")
    board = get_board(cfg.board)
    clock_ns = float(cfg.clock_ns or board.default_clock_ns)
    cal = Calibration.load(cfg.calibration)
    out = Path(cfg.output_dir)
    t: dict[str, float] = {}

    t0 = time.perf_counter()
    if isinstance(qonnx, (str, Path)):
        if not Path(qonnx).is_file():
            raise CodesignError(f"{qonnx}: file not found")
        try:
            model = ModelWrapper(str(qonnx))
        except Exception as exc:  # noqa: BLE001 - any load failure is a user error here
            raise CodesignError(f"{qonnx} is not a readable ONNX model ({exc})") from exc
    else:
        model = qonnx
    if not hw_nodes(model):
        if isinstance(qonnx, (str, Path)):
            # the build remembers its source model: `codesign rtlsim` and `compile --verify`
            # check the compiled graph and the RTL against it, not only against dataflow.onnx
            import shutil

            if Path(qonnx).resolve() != (out / "source.onnx").resolve():
                atomic_write(out / "source.onnx", lambda p: shutil.copyfile(qonnx, p))
        model = _lower(model, cfg.label_select)
    elif (out / "source.onnx").is_file() and not (
            isinstance(qonnx, (str, Path)) and Path(qonnx).resolve() == (out / "dataflow.onnx").resolve()):
        # an already lowered graph from elsewhere: the old source.onnx does not describe it
        log.info("removing %s: the new build starts from a lowered graph of unknown source", out / "source.onnx")
        (out / "source.onnx").unlink()
    t["lower"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if mode == "target_fps":
        fold = auto_fold(model, cfg.target_fps, clock_ns, cfg.mvau_wwidth_max, cfg.two_pass, cal,
                         board.dsp_family).to_dict()
    elif mode == "max_fps":
        # the fit check costs the width converters and FIFOs this build will insert (report = search)
        fold = max_fps_fold(model, board, clock_ns, cfg.util, cfg.mvau_wwidth_max, cal,
                            cost_adapters=cfg.insert_adapters, fifo_depth=cfg.fifo_depth).to_dict()
    else:
        notes: list[str] = []
        apply_folding_config(model, cfg.folding, notes)
        fold = folding_summary(model, clock_ns, cal, board.dsp_family).to_dict()
        fold["notes"] = notes
    if cfg.weight_storage not in ("rom", "auto"):
        raise CodesignError(f"weight_storage={cfg.weight_storage!r} is not valid; valid: rom, auto")
    from codesign.dataflow.transforms.hw import ChooseWeightStorage

    forced = _forced_storage(cfg.folding) if cfg.weight_storage == "auto" else set()
    model = model.transform(ChooseWeightStorage(cfg.weight_storage == "auto", forced, board.dsp_family),
                            make_deepcopy=False, cleanup=False)
    # width converters first (FIFO sizing needs matching words), then the FIFO depths into the
    # nodes' inFIFODepths/outFIFODepths; the folding config leaves the inserted plumbing out, so
    # it applies to any fresh lowering of the same model
    adapters: list[str] = []
    sizing = None
    if cfg.insert_adapters:
        model = insert_width_converters(model)
        sizing = size_fifos(model, cfg.fifo_depth)
    files = {"folding_config": str(save_folding_config(model, out / "folding_config.json"))}
    if cfg.insert_adapters:
        model = insert_fifos(model, int(cfg.fifo_depth or 2))
        adapters = ["InsertDWC", "InsertFIFO"]
        sizing = check_fifos(model, sizing)
    t["fold"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    files["dataflow"] = str(atomic_write(out / "dataflow.onnx", lambda p: model.save(str(p))))
    fifo = sizing.to_dict() if sizing is not None else {}
    rep = write_reports(model, out, clock_ns, board, cfg.util if mode == "max_fps" else 1.0, cal, fifo)
    t["write"] = time.perf_counter() - t0
    for p in rep["paths"]:
        files[Path(p).stem] = p
    return BuildResult(model, out, files, rep["cost"], rep["performance"], rep["utilisation"], fold, adapters, t, fifo)
