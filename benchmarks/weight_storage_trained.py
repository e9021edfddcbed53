"""Weight storage on TRAINED, relevance-compressed TFC (issue 14 parts 4-5): `bench_weight_storage.py --trained`.

Why: the stand-in table of bench_weight_storage.py holds accuracy equal by construction (the
same seeded integer weights in every mode). Here every row is a network trained with the
product's own flow on Fashion-MNIST (``codesign.flow`` train_float -> run_qat -> export, and
``codesign.compress.pipeline.compress`` for relevance-weighted clustering and relevance
pruning, DeepLIFT relevance from ``codesign.relevance.compute_relevance``), its accuracy
measured on the full test set, the whole QONNX model compiled for a PYNQ-Z2
(``codesign.dataflow.build``), checked exact against QONNX on real test images
(``codesign.dataflow.verify``), and every HW node synthesised with Yosys
(``codesign.hw.synth.synth_design``, one node per run, cached by the node's content, so the
layers two designs share are synthesised once).

A *network* (one training run) is cached as ``<cells>/net__<row>__s<seed>.json``; a *design*
(a network compiled in one storage mode and synthesised) as ``<cells>/hw__<row>__<mode>__s<seed>.json``;
per-node Yosys counts under ``<cells>/nodes/``. Every write is atomic
(``codesign.atomic.write_json``), so a killed run loses at most the step in progress.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.atomic import write_json, write_text

log = logging.getLogger("bench_weight_storage.trained")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PART = "xc7z020clg400-1"


@dataclass(frozen=True)
class Row:
    """One compressed network: what `compress` does to the float TFC, and the storage modes its
    compiled design is synthesised in (``rom`` always: the same weights, plain storage)."""

    name: str
    what: str
    bits: str = "uniform:w4a4"
    cluster: int | None = None
    prune_filters: dict | None = None
    prune_weights: float | None = None
    modes: tuple[str, ...] = ("rom",)


#: (a) plain QAT; (b) relevance-weighted k-means to K shared values per layer + QAT fine-tuning
#: (INT4 weights: 4 and 8 centroids store 2- and 3-bit indices; 16 centroids need INT6 weights
#: to save anything); (c) fc2 pruned to 16 neurons by relevance (so the last layer, 16 x 10,
#: can be fully unfolded and still synthesised), then unstructured relevance pruning of every
#: FC layer's weights, QAT fine-tuned, the last layer as constants
ROWS = (
    Row("w4a4", "plain QAT w4a4"),
    Row("k4", "clustered K=4, w4a4", cluster=4, modes=("rom", "codebook")),
    Row("k8", "clustered K=8, w4a4", cluster=8, modes=("rom", "codebook")),
    Row("k16w6", "clustered K=16, w6a4", bits="uniform:w6a4", cluster=16, modes=("rom", "codebook")),
    Row("p0", "fc2 pruned to 16 neurons, w4a4 (accuracy only)", prune_filters={"fc2": 0.75}, modes=()),
    Row("p50", "fc2 -> 16, 50% of FC weights pruned", prune_filters={"fc2": 0.75}, prune_weights=0.5,
        modes=("rom", "constants")),
    Row("p80", "fc2 -> 16, 80% of FC weights pruned", prune_filters={"fc2": 0.75}, prune_weights=0.8,
        modes=("rom", "constants")),
    Row("p90", "fc2 -> 16, 90% of FC weights pruned", prune_filters={"fc2": 0.75}, prune_weights=0.9,
        modes=("rom", "constants")),
)
ROW = {r.name: r for r in ROWS}

#: folding of every MVAU (PE, SIMD): small enough that each node synthesises in about a minute
#: on a shared core, the same in every design; the last layer is pinned fully unfolded only
#: where it is stored as constants (and in that design's rom twin)
FOLD = {0: (1, 4), 1: (1, 4), 2: (1, 4), 3: (1, 4)}


@dataclass
class Settings:
    limit_train: int | None = 10000
    limit_test: int | None = None
    float_epochs: int = 3
    qat_epochs: int = 2
    lr_float: float = 2e-3
    lr_qat: float = 1e-3
    samples: int = 256
    verify: int = 50
    rtlsim: int = 5
    dataset: str = "fashion-mnist"
    model: str = "tfc"
    fold: dict = field(default_factory=lambda: dict(FOLD))
    progress: bool = False

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("progress", "fold")} | {
            "fold": {str(k): list(v) for k, v in self.fold.items()}}


# --------------------------------------------------------------------------- training

def _splits(st: Settings, seed: int):
    from codesign.data import load_dataset

    return load_dataset(st.dataset, seed=seed, limit_train=st.limit_train, limit_test=st.limit_test)


def float_checkpoint(st: Settings, seed: int, work: Path, splits) -> Path:
    """The float TFC of this seed (trained once, shared by every row)."""
    from codesign.flow import train_float
    from codesign.train import TrainConfig

    run = work / f"s{seed}"
    if not (run / "float.pt").is_file():
        train_float(st.model, st.dataset, run, TrainConfig(epochs=st.float_epochs, lr=st.lr_float, patience=None,
                                                           seed=seed, progress=st.progress),
                    limit_train=st.limit_train, limit_test=st.limit_test, splits=splits)
    return run / "float.pt"


def _relevance(float_ckpt: Path, splits, samples: int, seed: int):
    from codesign.data import sample_batch
    from codesign.flow import model_from_checkpoint
    from codesign.relevance import compute_relevance
    from codesign.train import load_checkpoint

    ck = load_checkpoint(float_ckpt)
    model = model_from_checkpoint(float_ckpt, ck["spec"], None, ck["state_dict"]).eval()
    x, y = sample_batch(splits, samples, split="train")
    return compute_relevance(model, ck["spec"], x, y, method="deeplift", seed=seed, progress=False)


def dead_units(onnx_path: str | Path) -> list[int]:
    """Per weight layer, the output units left without a single non-zero weight (an output
    class of the last layer among them can then only win through its bias)."""
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(str(onnx_path))
    out = []
    for n in m.graph.node:
        w = m.get_initializer(n.input[0]) if n.op_type == "Quant" else None
        if w is not None and w.ndim == 2:
            out.append(int(((w != 0).sum(0) == 0).sum()))
    return out


def train_row(row: Row, st: Settings, seed: int, work: Path) -> dict[str, Any]:
    """Train (or compress) one row's network and export it: {onnx, test_acc, ...}."""
    from codesign.compress.cluster import onnx_weight_levels
    from codesign.compress.pipeline import CompressConfig, compress
    from codesign.flow import export_checkpoint, run_qat
    from codesign.models import parse_bits, uniform_plan
    from codesign.train import TrainConfig, load_checkpoint

    t0 = time.time()
    splits = _splits(st, seed)
    fck = float_checkpoint(st, seed, work, splits)
    out = work / f"s{seed}" / row.name
    qat = TrainConfig(epochs=st.qat_epochs, lr=st.lr_qat, patience=None, seed=seed, progress=st.progress)
    info: dict[str, Any] = {"row": row.name, "seed": seed, "what": row.what,
                            "float_test_acc": load_checkpoint(fck)["meta"].get("test_acc")}
    if row.cluster is None and row.prune_filters is None and row.prune_weights is None:
        spec = load_checkpoint(fck)["spec"]
        w, a = parse_bits(row.bits.split(":", 1)[1])
        q = run_qat(fck, uniform_plan(spec, w, a), out, qat, splits=splits)
        onnx_path = export_checkpoint(out / "qat.pt", out / "model.onnx", check_samples=64, splits=splits)
        info["test_acc"] = q["test_acc"]
    else:
        rel = _relevance(fck, splits, st.samples, seed)
        cfg = CompressConfig(prune_filters=row.prune_filters, prune_weights=row.prune_weights, bits=row.bits,
                             cluster=row.cluster, qat=qat, seed=seed, relevance_samples=st.samples)
        s = compress(fck, rel, out, cfg, splits=splits)
        onnx_path = Path(s["onnx"]["path"])
        info.update(test_acc=s["test_acc"], test_acc_before_snap=s.get("qat_test_acc"),
                    weight_sparsity=(s.get("prune_weights") or {}).get("sparsity"),
                    widths=(s.get("prune_filters") or {}).get("widths"))
    levels = onnx_weight_levels(str(onnx_path))
    info.update(onnx=str(onnx_path), distinct_weights=[lv["distinct"] for lv in levels], zeros=[round(lv["zeros"] / lv["size"], 3) for lv in levels],
                shapes=[lv["shape"] for lv in levels], last_shape=levels[-1]["shape"],
                dead_units=dead_units(onnx_path),
                train_seconds=round(time.time() - t0, 1), test_images=len(splits.test))
    return info


