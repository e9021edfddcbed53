"""Run configuration (`codesign run CONFIG.yaml`): dataclasses loaded from YAML or JSON.

Every field has a type and a range, checked by pydantic (the dataclasses are validated as they
are, `extra="forbid"`): unknown keys, `epochs: "ten"`, `weight_bits: 4` where a list is
expected, `train: null` or `budget: {LUT: lots}` are one clear line naming the key, never a
traceback minutes later. `validate_names` then checks the names (board, strategy, sampler,
baselines, model, dataset, bits) before the first step runs.

The constraints live in ``Annotated`` aliases below (positive counts, batch sizes >= 2 for
BatchNorm, fractions in (0, 1], bits 1..8); pydantic's lax mode still reads ``"10"`` as 10 and
``"no"`` as False, but never ``"ten"`` as anything.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from codesign.errors import CodesignError

_STRICT = ConfigDict(extra="forbid")
Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Batch = Annotated[int, Field(ge=2, description="BatchNorm needs at least 2 samples per batch")]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Frac = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Bits = Annotated[int, Field(ge=1, le=8)]


@dataclass
class TrainSettings:
    __pydantic_config__ = _STRICT
    epochs: Pos = 5
    lr: PosFloat = 1e-3
    batch_size: Batch = 128
    patience: Pos = 3
    max_batches: Optional[Pos] = None


@dataclass
class QatSettings:
    __pydantic_config__ = _STRICT
    epochs: Pos = 3
    lr: PosFloat = 5e-4
    batch_size: Batch = 128
    patience: Pos = 3
    max_batches: Optional[Pos] = None
    bits: str = "w4a4"
    input_bits: Bits = 8


@dataclass
class RankSettings:
    """Short QAT that ranks candidates (cheap): few batches, a capped validation subset."""

    __pydantic_config__ = _STRICT
    epochs: Pos = 1
    lr: PosFloat = 5e-4
    batch_size: Batch = 128
    max_batches: Optional[Pos] = 40
    val_samples: Optional[Pos] = 2000


@dataclass
class RelevanceSettings:
    __pydantic_config__ = _STRICT
    method: str = "deeplift"
    samples: Pos = 256
    baseline: str = "zero"


@dataclass
class SearchSettings:
    """The co-design loop (`codesign search`, and `codesign run` after the float model).

    `budget`: absolute resource limits, e.g. {LUT: 8000, BRAM_18K: 100}; the board's totals
    times `util` always apply as well. `trials`: the number of short-QAT trainings (the
    expensive step; cost-model checks are free). `finalists`: Pareto designs that get the full
    QAT (the `qat:` section). `storage`: any SQLAlchemy URL; default SQLite in the run folder.
    """

    __pydantic_config__ = _STRICT
    strategy: str = "relevance"
    trials: Pos = 12
    workers: Pos = 1
    storage: Optional[str] = None
    study_name: Optional[str] = None
    budget: dict[str, NonNeg] = field(default_factory=dict)
    util: Frac = 1.0
    weight_bits: list[Bits] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    act_bits: list[Bits] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    prune_levels: list[Ratio] = field(default_factory=lambda: [0.0, 0.125, 0.25, 0.375, 0.5])
    cluster: list[Annotated[int, Field(ge=2)]] = field(default_factory=list)
    alpha: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    patience: Pos = 3
    max_iters: Pos = 30
    sampler: str = "nsga2"
    seed_relevance: bool = True
    finalists: Pos = 2
    baselines: list[str] = field(default_factory=lambda: ["w4a4", "w2a2"])
    heartbeat_s: Pos = 10
    grace_s: Pos = 30
    reconnect_s: Pos = 60  # how long a worker retries a lost study database before it stops
    cost_model: str = "embedded"  # "finn": FINN+'s estimates re-rank the full-QAT finalists too
    rank: RankSettings = field(default_factory=RankSettings)
    relevance: RelevanceSettings = field(default_factory=RelevanceSettings)


@dataclass
class HwSettings:
    """What to do with the chosen design after compiling it (when the RTL code exists)."""

    __pydantic_config__ = _STRICT
    rtl: bool = False
    rtlsim: bool = False
    rtlsim_frames: Pos = 100
    synth: bool = False


@dataclass
class RunConfig:
    """Everything `codesign run` needs; sections map to the YAML file's top-level keys."""

    __pydantic_config__ = _STRICT
    name: str = "run"
    model: str = "tfc"  # a zoo name, or your own model as package.module:function
    dataset: str = "fashion-mnist"
    data_dir: Optional[str] = None
    limit_train: Optional[Pos] = None
    limit_test: Optional[Pos] = None
    out: str = "runs/run"
    seed: NonNeg = 0
    board: str = "Pynq-Z2"
    clock_ns: PosFloat = 10.0
    target_fps: Optional[PosFloat] = None
    device: str = "cpu"  # torch device of the training steps (float, short and full QAT): cpu, cuda, cuda:N
    train: TrainSettings = field(default_factory=TrainSettings)
    qat: QatSettings = field(default_factory=QatSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    hw: HwSettings = field(default_factory=HwSettings)
    extra: dict[str, Any] = field(default_factory=dict)


def _first_error(exc: ValidationError, where: str) -> str:
    errs = exc.errors()
    e = errs[0]
    loc = ".".join(str(p) for p in e["loc"])
    got = e.get("input")
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    msg = e["msg"].replace("Unexpected keyword argument", "unknown key")
    return f"{where}: {loc}: {msg}, got {got!r}{more}"


def _build(cls, data: Any, where: str):
    """Validate a mapping into dataclass `cls` (types, ranges, no unknown keys)."""
    if not isinstance(data, dict):
        raise CodesignError(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise CodesignError(_first_error(exc, where)) from None


def validate_names(cfg: "RunConfig", where: str = "config") -> None:
    """Names a typo would only break minutes later (after float training): board, strategy,
    sampler, baselines, model, dataset, bits, relevance method; checked before the first step."""
    from codesign.data import DATASETS
    from codesign.dataflow.boards import get_board
    from codesign.models import parse_bits
    from codesign.models.zoo import ZOO
    from codesign.relevance import BASELINES, METHODS
    from codesign.search.strategies import STRATEGIES

    def one_of(key: str, value: str, allowed) -> None:
        if str(value).lower() not in [str(a).lower() for a in allowed]:
            raise CodesignError(f"{where}: {key}: unknown name {value!r}; choose one of {', '.join(allowed)}")

    from codesign.models.entry import check_model_name, is_entry_point

    if is_entry_point(cfg.model):  # your own model: package.module:function
        try:
            check_model_name(cfg.model)
        except CodesignError as exc:
            raise CodesignError(f"{where}: model: {exc}") from None
    else:
        one_of("model", cfg.model, ZOO)
    one_of("dataset", cfg.dataset, DATASETS)
    one_of("search.strategy", cfg.search.strategy, STRATEGIES)
    one_of("search.sampler", cfg.search.sampler, ("nsga2", "nsgaii", "nsga-ii", "tpe", "random"))
    one_of("search.cost_model", cfg.search.cost_model, ("embedded", "finn"))
    one_of("search.relevance.method", cfg.search.relevance.method, METHODS)
    one_of("search.relevance.baseline", cfg.search.relevance.baseline, BASELINES)
    try:
        get_board(cfg.board)
    except CodesignError as exc:
        raise CodesignError(f"{where}: board: {exc}") from None
    for key, text in [("qat.bits", cfg.qat.bits)] + [("search.baselines", b) for b in cfg.search.baselines]:
        try:
            w, a = parse_bits(text)
        except CodesignError as exc:
            raise CodesignError(f"{where}: {key}: {exc}") from None
        if not (1 <= w <= 8 and 1 <= a <= 8):
            raise CodesignError(f"{where}: {key}: {text!r} has bits outside 1..8")
    from codesign.dataflow.boards import get_board as _gb

    res = _gb(cfg.board).resources()
    bad = [k for k in cfg.search.budget if k not in res]
    if bad:
        raise CodesignError(f"{where}: search.budget: unknown resource {bad[0]!r}; choose from {', '.join(res)}")


def load_config(path: str | Path) -> RunConfig:
    """Load a RunConfig from YAML (.yaml/.yml) or JSON."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CodesignError(f"config {path} not found")
    text = path.read_text()
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise different types
        raise CodesignError(f"config {path} cannot be parsed: {exc}") from exc
    if data is None or data == {}:
        raise CodesignError(f"config {path} is empty: give at least `model:` (e.g. model: tfc)")
    if not isinstance(data, dict):
        raise CodesignError(f"config {path}: expected a mapping of settings, got {type(data).__name__}")
    if "model" not in data:
        raise CodesignError(f"config {path} has no `model:` (e.g. model: tfc); refusing to start a default job")
    cfg = _build(RunConfig, data, path.name)
    validate_names(cfg, path.name)
    return cfg


def config_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
