"""The --trained path of benchmarks/bench_weight_storage.py end to end on a tiny subset: train a
float TFC, relevance-cluster it to 4 shared values with QAT fine-tuning (the product's compress),
export, compile with codebook storage, check the compiled graph against the QONNX model on real
test images, and read the cells back from the cache without retraining."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import weight_storage_trained as wst  # noqa: E402


def test_trained_codebook_row_end_to_end(tmp_path):
    st = wst.Settings(limit_train=400, limit_test=60, float_epochs=4, qat_epochs=1, samples=32, verify=16, lr_float=1e-2,
                      dataset="digits", fold={0: (1, 4), 1: (1, 4), 2: (1, 4), 3: (1, 2)})
    cells, work = tmp_path / "cells", tmp_path / "work"
    assert wst.train_cells(["w4a4", "k4"], [0], st, cells, work) == []
    net = json.loads((cells / "net__k4__s0.json").read_text())
    # an independent count on the exported QONNX model: at most 4 integer weights per layer
    from codesign.compress.cluster import onnx_weight_levels

    assert [lv["distinct"] <= 4 for lv in onnx_weight_levels(net["onnx"])] == [True] * 4
    assert 0.3 < net["test_acc"] <= 1.0 and net["test_images"] == 60
    assert wst.hw_cells(["k4"], 0, st, cells, work, rtlsim=(), synth=False, auto=False) == []
    cb = json.loads((cells / "hw__k4__codebook__s0.json").read_text())
    rom = json.loads((cells / "hw__k4__rom__s0.json").read_text())
    assert cb["verify_ok"] and cb["verify_inputs"] == 16 and rom["verify_ok"]
    assert set(cb["storage"].values()) == {"codebook"} and set(rom["storage"].values()) == {"rom"}
    # same weights, fewer stored bits: the estimate of the codebook design's weight ROMs is smaller
    mv = [n for n, v in cb["nodes"].items() if v["op"] == "MVAU"]
    assert [cb["nodes"][n]["distinct"] for n in mv] == [rom["nodes"][n]["distinct"] for n in mv]
    # cached: a second pass trains and compiles nothing (the cell files are left as they are)
    stamp = {f: f.stat().st_mtime_ns for f in cells.glob("*.json")}
    assert wst.train_cells(["w4a4", "k4"], [0], st, cells, work) == []
    assert wst.hw_cells(["k4"], 0, st, cells, work, rtlsim=(), synth=False, auto=False) == []
    assert {f: f.stat().st_mtime_ns for f in cells.glob("*.json")} == stamp
    doc = wst.write_report(cells, st, results=tmp_path)
    acc = doc["accuracy"]
    assert acc["k4"]["seeds_compared"] == 1 and np.isclose(acc["k4"]["delta_vs_a"],
                                                          acc["k4"]["mean"] - acc["w4a4"]["mean"])


def test_folding_pins_the_last_layer_for_constants():
    st = wst.Settings()
    net = {"distinct_weights": [15, 15, 15, 15], "last_shape": [16, 10]}
    cfg = wst.folding_for(wst.ROW["p90"], "constants", net, st)
    assert cfg["MVAU_3"] == {"PE": 10, "SIMD": 16, "weight_storage": "constants"}
    assert cfg["MVAU_0"] == {"PE": 1, "SIMD": 4, "weight_storage": "rom"}
    assert wst.folding_for(wst.ROW["p90"], "rom", net, st)["MVAU_3"] == {"PE": 10, "SIMD": 16, "weight_storage": "rom"}
    # 15 distinct INT4 weights need 4 index bits: no codebook; 4 distinct ones do
    net4 = {"distinct_weights": [4, 15, 8, 2], "last_shape": [64, 10]}
    modes = {k: v["weight_storage"] for k, v in wst.folding_for(wst.ROW["k4"], "codebook", net4, st).items()}
    assert modes == {"MVAU_0": "codebook", "MVAU_1": "rom", "MVAU_2": "codebook", "MVAU_3": "codebook"}