# --------------------------------------------------------------------------- hardware

def folding_for(row: Row, mode: str, net: dict[str, Any], st: Settings) -> dict[str, dict[str, Any]]:
    """The folding config of one design: ``st.fold`` for every MVAU; in a constants row the last
    layer fully unfolded (in its rom twin too, so the two differ only in storage). ``codebook``:
    every MVAU whose distinct weights fit fewer index bits than its weight bits."""
    import math

    cfg: dict[str, dict[str, Any]] = {}
    wbits = int(row.bits.split(":")[1][1:].split("a")[0])
    for i, (pe, simd) in st.fold.items():
        cfg[f"MVAU_{i}"] = {"PE": int(pe), "SIMD": int(simd), "weight_storage": "rom"}
    if "constants" in row.modes:
        mw, mh = net["last_shape"]
        cfg[f"MVAU_{len(st.fold) - 1}"].update(PE=int(mh), SIMD=int(mw))
        if mode == "constants":
            cfg[f"MVAU_{len(st.fold) - 1}"]["weight_storage"] = "constants"
    if mode == "codebook":
        for i, k in enumerate(net["distinct_weights"]):
            if max(1, math.ceil(math.log2(max(k, 2)))) < wbits:
                cfg[f"MVAU_{i}"]["weight_storage"] = "codebook"
    return cfg


