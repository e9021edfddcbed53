"""Weight storage that pays in hardware: plain ROMs vs codebook vs constants, Yosys counts.

Why: relevance-weighted clustering (codesign.compress.cluster) and unstructured pruning change
nothing in the hardware unless the MVAU stores the weights differently. Every row here is one
layer config synthesised alone with Debian Yosys 0.23 (``synth_xilinx -family xc7``, via
codesign.hw.synth) in each storage mode, on the SAME integer weights: the modes are exact
(same integer matmul, rtlsim-checked in tests/test_weight_storage.py), so accuracy is equal by
construction and the saving is pure hardware. Weights: seeded Laplacian draws on the layer's
INT grid (stand-ins for trained TFC weights), clustered with the project's relevance-weighted
k-means (``kmeans_1d`` with |w| as the sample weight) and snapped to integers; pruning zeroes
the smallest magnitudes. Layers: TFC's fc0 (784 x 64, block-RAM ROM) and fc1 (64 x 64, LUT ROM)
for codebook storage, a small 16 x 10 layer fully unfolded for constants.

Run: ``nice -n 10 python benchmarks/bench_weight_storage.py`` (writes
benchmarks/results/weight_storage.{json,md}; rows are cached in build/bench_weight_storage so
a killed run resumes). ``--fit``: synthesise the small fitting corpus and print the
CODEBOOK_COEFFS / CONSTANTS_COEFFS block of codesign/dataflow/ops/mvau.py.

``--trained``: the same comparison on TRAINED, relevance-compressed TFC networks at measured
accuracy (benchmarks/weight_storage_trained.py): plain QAT, relevance-weighted clustering and
relevance pruning through the product's own flow, each whole network compiled for a PYNQ-Z2,
verified against QONNX, synthesised per node with Yosys; its own cells under
benchmarks/results/weight_storage_trained_cells and its own section in weight_storage.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's codesign, not an installed one

from codesign.atomic import write_json, write_text
from codesign.compress.cluster import kmeans_1d
from codesign.dataflow.ops.mvau import (CODEBOOK_COEFFS, CONSTANTS_COEFFS, MVAU, mvau_codebook_features,
                                        mvau_constants_features, mvau_resources)
from codesign.dataflow.cost import ram_code, res_code
from codesign.hw.rtl import HWNodeSpec, render_nodes
from codesign.hw.synth import synth_design

log = logging.getLogger("bench_weight_storage")
ROOT = Path(__file__).resolve().parent
CACHE = ROOT.parent / "build" / "bench_weight_storage"


def layer_weights(MW: int, MH: int, wbits: int, seed: int) -> np.ndarray:
    """Seeded Laplacian integer weights on an INT<wbits> grid (most weights small, few large)."""
    rng = np.random.default_rng(seed)
    hi = (1 << (wbits - 1)) - 1
    return np.clip(np.round(rng.laplace(0.0, hi / 3.0, size=(MW, MH))), -hi - 1, hi).astype(np.int64)


def cluster(W: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Relevance-weighted k-means (|w| as the relevance stand-in), centroids snapped to integers."""
    flat = W.reshape(-1).astype(np.float64)
    cents, labels = kmeans_1d(flat, k, sample_weight=np.abs(flat) + 1e-3, seed=seed)
    return np.round(np.asarray(cents)[np.asarray(labels)]).astype(np.int64).reshape(W.shape)


def prune(W: np.ndarray, ratio: float) -> np.ndarray:
    """Unstructured magnitude pruning: the smallest `ratio` of |w| set to zero."""
    out = W.copy()
    n = int(round(ratio * W.size))
    out.reshape(-1)[np.argsort(np.abs(W).reshape(-1), kind="stable")[:n]] = 0
    return out


