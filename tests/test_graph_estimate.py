"""The search's hardware estimate of a graph spec (residual block, global pool): it comes from the
compiler's own lowering of an export, so its cycles and memories are what `codesign compile`
builds for a trained model of the same topology and plan, and an infeasible target is reported
as such instead of failing the search."""

from __future__ import annotations

import torch

from codesign.dataflow.build import BuildConfig, build_dataflow
from codesign.designspace.estimate import HwEstimator
from codesign.designspace.space import Candidate, SearchSpace
from codesign.export import export_qonnx
from codesign.models import build_quant, uniform_plan, validate_spec
from dataflow_helpers import calibrate_and_randomise_bn, images


def _spec():
    conv = lambda n, act=True: {"type": "conv", "name": n, "out_channels": 4, "kernel": 3, "padding": 1,  # noqa: E731
                                "bn": True, "act": act}
    spec = {"name": "tinyres", "input_shape": [1, 8, 8], "num_classes": 10, "layers": [
        conv("c0"), {"type": "residual", "name": "res0", "body": [conv("c1"), conv("c2", act=False)], "shortcut": []},
        {"type": "gap"}, {"type": "flatten"},
        {"type": "fc", "name": "fc", "out_features": 10, "bn": False, "act": False}]}
    validate_spec(spec)
    return spec


def test_graph_spec_estimate_is_the_compilers(tmp_path):
    spec = _spec()
    plan = uniform_plan(spec, 4, 4)
    w = {n: e["weight_bits"] for n, e in plan["layers"].items()}
    a = {n: e["act_bits"] for n, e in plan["layers"].items() if "act_bits" in e}
    space = SearchSpace(spec, prune_levels=(0,))
    est = HwEstimator(space, "Pynq-Z2", target_fps=50_000).estimate(Candidate.make(w, a), per_layer=True)
    assert est.feasible, est.reason
    # a model of the same topology and plan with other (calibrated, randomised-BN) weights, compiled
    torch.manual_seed(7)
    x = torch.from_numpy(images(16, (1, 8, 8)))
    model = calibrate_and_randomise_bn(build_quant(spec, plan), x.numpy())
    onnx_path = export_qonnx(model, x[:1], tmp_path / "m.onnx")
    res = build_dataflow(onnx_path, BuildConfig(output_dir=tmp_path / "b", board="Pynq-Z2", clock_ns=10.0,
                                                target_fps=50_000))
    assert est.max_cycles == res.performance["max_cycles"]
    assert est.fps == res.performance["estimated_throughput_fps"]
    assert set(est.per_layer) == {"c0", "c1", "c2", "fc"}
    # an unreachable target is a verdict, not an exception
    slow = HwEstimator(space, "Pynq-Z2", target_fps=1e9).estimate(Candidate.make(w, a))
    assert not slow.feasible and "throughput" in slow.reason