def node_key(spec: Any) -> str:
    """Content hash of a HW node (op type, attributes, initializers), its name left out."""
    h = hashlib.sha256(spec.op_type.encode())
    h.update(json.dumps({k: str(v) for k, v in spec.attrs.items()}, sort_keys=True).encode())
    for k in sorted(spec.inits):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(spec.inits[k], dtype=np.float64)).tobytes())
    return h.hexdigest()[:24]


def synth_node(spec: Any, cache: Path) -> dict[str, Any]:
    """Yosys counts of one HW node synthesised alone (cached by content, written atomically)."""
    from codesign.hw.rtl import HWNodeSpec, render_nodes
    from codesign.hw.synth import synth_design

    cf = cache / f"{spec.op_type}_{node_key(spec)}.json"
    if cf.is_file():
        return json.loads(cf.read_text())
    one = HWNodeSpec("n", spec.op_type, spec.attrs, spec.inits)
    with tempfile.TemporaryDirectory(prefix="wst.") as d:
        rep = synth_design(render_nodes([one], Path(d) / "rtl"), PART)
    n = rep["nodes"]["n"]
    row = {r: int(n[r]) for r in ("LUT", "FF", "BRAM_18K", "DSP")}
    row["synth_seconds"] = rep["synth_seconds"]
    write_json(cf, row)
    log.info("yosys %s (%s): %s", spec.name, spec.attrs.get("weight_storage", "-"), row)
    return row