def thresholds(W: np.ndarray, abits: int, nthr: int, seed: int) -> np.ndarray:
    """Sorted per-row thresholds spread over the accumulator range (a UINT activation)."""
    xh = (1 << abits) - 1
    hi = (np.maximum(W, 0) * xh).sum(0)
    lo = (np.minimum(W, 0) * xh).sum(0)
    rng = np.random.default_rng(seed)
    t = [np.sort(rng.integers(int(l) // 4, max(int(h) // 4, int(l) // 4 + 1) + 1, size=nthr)) for l, h in zip(lo, hi)]
    return np.array(t, dtype=np.float64)


def node(name: str, W: np.ndarray, PE: int, SIMD: int, storage: str, T: np.ndarray | None, wbits: int,
         abits: int = 4, obits: int = 4) -> HWNodeSpec:
    MW, MH = W.shape
    a = dict(MW=MW, MH=MH, PE=PE, SIMD=SIMD, inputDataType=f"UINT{abits}", weightDataType=f"INT{wbits}",
             outputDataType=f"UINT{obits}" if T is not None else "INT24", ActVal=0, noActivation=int(T is None),
             numInputVectors=[1], resType="lut", ram_style="auto", weight_storage=storage)
    inits = {"W": W}
    if T is not None:
        inits["T"] = T
    return HWNodeSpec(name, "MVAU", a, inits)


class NotCached(Exception):
    """--cached-only: this row has not been synthesised yet."""


def synth_row(spec: HWNodeSpec, cached_only: bool = False) -> dict[str, Any]:
    """Yosys counts of one node (cached by the node's content)."""
    h = hashlib.sha256(json.dumps({k: str(v) for k, v in spec.attrs.items()}, sort_keys=True).encode())
    for v in spec.inits.values():
        h.update(np.ascontiguousarray(v).tobytes())
    cf = CACHE / f"{h.hexdigest()[:20]}.json"
    if cf.is_file():
        return json.loads(cf.read_text())
    if cached_only:
        raise NotCached(spec.name)
    with tempfile.TemporaryDirectory() as d:
        rep = synth_design(render_nodes([spec], Path(d) / "rtl"), "xc7z020clg400-1")
    n = rep["nodes"][spec.name]
    row = {r: int(n[r]) for r in ("LUT", "FF", "BRAM_18K", "DSP")}
    row["synth_seconds"] = rep["synth_seconds"]
    write_json(cf, row)
    return row


def estimate(spec: HWNodeSpec) -> dict[str, int]:
    a = MVAU.declared_defaults()
    a.update(spec.attrs)
    p = MVAU.params_from_attrs(a, spec.inits)
    r = MVAU.resources(p)
    return {k: int(np.asarray(r[k])) for k in ("LUT", "FF", "BRAM_18K")}


# --------------------------------------------------------------------------- the table

#: TFC's MVAUs (MW x MH) at a folding that keeps fc0 in block RAM; INT6 weights so that 4, 8 and
#: 16 centroids (2-4 index bits) all store fewer bits than the plain codes
#: (name, MW, MH, PE, SIMD, centroid counts): fc0 deep enough for block RAM, fc1 a LUT ROM;
#: INT6 weights so that 4, 8 and 16 centroids (2-4 index bits) store fewer bits than the codes
TFC = [("fc0", 784, 64, 2, 8, (4, 16)), ("fc1", 64, 64, 2, 4, (4,))]
#: small layers at full unfolding for the constants mode, after unstructured pruning: the last
#: layer of a hidden-16 TFC (TFC's own 64 x 10 fully unfolded is ~45k LUTs in plain storage,
#: too slow to synthesise on a shared 2-core machine)
CONST_LAYERS = [("fc_last", 16, 10)]
PRUNE = (0.9, 0.5)


def table_specs(wbits: int = 6) -> list[tuple[dict[str, Any], list[tuple[str, HWNodeSpec]]]]:
    """(row header, [(mode, node)]) for every row of the table, weights built once."""
    out = []
    for i, (name, MW, MH, PE, SIMD, centroids) in enumerate(TFC):
        base = layer_weights(MW, MH, wbits, seed=i)
        for k in centroids:
            W = cluster(base, k, seed=i)
            T = thresholds(W, 4, 15, seed=i)
            row = {"layer": name, "MW": MW, "MH": MH, "PE": PE, "SIMD": SIMD, "wbits": wbits,
                   "centroids": int(len(np.unique(W))), "sparsity": round(float(np.mean(W == 0)), 3)}
            out.append((row, [(st, node(f"{name}_{st}", W, PE, SIMD, st, T, wbits)) for st in ("rom", "codebook")]))
    for i, (name, MW, MH) in enumerate(CONST_LAYERS):
        base = layer_weights(MW, MH, 4, seed=10 + i)
        for r in PRUNE:
            W = prune(base, r)
            T = thresholds(W, 4, 15, seed=i)
            row = {"layer": name, "MW": MW, "MH": MH, "PE": MH, "SIMD": MW, "wbits": 4,
                   "centroids": int(len(np.unique(W))), "sparsity": round(float(np.mean(W == 0)), 3)}
            out.append((row, [(st, node(f"{name}_{st}", W, MH, MW, st, T, 4)) for st in ("rom", "constants")]))
    return out


def run_table(cached_only: bool = False, jobs: int = 2) -> list[dict[str, Any]]:
    """All rows (``cached_only``: only those already synthesised, for a table of a partial run);
    ``jobs`` Yosys runs at a time."""
    from concurrent.futures import ThreadPoolExecutor

    plan = table_specs()
    specs = [spec for _, modes in plan for _, spec in modes]

    def one(spec: HWNodeSpec) -> dict[str, Any] | None:
        try:
            r = synth_row(spec, cached_only)
        except NotCached:
            return None
        log.info("%s %s: %s", spec.name, spec.attrs["weight_storage"], r)
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        counts = list(ex.map(one, specs))
    rows, i = [], 0
    for head, modes in plan:
        row = dict(head)
        ok = True
        for st, spec in modes:
            c = counts[i]
            i += 1
            if c is None:
                ok = False
                continue
            row[st] = c
            row[st + "_est"] = estimate(spec)
        if ok:
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["# Weight storage: plain ROM vs codebook vs constants (Yosys 0.23 synth_xilinx -family xc7)", "",
           "Same integer weights in every mode (exact: equal accuracy by construction). "
           "Yosys counts, estimate in brackets; saved = plain - mode.", "",
           "| layer | MW x MH | PE x SIMD | W bits | distinct w | zeros | mode | LUT plain | LUT mode | "
           "BRAM18 plain | BRAM18 mode | FF plain | FF mode | LUT saved | BRAM18 saved |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mode = "codebook" if "codebook" in r else "constants"
        a, b = r["rom"], r[mode]
        ea, eb = r["rom_est"], r[mode + "_est"]
        out.append(f"| {r['layer']} | {r['MW']} x {r['MH']} | {r['PE']} x {r['SIMD']} | {r['wbits']} | "
                   f"{r['centroids']} | {r['sparsity']:.0%} | {mode} | {a['LUT']} ({ea['LUT']}) | {b['LUT']} "
                   f"({eb['LUT']}) | {a['BRAM_18K']} ({ea['BRAM_18K']}) | {b['BRAM_18K']} ({eb['BRAM_18K']}) | "
                   f"{a['FF']} | {b['FF']} | {a['LUT'] - b['LUT']} | {a['BRAM_18K'] - b['BRAM_18K']} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the fit

#: small fitting corpus (distinct from the table's layers)
FIT_CODEBOOK = [(64, 16, 2, 8, 6, 4), (128, 16, 2, 8, 6, 8), (96, 8, 1, 8, 4, 4), (64, 32, 4, 4, 6, 16)]
FIT_CONST = [(16, 4, 4, 0.5), (16, 8, 4, 0.8), (32, 8, 4, 0.7), (24, 6, 4, 0.0), (32, 4, 6, 0.9)]


def fit() -> dict[str, Any]:
    from scipy.optimize import nnls

    cb_x_l, cb_y_l, cb_x_f, cb_y_f = [], [], [], []
    cb_base: dict[str, list[float]] = {"LUT": [], "FF": []}
    for j, (MW, MH, PE, SIMD, wbits, k) in enumerate(FIT_CODEBOOK):
        W = cluster(layer_weights(MW, MH, wbits, seed=100 + j), k, seed=j)
        spec = node("cb", W, PE, SIMD, "codebook", None, wbits)
        y = synth_row(spec)
        a = MVAU.declared_defaults()
        a.update(spec.attrs)
        p = MVAU.params_from_attrs(a, spec.inits)
        base = mvau_resources(p["MW"], p["MH"], p["PE"], p["SIMD"], p["wbits"], p["abits"], p["obits"],
                              p["acc_bits"], p["n_thr"], ram_code(p["ram_style"]), res_code(p["resType"]),
                              p["xnor"], 0, rom_wbits=p["cb_bits"])
        f = mvau_codebook_features(p)
        cb_base["LUT"].append(float(base["LUT"]))
        cb_base["FF"].append(float(base["FF"]))
        cb_x_l.append([float(v) for v in f["LUT"]])
        cb_y_l.append(y["LUT"] - float(base["LUT"]))
        cb_x_f.append([float(v) for v in f["FF"]])
        cb_y_f.append(y["FF"] - float(base["FF"]))
    c_x_l, c_y_l, c_x_f, c_y_f = [], [], [], []
    for j, (MW, MH, wbits, r) in enumerate(FIT_CONST):
        W = prune(layer_weights(MW, MH, wbits, seed=200 + j), r)
        T = thresholds(W, 4, 15, seed=j) if j % 2 == 0 else None
        spec = node("cst", W, MH, MW, "constants", T, wbits)
        y = synth_row(spec)
        a = MVAU.declared_defaults()
        a.update(spec.attrs)
        f = mvau_constants_features(MVAU.params_from_attrs(a, spec.inits))
        c_x_l.append([float(v) for v in f["LUT"]])
        c_y_l.append(float(y["LUT"]))
        c_x_f.append([float(v) for v in f["FF"]])
        c_y_f.append(float(y["FF"]))

    def solve(x, y):
        c, _ = nnls(np.asarray(x), np.asarray(y))
        return [round(float(v), 4) for v in c]

    res = {"CODEBOOK_COEFFS": {"LUT": solve(cb_x_l, cb_y_l), "FF": solve(cb_x_f, cb_y_f)},
           "CONSTANTS_COEFFS": {"LUT": solve(c_x_l, c_y_l), "FF": solve(c_x_f, c_y_f)},
           "corpus": {"codebook": FIT_CODEBOOK, "constants": FIT_CONST}}

    def err(x, y, c, base=None):
        pred = np.asarray(x) @ np.asarray(c) + (0.0 if base is None else np.asarray(base))
        truth = np.asarray(y) + (0.0 if base is None else np.asarray(base))
        return round(float(np.mean(np.abs(pred - truth) / truth)), 4)

    cb_base_l = [b for b in cb_base["LUT"]]
    cb_base_f = [b for b in cb_base["FF"]]
    res["mean_abs_rel_error"] = {
        "codebook": {"LUT": err(cb_x_l, cb_y_l, res["CODEBOOK_COEFFS"]["LUT"], cb_base_l),
                     "FF": err(cb_x_f, cb_y_f, res["CODEBOOK_COEFFS"]["FF"], cb_base_f)},
        "constants": {"LUT": err(c_x_l, c_y_l, res["CONSTANTS_COEFFS"]["LUT"]),
                      "FF": err(c_x_f, c_y_f, res["CONSTANTS_COEFFS"]["FF"])}}
    return res


def trained_markdown(trained: dict[str, Any]) -> str:
    """The --trained section (weight_storage_trained.markdown)."""
    sys.path.insert(0, str(ROOT))
    import weight_storage_trained as wst

    return "\n" + wst.markdown(trained)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="fit the weight-storage coefficients and print them")
    ap.add_argument("--cached-only", action="store_true",
                    help="table of the rows already synthesised (build/bench_weight_storage), no Yosys run")
    ap.add_argument("--jobs", type=int, default=2, help="Yosys runs at a time (default 2)")
    tr = ap.add_argument_group("--trained: rows from trained, relevance-compressed TFC (weight_storage_trained.py)")
    tr.add_argument("--trained", action="store_true",
                    help="train / compress TFC on Fashion-MNIST, compile, verify and synthesise every design")
    tr.add_argument("--stage", choices=("all", "train", "hw", "report"), default="all",
                    help="all (default); train: only the networks; hw: only the designs (waits for the "
                         "networks a concurrent train stage writes); report: the table of the cached cells")
    tr.add_argument("--rows", nargs="+", default=None, help="rows (default: all of weight_storage_trained.ROWS)")
    tr.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0)")
    tr.add_argument("--hw-seed", type=int, default=0, help="the seed whose networks are compiled and synthesised")
    tr.add_argument("--limit-train", type=int, default=10000, help="training images (default 10000)")
    tr.add_argument("--float-epochs", type=int, default=3)
    tr.add_argument("--qat-epochs", type=int, default=2)
    tr.add_argument("--verify", type=int, default=50, help="test images for compiled == QONNX per design (50)")
    tr.add_argument("--rtlsim", type=int, default=5, help="test images simulated in Verilator (5)")
    tr.add_argument("--cells", type=Path, default=ROOT / "results" / "weight_storage_trained_cells")
    tr.add_argument("--work", type=Path, default=ROOT.parent / "runs" / "weight_storage_trained")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.trained:
        sys.path.insert(0, str(ROOT))
        import weight_storage_trained as wst

        wst.main(args)
        return
    if args.fit:
        res = fit()
        write_json(ROOT / "results" / "weight_storage_fit.json", res)
        print(json.dumps(res, indent=1))
        return
    rows = run_table(cached_only=args.cached_only, jobs=args.jobs)
    old = ROOT / "results" / "weight_storage.json"
    trained = json.loads(old.read_text()).get("trained") if old.is_file() else None
    out = {"tool": "yosys 0.23 synth_xilinx -family xc7", "coefficients": {"codebook": CODEBOOK_COEFFS,
                                                                          "constants": CONSTANTS_COEFFS},
           "rows": rows}
    if trained is not None:  # the --trained section is kept
        out["trained"] = trained
    write_json(ROOT / "results" / "weight_storage.json", out)
    write_text(ROOT / "results" / "weight_storage.md", markdown(rows) + (trained_markdown(trained) if trained else ""))
    print(markdown(rows))


if __name__ == "__main__":
    main()
