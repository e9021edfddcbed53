"""The compiler's linear-time tidy (codesign/dataflow/transforms/tidy.py) leaves every graph exactly
as qonnx's SortGraph + InferShapes + InferDataTypes do: at tidies of whole lowerings (a chain,
a residual net, a depthwise net) the fast result is compared byte for byte with qonnx's passes
run on a copy of the same graph (every third tidy, to keep the test fast)."""

from __future__ import annotations

import copy

import pytest
import torch
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

import codesign.dataflow.compiler as compiler
from codesign.dataflow.transforms.tidy import infer_datatypes, infer_shapes, sort_graph
from codesign.models import build_quant, make_spec, uniform_plan, with_widths


def _qonnx_tidy(model: ModelWrapper) -> ModelWrapper:
    compiler._prune_stale(model)
    for t in (SortGraph(), InferShapes(), InferDataTypes()):
        model, _ = t.apply(model)
    return model


def _bytes(model: ModelWrapper) -> bytes:
    return model.model.SerializeToString(deterministic=True)


def _lower_checking_every_tidy(path, monkeypatch) -> int:
    fast = compiler.tidy
    calls = [0]

    def checked(model):
        calls[0] += 1
        if calls[0] % 3 != 1:  # qonnx's passes are the slow part: every third tidy is compared
            return fast(model)
        ref = _qonnx_tidy(ModelWrapper(copy.deepcopy(model.model), fix_missing_initializer_valueinfo=False))
        out = fast(model)
        assert _bytes(out) == _bytes(ref), f"tidy #{calls[0]} differs from qonnx's passes"
        return out

    monkeypatch.setattr(compiler, "tidy", checked)
    compiler.lower_to_hw(str(path))
    return calls[0]


WIDTHS = {"resnet8": {"conv0": 4, "conv1": 3, "conv2": 4, "conv3": 6, "conv4": 6, "conv5": 6, "conv6": 8,
                      "conv7": 8, "conv8": 8},
          "dscnn": {"conv0": 8, **{f"pw{i}": 8 for i in range(4)}},
          "tfc": None}


@pytest.mark.parametrize("name", list(WIDTHS))
def test_every_tidy_of_a_lowering_equals_qonnx(name, tmp_path, monkeypatch):
    from codesign.export import export_qonnx
    from dataflow_helpers import calibrate_and_randomise_bn, images

    spec = make_spec(name, (1, 28, 28))
    if WIDTHS[name]:
        spec = with_widths(spec, WIDTHS[name])
    x = torch.from_numpy(images(16, (1, 28, 28)))
    torch.manual_seed(0)
    model = calibrate_and_randomise_bn(build_quant(spec, uniform_plan(spec, 4, 4)), x.numpy())
    path = export_qonnx(model, x[:1], tmp_path / f"{name}.onnx", check_batch=x[:4])
    assert _lower_checking_every_tidy(path, monkeypatch) > 20


def _unsorted_graph() -> ModelWrapper:
    """Two branches written in reverse order, a dangling node and an initializer without value
    info: SortGraph reorders and drops, InferShapes adds the missing value info."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="join"),
             helper.make_node("MatMul", ["x", "w"], ["b"], name="mm"),
             helper.make_node("Transpose", ["x"], ["a"], name="tr", perm=[0, 1]),
             helper.make_node("Relu", ["nowhere"], ["dangling"], name="floating")]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[w])
    m = ModelWrapper(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                     fix_missing_initializer_valueinfo=False)
    m.set_tensor_datatype("x", DataType["UINT4"])
    return m


def test_sort_shapes_datatypes_each_equal_qonnx_on_an_unsorted_graph():
    a, b = _unsorted_graph(), _unsorted_graph()
    sort_graph(a)
    b, _ = SortGraph().apply(b)
    assert [n.name for n in a.graph.node] == [n.name for n in b.graph.node] == ["mm", "tr", "join"]
    a, (b, _) = infer_shapes(a), InferShapes().apply(b)
    assert _bytes(a) == _bytes(b) and a.get_tensor_shape("w") == [4, 4]
    infer_datatypes(a)
    InferDataTypes().apply(b)
    assert _bytes(a) == _bytes(b)
    assert a.get_tensor_datatype("b") == DataType["FLOAT32"] and a.get_tensor_datatype("a") == DataType["UINT4"]


def test_duplicate_annotations_get_qonnxs_own_error():
    m = _unsorted_graph()
    m.graph.quantization_annotation.append(copy.deepcopy(m.graph.quantization_annotation[0]))
    with pytest.raises(Exception, match="multiple"):
        infer_datatypes(m)


def test_linear_toposort_equals_the_packages_on_random_dags():
    import random

    from toposort import CircularDependencyError, toposort_flatten

    from codesign.dataflow.transforms.tidy import _toposort_flatten

    r = random.Random(0)
    for _ in range(2000):
        n = r.randint(1, 30)
        deps = {i: {j for j in range(i) if r.random() < 0.2} | ({i} if r.random() < 0.05 else set())
                | ({n + r.randint(0, 2)} if r.random() < 0.1 else set()) for i in range(n) if r.random() < 0.9}
        assert _toposort_flatten(deps) == toposort_flatten(deps), deps
    with pytest.raises(CircularDependencyError):
        _toposort_flatten({0: {1}, 1: {0}})