def build_design(row: Row, mode: str, net: dict[str, Any], st: Settings, seed: int, work: Path,
                 cache: Path, synth: bool = True, auto: bool = True) -> dict[str, Any]:
    """Compile one network in one storage mode for a PYNQ-Z2, verify it against QONNX on
    ``st.verify`` real test images, synthesise every HW node (Yosys); ``auto``: also compile it
    with ``weight_storage="auto"`` at the same folding to record what the cost model picks."""
    from qonnx.custom_op.registry import getCustomOp

    from codesign.data import sample_batch
    from codesign.dataflow.build import BuildConfig, build_dataflow
    from codesign.dataflow.verify import verify_build
    from codesign.hw.rtl import hw_node_specs
    from codesign.hw.synth import estimates_for

    t0 = time.time()
    build = work / f"s{seed}" / row.name / f"build_{mode}"
    fold = folding_for(row, mode, net, st)
    res = build_dataflow(net["onnx"], BuildConfig(output_dir=build, board="Pynq-Z2", clock_ns=10.0, folding=fold))
    auto_modes = None
    if auto:
        am = build_dataflow(net["onnx"], BuildConfig(output_dir=build.parent / f"auto_{mode}", board="Pynq-Z2",
                                                     clock_ns=10.0, folding={k: {kk: v[kk] for kk in ("PE", "SIMD")}
                                                                             for k, v in fold.items()},
                                                     weight_storage="auto")).model
        auto_modes = {n.name: getCustomOp(n).get_nodeattr("weight_storage") for n in am.graph.node
                      if n.op_type == "MVAU"}
    x, _ = sample_batch(_splits(st, seed), st.verify, split="test")
    rep = verify_build(build / "source.onnx", res.model, st.verify, inputs=x.numpy(),
                       report_path=build / "report" / "verify.json")
    if not rep["ok"]:
        raise RuntimeError(f"{row.name} {mode}: compiled graph != QONNX ({rep.get('first_differing_node')})")
    modes = {n.name: getCustomOp(n).get_nodeattr("weight_storage") for n in res.model.graph.node
             if n.op_type == "MVAU"}
    est = estimates_for(res.model)
    nodes: dict[str, Any] = {}
    for spec in hw_node_specs(res.model):
        e = est.get(spec.name, {})
        entry: dict[str, Any] = {"op": spec.op_type, "est": {r: int(np.asarray(e[r])) for r in
                                                            ("LUT", "FF", "BRAM_18K", "DSP") if r in e}}
        if spec.op_type == "MVAU":
            entry.update(PE=int(spec.attrs["PE"]), SIMD=int(spec.attrs["SIMD"]), MW=int(spec.attrs["MW"]),
                         MH=int(spec.attrs["MH"]), storage=modes[spec.name],
                         distinct=int(len(np.unique(spec.inits["W"]))),
                         zeros=round(float(np.mean(np.asarray(spec.inits["W"]) == 0)), 3))
        if synth:
            entry["yosys"] = synth_node(spec, cache)
        nodes[spec.name] = entry
    total = {"est": {r: sum(n["est"].get(r, 0) for n in nodes.values()) for r in ("LUT", "FF", "BRAM_18K", "DSP")}}
    if synth:
        total["yosys"] = {r: sum(n["yosys"][r] for n in nodes.values()) for r in ("LUT", "FF", "BRAM_18K", "DSP")}
    return {"row": row.name, "mode": mode, "seed": seed, "folding": fold, "storage": modes, "auto_storage": auto_modes,
            "verify_ok": bool(rep["ok"]), "verify_inputs": int(rep["inputs_checked"]),
            "estimated_fps": res.performance["estimated_throughput_fps"], "nodes": nodes, "total": total,
            "build": str(build), "seconds": round(time.time() - t0, 1)}


