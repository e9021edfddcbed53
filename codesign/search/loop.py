"""The co-design loop end to end: context -> trials (any strategy, N workers) -> finalists.

Cheap before expensive: (1) the cost model rejects infeasible designs in milliseconds and
guides the walk; (2) short QAT (a few batches) ranks the candidates, cached by plan hash in the
study; (3) only the Pareto finalists get the full QAT; (4) the chosen design is exported,
compiled with the compiler's `build_dataflow`, and handed to the RTL steps when asked.
Every stage writes its result into the run folder and is skipped when that result exists,
so a killed run restarts where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from codesign.atomic import read_json, write_json
from codesign.config import RunConfig
from codesign.errors import CodesignError
from codesign.search.feedback import RelevanceFeedback, check_achievable
from codesign.designspace.estimate import HwEstimator
from codesign.designspace.space import Candidate, SearchSpace
from codesign.search.strategies import (STRATEGIES, StrategyResult, boundary_seeds, make_sampler, run_optuna,
                                        run_random, run_relevance, run_uniform)
from codesign.search.study import (Evaluator, completed_records, default_storage_url, make_storage, masked_url,
                                   open_study)

log = logging.getLogger(__name__)


@dataclass
class SearchContext:
    """Everything a worker needs; rebuilt from the config in each worker process."""

    cfg: RunConfig
    out: Path
    splits: Any
    rank_splits: Any
    spec: dict
    rel: Any
    space: SearchSpace
    hw: HwEstimator
    float_ckpt: Path
    seconds: dict[str, float] = field(default_factory=dict)
    subdir: str = "search"

    @property
    def search_dir(self) -> Path:
        return self.out / self.subdir


def _subset(ds: Any, n: int | None) -> Any:
    from torch.utils.data import TensorDataset

    if n is None or n >= len(ds):
        return ds
    x, y = ds.tensors
    return TensorDataset(x[:n], y[:n])


def ensure_float(cfg: RunConfig, out: Path, splits: Any, progress: bool = False) -> Path:
    """out/float.pt, trained with the `train:` settings unless it is already there (and then
    only if it was produced by the same model/dataset/train settings: RUN/provenance.json)."""
    from codesign.flow import train_float
    from codesign.provenance import check_reuse, record
    from codesign.train import TrainConfig, load_checkpoint

    ck = out / "float.pt"
    t = cfg.train
    settings = {"model": cfg.model, "dataset": cfg.dataset, "data_dir": cfg.data_dir, "limit_train": cfg.limit_train,
                "limit_test": cfg.limit_test, "split_seed": cfg.seed, "train": dataclasses.asdict(t)}
    from codesign.models.entry import is_entry_point, source_fingerprint

    if is_entry_point(cfg.model):  # your own model: an edited model file is a new float model
        settings["model_source"] = source_fingerprint(cfg.model)
    if ck.is_file():
        check_reuse(out, "float", ck, settings, fallback=load_checkpoint(ck)["meta"])
        log.info("reusing %s", ck)
        return ck
    train_float(cfg.model, cfg.dataset, out,
                TrainConfig(epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, patience=t.patience, seed=cfg.seed,
                            max_batches_per_epoch=t.max_batches, progress=progress, device=cfg.device),
                data_dir=cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test, splits=splits)
    record(out, "float", ck, settings)
    return ck


def ensure_relevance(cfg: RunConfig, out: Path, float_ckpt: Path, splits: Any, progress: bool = False) -> Any:
    """out/relevance.json (DeepLIFT by default) of the float model, computed once."""
    from codesign.relevance import load_relevance, relevance_for_checkpoint
    from codesign.train import load_checkpoint

    from codesign.provenance import check_reuse, record, settings_hash

    fck = load_checkpoint(float_ckpt)
    spec = fck["spec"]
    path = out / "relevance.json"
    r = cfg.search.relevance
    # the float model it explains: its spec and its recorded results (a retrained float differs)
    settings = {**dataclasses.asdict(r), "seed": cfg.seed,
                "float": settings_hash({"spec": spec, "meta": fck["meta"]})}
    if path.is_file():
        check_reuse(out, "relevance", path, settings)
        return load_relevance(path, spec)
    rel = relevance_for_checkpoint(float_ckpt, method=r.method, samples=r.samples, baseline=r.baseline,
                                   seed=cfg.seed, progress=progress, splits=splits)
    rel.save(path)
    record(out, "relevance", path, settings)
    try:
        from codesign.relevance import plot_relevance

        plot_relevance(rel, out / "relevance.png")
    except Exception as exc:  # noqa: BLE001 - a plot must not stop the run
        log.warning("relevance plot skipped: %s", exc)
    return rel


def build_space(cfg: RunConfig, spec: dict) -> SearchSpace:
    s = cfg.search
    return SearchSpace(spec, tuple(s.weight_bits), tuple(s.act_bits), tuple(s.prune_levels), cfg.qat.input_bits,
                       tuple(s.cluster))


def build_hw(cfg: RunConfig, space: SearchSpace) -> HwEstimator:
    return HwEstimator(space, cfg.board, cfg.target_fps, cfg.clock_ns, cfg.search.util, cfg.search.budget)


def prepare(cfg: RunConfig, out: Path, progress: bool = False, splits: Any = None) -> SearchContext:
    """Dataset, float model, relevance, search space and cost model for a run folder."""
    from codesign.data import DatasetSplits, load_dataset
    from codesign.train import load_checkpoint

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if splits is None:
        from codesign.errors import DataError

        try:
            splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, limit_train=cfg.limit_train,
                                  limit_test=cfg.limit_test)
        except DataError as exc:
            raise DataError(f"{exc} (in a run config: the `data_dir:` key)") from exc
    secs: dict[str, float] = {"data": time.time() - t0}
    t0 = time.time()
    fck = ensure_float(cfg, out, splits, progress)
    secs["float"] = time.time() - t0
    t0 = time.time()
    rel = ensure_relevance(cfg, out, fck, splits, progress)
    secs["relevance"] = time.time() - t0
    spec = load_checkpoint(fck)["spec"]
    r = cfg.search.rank
    val = _subset(splits.val, r.val_samples)
    rank_splits = DatasetSplits(train=splits.train, val=val, test=_subset(val, 256), num_classes=splits.num_classes,
                                input_shape=splits.input_shape, class_names=splits.class_names, name=splits.name)
    space = build_space(cfg, spec)
    return SearchContext(cfg, out, splits, rank_splits, spec, rel, space, build_hw(cfg, space), fck, secs)


def _train_config(cfg: RunConfig, short: bool, progress: bool = False):
    from codesign.train import TrainConfig

    if short:
        r = cfg.search.rank
        return TrainConfig(epochs=r.epochs, lr=r.lr, batch_size=r.batch_size, patience=None, seed=cfg.seed,
                           max_batches_per_epoch=r.max_batches, progress=progress, device=cfg.device)
    q = cfg.qat
    return TrainConfig(epochs=q.epochs, lr=q.lr, batch_size=q.batch_size, patience=q.patience, seed=cfg.seed,
                       max_batches_per_epoch=q.max_batches, progress=progress, device=cfg.device)


def train_candidate(ctx: SearchContext, cand: Candidate, folder: Path, short: bool, export: bool = False) -> dict:
    """QAT of one design through the compression pipeline (structured pruning by relevance,
    the bit plan, optional weight sharing); returns compress.json's summary with val_acc."""
    from codesign.compress.pipeline import CompressConfig, compress

    plan = ctx.space.plan(cand)
    ratios = {n: r for n, r in cand.pd.items() if r > 0}
    ccfg = CompressConfig(prune_filters=ratios or None, bits=plan, cluster=cand.cluster,
                          qat=_train_config(ctx.cfg, short), export=export, input_bits=cand.input_bits,
                          seed=ctx.cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    summary = compress(ctx.float_ckpt, ctx.rel if (ratios or cand.cluster) else None, folder, ccfg,
                       splits=ctx.rank_splits if short else ctx.splits)
    summary["val_acc"] = summary.get("qat_val_acc")
    return summary


def settings_key(*parts: Any) -> str:
    """Short hash of the training settings a cached result depends on: changing them (epochs,
    batches, data limits, seed) starts a fresh cache instead of silently reusing old numbers."""
    import hashlib
    import json

    text = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def study_name(cfg: RunConfig, strategy: str) -> str:
    key = settings_key(cfg.search.rank, cfg.seed, cfg.limit_train, cfg.dataset, cfg.model)
    return cfg.search.study_name or f"{cfg.name}-{strategy}-{key}"


def _final_key(cfg: RunConfig) -> str:
    return settings_key(cfg.qat, cfg.seed, cfg.limit_train, cfg.limit_test, cfg.dataset, cfg.model)


def _sampler_for(cfg: RunConfig, strategy: str) -> Any:
    return make_sampler(cfg.search.sampler, cfg.seed, population=max(4, min(8, cfg.search.trials))) \
        if strategy == "optuna" else None


def run_strategy(ctx: SearchContext, strategy: str, storage_url: str, name: str,
                 seed_relevance: bool | None = None) -> StrategyResult:
    """Run one strategy in this process against the shared study until its budget is spent."""
    s = ctx.cfg.search
    if strategy not in STRATEGIES:
        raise CodesignError(f"unknown search strategy '{strategy}': choose one of {', '.join(STRATEGIES)}")
    check_achievable(ctx.space, ctx.hw)
    storage = make_storage(storage_url, s.heartbeat_s, s.grace_s, s.reconnect_s)
    study = open_study(storage, name, _sampler_for(ctx.cfg, strategy))
    ev = Evaluator(study, ctx.space, ctx.hw, lambda c, d: train_candidate(ctx, c, d, short=True),
                   ctx.search_dir / "trials", strategy, s.trials, poll_s=min(1.0, max(0.2, s.heartbeat_s / 2)))
    fb = RelevanceFeedback(ctx.space, ctx.hw, ctx.rel.layer_scores(),
                           {n: ctx.rel.units(n) for n in ctx.space.prunable}, s.alpha)
    t0 = time.time()
    if strategy == "relevance":
        res = run_relevance(ev, fb, s.patience, s.max_iters)
    elif strategy == "uniform":
        res = run_uniform(ev)
    elif strategy == "random":
        res = run_random(ev, ctx.cfg.seed)
    else:
        seed_rel = s.seed_relevance if seed_relevance is None else seed_relevance
        res = run_optuna(ev, boundary_seeds(ctx.space, fb) if seed_rel else None)
    retried = ev.drain()  # wait for the other workers' designs; retry those of dead workers
    log.info("%s: %s; %d trained here (%d retried for dead workers), %d cache hits, %d cost-model calls "
             "(%.1f ms each) in %.1f s", strategy, res.stop_reason, ev.trained_here, ev.retried + retried,
             ev.cache_hits, ctx.hw.calls, 1e3 * ctx.hw.seconds / max(ctx.hw.calls, 1), time.time() - t0)
    return res


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the `--workers N` parent: the kernel sends SIGTERM when the
    parent dies (Linux prctl PDEATHSIG), a watchdog thread does the same elsewhere, and
    SIGTERM unwinds the worker so its running trial is marked FAIL (free for a retry)."""
    import signal
    import threading

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        raise SystemExit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker(cfg_dict: dict, out: str, strategy: str, storage_url: str, name: str, index: int,
            seed_relevance: bool | None, parent_pid: int | None = None) -> None:
    """Entry point of a worker process (spawned): rebuild the context, run the strategy."""
    import logging as _logging
    import sys

    from codesign.config import RunConfig as _RC, _build

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _logging.basicConfig(level=_logging.INFO, format=f"%(levelname)s w{index} %(name)s: %(message)s")
    torch.set_num_threads(1)
    try:
        cfg = _build(_RC, cfg_dict, "config")
        ctx = prepare(cfg, Path(out))
        run_strategy(ctx, strategy, storage_url, name, seed_relevance)
    except CodesignError as exc:  # one line, as the CLI would print it
        log.error("worker %d: %s", index, exc)
        sys.exit(2)
    except BaseException:  # SIGTERM (SystemExit), Ctrl-C, a crash: free this worker's designs now
        from codesign.search.study import fail_own_running_trials

        fail_own_running_trials(storage_url, name)
        raise


def write_study_info(ctx: SearchContext, strategy: str, storage_url: str, name: str, workers: int) -> None:
    """RUN/search/study.json: where the study lives, for `codesign search --status RUN` (the
    password of a database URL is not written; pass --storage to status then)."""
    write_json(ctx.search_dir / "study.json", {"storage": masked_url(storage_url), "study": name,
                                               "strategy": strategy, "workers": workers,
                                               "trials": ctx.cfg.search.trials})


def _run_workers(ctx: SearchContext, strategy: str, storage_url: str, name: str, workers: int,
                 seed_relevance: bool | None) -> None:
    """N spawned workers; they stop with this process (SIGTERM/SIGINT/exception here
    terminates them, and a killed parent takes them down through PDEATHSIG)."""
    import signal
    import threading

    mpc = mp.get_context("spawn")
    cfg_dict = dataclasses.asdict(ctx.cfg)
    procs = [mpc.Process(target=_worker, args=(cfg_dict, str(ctx.out), strategy, storage_url, name, i,
                                               seed_relevance, os.getpid()), name=f"codesign-worker-{i}")
             for i in range(workers)]
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGTERM) if main else None

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    if main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        alive = [p for p in procs if p.is_alive()]
        for p in alive:
            p.terminate()
        for p in alive:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()
        if main:
            signal.signal(signal.SIGTERM, old)
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        msg = f"{len(bad)} of {workers} search workers failed (exit codes {bad}; see their log lines above)"
        s = ctx.cfg.search
        study = open_study(make_storage(storage_url, s.heartbeat_s, s.grace_s, s.reconnect_s), name)
        done = len(completed_records(study))
        if len(bad) == workers or done < s.trials:
            raise CodesignError(f"{msg}; {done} of {s.trials} designs trained, kept in the study: re-run to resume")
        log.warning("%s; the others trained their designs (%d of %d), the search goes on", msg, done, s.trials)


def run_trials(ctx: SearchContext, strategy: str | None = None, storage_url: str | None = None,
               workers: int | None = None, seed_relevance: bool | None = None) -> dict[str, Any]:
    """The trial phase with N worker processes sharing one study (N=1: in this process)."""
    s = ctx.cfg.search
    strategy = strategy or s.strategy
    storage_url = storage_url or s.storage or default_storage_url(ctx.search_dir)
    name = study_name(ctx.cfg, strategy)
    workers = int(workers or s.workers)
    t0 = time.time()
    from codesign.search.feedback import InfeasibleBudgetError

    try:
        check_achievable(ctx.space, ctx.hw)
    except InfeasibleBudgetError as exc:  # reported, with the smallest design, never looped on
        write_json(ctx.search_dir / "infeasible.json", {"message": str(exc), **exc.smallest})
        raise
    write_study_info(ctx, strategy, storage_url, name, workers)
    if workers <= 1:
        res = run_strategy(ctx, strategy, storage_url, name, seed_relevance)
        info = {"converged": res.converged, "stop_reason": res.stop_reason}
    else:
        _run_workers(ctx, strategy, storage_url, name, workers, seed_relevance)
        info = {"converged": None, "stop_reason": f"{workers} workers finished"}
    storage = make_storage(storage_url, s.heartbeat_s, s.grace_s, s.reconnect_s)
    study = open_study(storage, name)
    info.update({"strategy": strategy, "storage": masked_url(storage_url), "study": name, "seconds": time.time() - t0,
                 "records": completed_records(study)})
    return info


# ----------------------------------------------------------------------------- finalists

def _full_qat(ctx: SearchContext, cand: Candidate, folder: Path) -> dict:
    """Full QAT + export of one design, skipped when folder/compress.json exists (resume)."""
    if (folder / "compress.json").is_file() and (folder / "model.onnx").is_file():
        s = read_json(folder / "compress.json")
        s["val_acc"] = s.get("qat_val_acc")
        return s
    return train_candidate(ctx, cand, folder, short=False, export=True)


def _row(ctx: SearchContext, cand: Candidate, summary: dict, name: str | None = None) -> dict:
    est = ctx.hw.estimate(cand, per_layer=True)
    return {"name": name, "plan_hash": cand.hash, "candidate": cand.to_json(), "describe": cand.describe(),
            "val_acc": summary.get("qat_val_acc"), "test_acc": summary.get("test_acc"), "feasible": est.feasible,
            "reason": est.reason, "fps": est.fps, **est.totals, "per_layer": est.per_layer}


def _copy(src: Path, dst: Path) -> None:
    from codesign.atomic import atomic_write

    atomic_write(dst, lambda p: shutil.copyfile(src, p))


def _hw_steps(ctx: SearchContext, build: Any) -> dict[str, str]:
    """RTL, rtlsim (real test images, every element checked) and Yosys synthesis of the
    compiled design, each only when asked."""
    from codesign.data import sample_batch
    from codesign.hw.steps import run_hw_steps

    h = ctx.cfg.hw
    if not (h.rtl or h.rtlsim or h.synth):
        return {}
    frames = int(h.rtlsim_frames) if h.rtlsim else 0
    x = sample_batch(ctx.splits, frames, split="test")[0].numpy() if frames else None
    return run_hw_steps(ctx.out / "BUILD", rtlsim_frames=frames, synth=h.synth, inputs=x)["summary"]


def train_baseline(ctx: SearchContext, bits: str) -> dict:
    """Full QAT + export of the uniform baseline ``bits`` (e.g. "w4a4") and its report row; the
    folder RUN/baselines/<bits>-<key> is shared by every strategy of the run (trained once)."""
    from codesign.models import parse_bits

    w, a = parse_bits(bits)
    cand = ctx.space.uniform(w, a) if (w in range(1, 9) and a in range(1, 9)) else None
    folder = ctx.out / "baselines" / f"{bits}-{_final_key(ctx.cfg)}"
    row = _row(ctx, cand, _full_qat(ctx, cand, folder), bits)
    row["accuracy"] = row["test_acc"]
    row["dir"] = str(folder)
    return row


def train_allocation(ctx: SearchContext, allocator: str = "relevance", kind: str = "ilp") -> dict:
    """One-shot bit allocation under the search's own hardware budget, then the finalists' full
    QAT + export: the exact ILP (``kind="ilp"``) or the greedy walk over the sensitivity table of
    ``allocator`` (relevance: the run's DeepLIFT scores; hessian: HAWQ-V2 traces), through
    `codesign.compress.pipeline.compress` as `codesign compress --bits ilp:...` does. Bits range
    over [min, max] of the search's weight widths, no pruning. Returns the same row as a
    finalist's (cost-model LUTs at the target FPS, test accuracy, "dir": the design folder)."""
    from codesign.compress.ilp import hw_budget_text
    from codesign.compress.pipeline import CompressConfig, compress

    cfg, s = ctx.cfg, ctx.cfg.search
    folder = ctx.out / "alloc" / f"{kind}-{allocator}-{_final_key(cfg)}"
    if (folder / "compress.json").is_file() and (folder / "model.onnx").is_file():
        summ = read_json(folder / "compress.json")  # resume: this allocation is trained already
    else:
        limits = {k: v for k, v in ctx.hw.limits.items() if k in s.budget}
        text = hw_budget_text(kind, limits, ctx.hw.target_fps, ctx.hw.board.name, ctx.hw.clock_ns)
        lo, hi = min(s.weight_bits), max(s.weight_bits)
        ccfg = CompressConfig(bits=text, allocator=allocator, bit_bounds=(lo, hi), qat=_train_config(cfg, False),
                              export=True, input_bits=cfg.qat.input_bits, seed=cfg.seed,
                              relevance_samples=s.relevance.samples)
        folder.mkdir(parents=True, exist_ok=True)
        summ = compress(ctx.float_ckpt, ctx.rel, folder, ccfg, splits=ctx.splits)
    cand = Candidate.from_plan(summ["plan"], cfg.qat.input_bits)
    row = _row(ctx, cand, summ, f"{kind} {allocator}")
    row["accuracy"] = row["test_acc"]
    row["dir"] = str(folder)
    return row


def finalize(ctx: SearchContext, info: dict, compile_design: bool = True, promote: bool = True) -> dict:
    """Full QAT of the Pareto finalists and the baselines, choice, export, compile, report.
    `promote`: copy the chosen design's qat.pt/plan.json/model.onnx into the run folder."""
    from codesign.search.pareto import pareto_front
    from codesign.search.report import plot_design, plot_front, write_markdown

    cfg, s = ctx.cfg, ctx.cfg.search
    sd = ctx.search_dir
    t0 = time.time()
    records = info["records"]
    for r in records:
        r["describe"] = Candidate.from_json(r["candidate"]).describe() if r.get("candidate") else ""
    if not records:
        raise CodesignError("the search trained no design (trial budget 0?); nothing to choose from")
    front = pareto_front(records)
    finalists = sorted(front, key=lambda r: -r["accuracy"])[:max(1, s.finalists)]
    rows = []
    for r in finalists:
        cand = Candidate.from_json(r["candidate"])
        folder = ctx.out / "final" / f"{cand.hash}-{_final_key(cfg)}"
        rows.append({**_row(ctx, cand, _full_qat(ctx, cand, folder)), "dir": str(folder)})
        log.info("finalist %s: full-QAT val %.4f test %.4f", cand.describe(), rows[-1]["val_acc"] or 0,
                 rows[-1]["test_acc"] or 0)
    if s.cost_model == "finn":  # FINN+'s estimates re-rank the finalists (too slow for every trial)
        from codesign.search.finn_rerank import rerank

        rerank(ctx, rows, _final_key(cfg))
    secs = {"finalists": time.time() - t0}
    t0 = time.time()
    chosen = max(rows, key=lambda r: (r["feasible"], r["val_acc"] or 0, -r["LUT"]))  # val, never test
    chosen["accuracy"] = chosen["test_acc"]
    baselines = [train_baseline(ctx, b) for b in s.baselines]
    secs["baselines"] = time.time() - t0
    # the chosen design becomes the run folder's qat.pt / plan.json / model.onnx
    src = ctx.out / "final" / f"{chosen['plan_hash']}-{_final_key(cfg)}"
    for f in ("qat.pt", "plan.json", "model.onnx", "model.check.json"):
        if promote and (src / f).is_file():
            _copy(src / f, ctx.out / f)
    summary: dict[str, Any] = {
        "name": cfg.name, "board": ctx.hw.board.name, "clock_ns": ctx.hw.clock_ns, "target_fps": ctx.hw.target_fps,
        "limits": {k: int(v) for k, v in ctx.hw.limits.items() if v and k in ("LUT", "BRAM_18K", "DSP")},
        "strategy": info["strategy"], "study": info["study"], "storage": info["storage"],
        "stop_reason": info.get("stop_reason"), "converged": info.get("converged"), "n_trials": len(records),
        "float_test_acc": read_json(ctx.out / "float.json").get("test_acc") if (ctx.out / "float.json").is_file() else None,
        "chosen": chosen, "baselines": baselines, "finalists": rows, "front": front,
    }
    if compile_design:
        t1 = time.time()
        try:
            from codesign.dataflow.build import BuildConfig, build_dataflow
        except ImportError as exc:
            raise CodesignError(f"compiling the chosen design needs codesign.dataflow.build ({exc})") from exc
        bcfg = BuildConfig(output_dir=ctx.out / "BUILD", board=ctx.hw.board.name, clock_ns=ctx.hw.clock_ns,
                           target_fps=ctx.hw.target_fps, max_fps=ctx.hw.target_fps is None, util=s.util)
        build = build_dataflow((ctx.out if promote else src) / "model.onnx", bcfg)
        tot = build.cost.get("total", {}) if isinstance(build.cost, dict) else {}
        summary["build"] = {"dir": str(ctx.out / "BUILD"), "fps": build.fold.get("estimated_fps"), **tot}
        secs["compile"] = time.time() - t1
        t1 = time.time()
        summary["hw_steps"] = _hw_steps(ctx, build)
        if summary["hw_steps"]:
            secs["rtl"] = time.time() - t1
    summary["final_dir"] = str(src)
    summary["seconds"] = {**ctx.seconds, "search": info.get("seconds", 0.0), **secs}
    lut_lim = ctx.hw.limits.get("LUT")
    plot_front(records, front, sd / "pareto.png", chosen, baselines, lut_lim)
    plot_design(chosen["candidate"], chosen["per_layer"], sd / "design.png")
    write_json(sd / "pareto.json", {"objectives": {"accuracy": "max (short-QAT val)", "LUT": "min", "fps": "max"},
                                    "front": front, "all": records})
    write_json(sd / "summary.json", summary)
    write_markdown(summary, sd / "report.md")
    log.info("report: %s", sd / "report.md")
    if promote:
        from codesign.search.html_report import write_html_report

        try:  # the page is a view of files already written: it must not fail the run
            write_html_report(ctx.out, summary)
        except Exception as exc:  # noqa: BLE001
            log.warning("HTML report not written: %s", exc)
    return summary
