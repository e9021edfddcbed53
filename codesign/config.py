"""Run configuration (`codesign run CONFIG.yaml`): dataclasses loaded from YAML or JSON.

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError


@dataclass
class TrainSettings:
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 128
    patience: int = 3
    max_batches: int | None = None


@dataclass
class QatSettings:
    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 128
    patience: int = 3
    max_batches: int | None = None
    bits: str = "w4a4"
    input_bits: int = 8


@dataclass
class RankSettings:
    """Short QAT that ranks candidates (cheap): few batches, a capped validation subset."""

    epochs: int = 1
    lr: float = 5e-4
    batch_size: int = 128
    max_batches: int | None = 40
    val_samples: int | None = 2000


@dataclass
class RelevanceSettings:
    method: str = "deeplift"
    samples: int = 256
    baseline: str = "zero"


@dataclass
class SearchSettings:
    """The co-design loop (`codesign search`, and `codesign run` after the float model).

    `budget`: absolute resource limits, e.g. {LUT: 8000, BRAM_18K: 100}; the board's totals
    times `util` always apply as well. `trials`: the number of short-QAT trainings (the
    expensive step; cost-model checks are free). `finalists`: Pareto designs that get the full
    QAT (the `qat:` section). `storage`: any SQLAlchemy URL; default SQLite in the run folder.
    """

    strategy: str = "relevance"
    trials: int = 12
    workers: int = 1
    storage: str | None = None
    study_name: str | None = None
    budget: dict[str, int] = field(default_factory=dict)
    util: float = 1.0
    weight_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    act_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    prune_levels: list[float] = field(default_factory=lambda: [0.0, 0.125, 0.25, 0.375, 0.5])
    cluster: list[int] = field(default_factory=list)
    alpha: float = 1.0
    patience: int = 3
    max_iters: int = 30
    sampler: str = "nsga2"
    seed_relevance: bool = True
    finalists: int = 2
    baselines: list[str] = field(default_factory=lambda: ["w4a4", "w2a2"])
    heartbeat_s: int = 10
    grace_s: int = 30
    reconnect_s: int = 60  # how long a worker retries a lost study database before it stops
    rank: RankSettings = field(default_factory=RankSettings)
    relevance: RelevanceSettings = field(default_factory=RelevanceSettings)


@dataclass
class HwSettings:
    """What to do with the chosen design after compiling it (when the RTL code exists)."""

    rtl: bool = False
    rtlsim: bool = False
    rtlsim_frames: int = 100
    synth: bool = False


@dataclass
class RunConfig:
    """Everything `codesign run` needs; sections map to the YAML file's top-level keys."""

    name: str = "run"
    model: str = "tfc"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    out: str = "runs/run"
    seed: int = 0
    board: str = "Pynq-Z2"
    clock_ns: float = 10.0
    target_fps: float | None = None
    device: str = "cpu"  # torch device of the training steps (float, short and full QAT): cpu, cuda, cuda:N
    train: TrainSettings = field(default_factory=TrainSettings)
    qat: QatSettings = field(default_factory=QatSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    hw: HwSettings = field(default_factory=HwSettings)
    extra: dict[str, Any] = field(default_factory=dict)


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise CodesignError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise CodesignError(f"{where}: unknown key '{key}' (known: {', '.join(fields)})")
        f = fields[key]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if sub is not None and dataclasses.is_dataclass(sub) and isinstance(value, dict):
            kwargs[key] = _build(sub, value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


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
    return _build(RunConfig, data or {}, path.name)


def config_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