def rtlsim_design(cell: dict[str, Any], st: Settings, seed: int) -> dict[str, Any]:
    """Verilator on ``st.rtlsim`` real test images, bit-exact against the compiled graph and QONNX."""
    from codesign.data import sample_batch
    from codesign.hw.rtlsim import rtlsim_build

    x, _ = sample_batch(_splits(st, seed), st.rtlsim, split="test")
    perf = rtlsim_build(cell["build"], x.numpy(), st.rtlsim)
    return {"frames": int(perf["N"]), "bit_exact_frames": int(perf.get("bit_exact_frames", perf["N"])),
            "checked_against": perf.get("checked_against"), "cycles_per_frame": perf.get("stable_cycles_per_frame"),
            "estimated_cycles": perf.get("estimated_max_cycles")}


# --------------------------------------------------------------------------- cells

def _cell(cells: Path, *parts: Any) -> Path:
    return cells / ("__".join(str(p) for p in parts) + ".json")


def train_cells(rows: list[str], seeds: list[int], st: Settings, cells: Path, work: Path) -> list[str]:
    """Every (row, seed) network not cached yet; returns the failures (not cached, retried next run)."""
    failed = []
    for seed in seeds:
        for name in rows:
            f = _cell(cells, "net", name, f"s{seed}")
            if f.is_file():
                continue
            log.info("training %s seed %d", name, seed)
            try:
                info = train_row(ROW[name], st, seed, work)
            except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the others
                log.exception("network %s seed %d failed", name, seed)
                failed.append(f"net {name} s{seed}: {type(exc).__name__}: {exc}"[:300])
                continue
            write_json(f, {**info, "settings": st.public()})
            log.info("network %s seed %d: test acc %.4f", name, seed, info["test_acc"])
    return failed


def hw_cells(rows: list[str], seed: int, st: Settings, cells: Path, work: Path, wait: bool = False,
             rtlsim: tuple[tuple[str, str], ...] = (("k4", "codebook"), ("p90", "constants")),
             synth: bool = True, auto: bool = True) -> list[str]:
    """Compile + verify + synthesise every (row, mode) of ``seed`` whose network exists (``wait``:
    poll until the training stage has written each), then Verilator on the ``rtlsim`` designs."""
    failed: list[str] = []
    todo = [(n, m) for n in rows for m in ROW[n].modes]
    while todo:
        progressed = False
        for name, mode in list(todo):
            netf = _cell(cells, "net", name, f"s{seed}")
            f = _cell(cells, "hw", name, mode, f"s{seed}")
            if f.is_file():
                todo.remove((name, mode))
                continue
            if not netf.is_file():
                continue
            net = json.loads(netf.read_text())
            log.info("design %s %s seed %d", name, mode, seed)
            try:
                cell = build_design(ROW[name], mode, net, st, seed, work, cells / "nodes", synth=synth, auto=auto)
                if (name, mode) in rtlsim:
                    cell["rtlsim"] = rtlsim_design(cell, st, seed)
            except Exception as exc:  # noqa: BLE001
                log.exception("design %s %s failed", name, mode)
                failed.append(f"hw {name} {mode} s{seed}: {type(exc).__name__}: {exc}"[:300])
                todo.remove((name, mode))
                continue
            write_json(f, cell)
            todo.remove((name, mode))
            progressed = True
            log.info("design %s %s: yosys %s, est %s", name, mode, cell["total"].get("yosys"), cell["total"]["est"])
        if todo and not progressed:
            if not wait:
                break
            time.sleep(20)
    return failed


def main(args: Any) -> None:
    """``bench_weight_storage.py --trained`` (see its --help)."""
    st = Settings(limit_train=args.limit_train, float_epochs=args.float_epochs, qat_epochs=args.qat_epochs,
                  verify=args.verify, rtlsim=args.rtlsim)
    rows = args.rows or [r.name for r in ROWS]
    unknown = [r for r in rows if r not in ROW]
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROW)}")
    cells, work = Path(args.cells), Path(args.work)
    failed: list[str] = []
    if args.stage in ("all", "train"):
        failed += train_cells(rows, [args.hw_seed] + [s for s in args.seeds if s != args.hw_seed], st, cells, work)
    if args.stage in ("all", "hw"):
        failed += hw_cells(rows, args.hw_seed, st, cells, work, wait=args.stage == "hw")
    for line in failed:
        log.error("failed (not cached, rerun to retry): %s", line)
    write_report(cells, st)


# --------------------------------------------------------------------------- report

def load_cells(cells: Path) -> tuple[dict[tuple[str, int], dict], dict[tuple[str, str, int], dict]]:
    nets, hws = {}, {}
    for f in sorted(Path(cells).glob("net__*.json")):
        d = json.loads(f.read_text())
        nets[(d["row"], int(d["seed"]))] = d
    for f in sorted(Path(cells).glob("hw__*.json")):
        d = json.loads(f.read_text())
        hws[(d["row"], d["mode"], int(d["seed"]))] = d
    return nets, hws


def accuracy_summary(nets: dict[tuple[str, int], dict]) -> dict[str, dict[str, Any]]:
    """Per row: accuracies by seed, mean, sd, the difference to (a) and whether it lies within
    seed noise: |mean - mean(a)| <= 2 x the noise of (a), the noise being its sd over seeds (or,
    with one seed, the binomial standard error of a test accuracy on N images, times sqrt 2 for
    a difference of two)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ROW:
        accs = {s: d["test_acc"] for (r, s), d in nets.items() if r == name}
        if not accs:
            continue
        v = list(accs.values())
        n_img = next(d["test_images"] for (r, _), d in nets.items() if r == name)
        dead = {str(s): d.get("dead_units") for (r, s), d in sorted(nets.items()) if r == name}
        out[name] = {"by_seed": {str(k): accs[k] for k in sorted(accs)}, "dead_units": dead,
                     "mean": statistics.mean(v),
                     "sd": statistics.stdev(v) if len(v) > 1 else None, "n": len(v), "test_images": n_img}
    base = out.get("w4a4")
    if base:
        p = base["mean"]
        se = (p * (1 - p) / base["test_images"]) ** 0.5 * 2 ** 0.5
        noise = max(base["sd"] or 0.0, se)
        for name, a in out.items():
            # compare on the seeds both rows have, so a row trained on fewer seeds is not
            # judged against a mean over other seeds
            common = [s for s in a["by_seed"] if s in base["by_seed"]]
            d = statistics.mean(a["by_seed"][s] - base["by_seed"][s] for s in common) if common else None
            a.update(delta_vs_a=d, seeds_compared=len(common), noise=noise,
                     within_noise=None if d is None else bool(abs(d) <= 2 * noise))
    return out


def _pct(saved: float, plain: float) -> str:
    return f"{100 * saved / plain:+.0f}%" if plain else "–"


def write_report(cells: Path, st: Settings, results: Path = RESULTS) -> dict[str, Any]:
    """Merge the --trained section into benchmarks/results/weight_storage.{json,md} (the
    stand-in table stays as it is)."""
    nets, hws = load_cells(cells)
    for (name, seed), d in nets.items():  # cells written before dead_units was recorded
        if "dead_units" not in d and Path(d["onnx"]).is_file():
            d["dead_units"] = dead_units(d["onnx"])
            write_json(_cell(cells, "net", name, f"s{seed}"), d)
    acc = accuracy_summary(nets)
    doc = {"settings": st.public(), "accuracy": acc,
           "designs": [hws[k] for k in sorted(hws)],
           "networks": [nets[k] for k in sorted(nets)]}
    jp = Path(results) / "weight_storage.json"
    full = json.loads(jp.read_text()) if jp.is_file() else {}
    full["trained"] = doc
    write_json(jp, full)
    import bench_weight_storage as bws

    md = bws.markdown(full.get("rows", [])) if full.get("rows") else ""
    write_text(Path(results) / "weight_storage.md", md + "\n" + markdown(doc))
    log.info("wrote %s and %s", jp, Path(results) / "weight_storage.md")
    return doc


def markdown(doc: dict[str, Any]) -> str:
    """The --trained section: one row per design, then per layer."""
    st, acc = doc["settings"], doc["accuracy"]
    designs = {(d["row"], d["mode"]): d for d in doc["designs"]}
    out = ["## Trained, relevance-compressed TFC (`bench_weight_storage.py --trained`)", "",
           f"Fashion-MNIST, {st['limit_train']} training images (10% held out for validation), the full test set "
           f"({next(iter(acc.values()))['test_images'] if acc else '?'} images); float {st['float_epochs']} epochs, "
           f"QAT / compression fine-tuning {st['qat_epochs']} epochs; DeepLIFT relevance on {st['samples']} training "
           f"images. PYNQ-Z2 (xc7z020), every MVAU at PE x SIMD "
           f"{', '.join(f'{p}x{s}' for p, s in st['fold'].values())} except where noted; compiled == QONNX "
           f"checked on {min((d['verify_inputs'] for d in doc['designs']), default=0)} test images per design "
           f"({'all exact' if all(d['verify_ok'] for d in doc['designs']) else 'MISMATCH'}); Yosys 0.23 `synth_xilinx -family xc7` per node "
           "(estimate in brackets), totals over every HW node (MVAUs, FIFOs, width converters). "
           "Saved = plain - this design (negative: it costs more), in % of plain: against the same network in "
           "plain `rom` storage (same weights, so the same accuracy) and against (a), the plain w4a4 network "
           "(only at the same folding: the pruned rows unfold their last layer). "
           "Within seed noise: |Δ| <= 2 x the seed sd of (a) (with one seed: of the binomial error of "
           "two test accuracies), Δ averaged over the seeds both rows have.", "",
           "| row | network | test acc | Δ vs (a) | within seed noise | storage | LUT | FF | BRAM18 | "
           "LUT saved vs same-weights rom | BRAM18 saved vs same-weights rom | LUT saved vs (a) | BRAM18 saved vs (a) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = designs.get(("w4a4", "rom"))
    for r in ROWS:
        a = acc.get(r.name)
        if a is not None and not r.modes:
            dl = a.get("delta_vs_a")
            out.append(f"| {r.name} | {r.what} | {100 * a['mean']:.2f}%"
                       + (f" ± {100 * a['sd']:.2f} (n={a['n']})" if a["sd"] is not None else "")
                       + f" | {'–' if dl is None else f'{100 * dl:+.2f} pt'} | "
                       + ("–" if a.get("within_noise") is None else ("yes" if a["within_noise"] else "**no**"))
                       + " | – | – | – | – | – | – | – | – |")
        for mode in r.modes:
            d = designs.get((r.name, mode))
            if d is None or a is None:
                continue
            y, e = d["total"].get("yosys"), d["total"]["est"]
            if y is None:
                continue
            acc_s = (f"{100 * a['mean']:.2f}%" + (f" ± {100 * a['sd']:.2f} (n={a['n']})" if a["sd"] is not None else ""))
            dl = a.get("delta_vs_a")
            dl_s = "–" if r.name == "w4a4" or dl is None else f"{100 * dl:+.2f} pt (n={a['seeds_compared']})"
            wn = "–" if r.name == "w4a4" or a.get("within_noise") is None else ("yes" if a["within_noise"] else "**no**")
            plain = designs.get((r.name, "rom"))
            sv_l = sv_b = "–"
            if mode != "rom" and plain and plain["total"].get("yosys"):
                p = plain["total"]["yosys"]
                sv_l = f"{p['LUT'] - y['LUT']} ({_pct(p['LUT'] - y['LUT'], p['LUT'])})"
                sv_b = f"{p['BRAM_18K'] - y['BRAM_18K']} ({_pct(p['BRAM_18K'] - y['BRAM_18K'], p['BRAM_18K'])})"
            va_l = va_b = "–"
            same_fold = base is not None and all(
                (v.get("PE"), v.get("SIMD")) == (base["nodes"].get(n, {}).get("PE"), base["nodes"].get(n, {}).get("SIMD"))
                for n, v in d["nodes"].items() if v["op"] == "MVAU")
            if same_fold and base["total"].get("yosys") and (r.name, mode) != ("w4a4", "rom"):
                b = base["total"]["yosys"]
                va_l = _pct(b["LUT"] - y["LUT"], b["LUT"])
                va_b = _pct(b["BRAM_18K"] - y["BRAM_18K"], b["BRAM_18K"])
            stor = ", ".join(f"fc{k.split('_')[-1]} {v}" for k, v in d["storage"].items() if v != "rom") or "rom"
            out.append(f"| {r.name} | {r.what} | {acc_s} | {dl_s} | {wn} | {stor} | {y['LUT']:,} ({e['LUT']:,}) | "
                       f"{y['FF']:,} | {y['BRAM_18K']} ({e['BRAM_18K']}) | {sv_l} | {sv_b} | {va_l} | {va_b} |")
    dead = {n: a["dead_units"] for n, a in acc.items() if any((v or [0])[-1] for v in a.get("dead_units", {}).values())}
    if dead:
        out += ["", "Output classes left without a single non-zero weight in the last layer, per seed (relevance "
                "masks rank a layer's weights by unit relevance x contribution, so a low-relevance class loses "
                "all of its weights; such a class can only win through its bias): " + "; ".join(
                    f"{n}: " + ", ".join(f"s{s} {v[-1] if v else '?'}" for s, v in d.items()) for n, d in dead.items())
                + "."]
    out += ["", "Per layer (MVAU_i = fc_i): Yosys LUT / FF / BRAM18, estimate LUT / BRAM18 in brackets.", "",
            "| row | storage | layer | MW x MH | PE x SIMD | distinct w | zeros | mode | LUT | FF | BRAM18 |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in ROWS:
        for mode in r.modes:
            d = designs.get((r.name, mode))
            if d is None or d["total"].get("yosys") is None:
                continue
            for n, v in d["nodes"].items():
                if v["op"] != "MVAU":
                    continue
                y, e = v["yosys"], v["est"]
                out.append(f"| {r.name} | {mode} | {n} | {v['MW']} x {v['MH']} | {v['PE']} x {v['SIMD']} | {v['distinct']} "
                           f"| {v['zeros']:.0%} | {v['storage']} | {y['LUT']:,} ({e['LUT']:,}) | {y['FF']:,} | "
                           f"{y['BRAM_18K']} ({e['BRAM_18K']}) |")
    sims = [d for d in doc["designs"] if d.get("rtlsim")]
    if sims:
        out += ["", "Verilator (real test images, bit-exact against the compiled graph and the QONNX model):", ""]
        for d in sims:
            s = d["rtlsim"]
            out.append(f"- {d['row']} {d['mode']}: {s['bit_exact_frames']}/{s['frames']} frames bit-exact vs "
                       f"{' and '.join(s.get('checked_against') or ['dataflow.onnx'])}; {s['cycles_per_frame']:,.0f} "
                       f"cycles/frame (estimate {s['estimated_cycles']:,})")
    autos = [d for d in doc["designs"] if d["mode"] != "rom" and d.get("auto_storage")]
    if autos:
        out += ["", "What `--weight-storage auto` (the cost model) picks at the same folding: " + "; ".join(
            f"{d['row']}: {', '.join(f'{k}={v}' for k, v in d['auto_storage'].items())}" for d in autos) + "."]
    return "\n".join(out) + "\n"
