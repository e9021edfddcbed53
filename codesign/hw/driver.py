"""PYNQ deployment package: the host side that describes the accelerator's I/O and writes the driver.

The board runs a self-contained `deploy/driver/` folder (no codesign install there): the
generated `driver.py`, `validate.py`, `driver_io.py` (float <-> stream bytes) and a verbatim copy
of `codesign/dataflow/packing.py`. Everything the board needs to know about the model goes into
one literal dict, `io_shape_dict`, extracted here from the compiled `dataflow.onnx`:

- the accelerator's input/output datatypes and shapes (normal, folded, packed), taken from the
  first and last HW node (domain `codesign.dataflow.ops`) and their fold attributes;
- the host-side pre-nodes (input `Quant`, `Transpose`) and post-nodes (`Mul`/`Add` of the output
  scale) as a small op list with constant operands, which `driver_io.py` executes in numpy with
  the same float32 semantics as `qonnx.core.onnx_exec.execute_onnx`.

Keeping the board code generated from the graph (instead of hand-written per model) is what makes
the driver's bytes the bytes the simulated RTL accepted.
"""

from __future__ import annotations

import logging
import pprint
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from codesign import atomic
from codesign.errors import CodesignError, UnsupportedError

log = logging.getLogger(__name__)

HW_DOMAIN = "codesign.dataflow.ops"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "accel_templates"
PACKING_SRC = Path(__file__).resolve().parents[1] / "dataflow" / "packing.py"

# Default DMA / GPIO cell names: the block design template uses the same names (see vivado.py).
DMA_NAME = "axi_dma_0"
FRAMES_GPIO_NAME = "axi_gpio_frames"

_DT_ATTR_IN = ("inputDataType", "dataType")
_DT_ATTR_OUT = ("outputDataType", "dataType", "inputDataType")

_PRE_OPS = {"Quant", "Transpose", "Mul", "Div", "Add", "Sub", "Reshape", "Flatten", "Identity"}
_POST_OPS = {"Mul", "Div", "Add", "Sub", "Transpose", "Reshape", "Flatten", "Identity"}


def _load_model(model_or_path: Any):
    """Accept a qonnx ModelWrapper, an onnx ModelProto or a path (the CLI passes paths)."""
    from qonnx.core.modelwrapper import ModelWrapper

    if isinstance(model_or_path, ModelWrapper):
        return model_or_path
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise CodesignError(f"{path}: dataflow graph not found; run `codesign compile` first")
        return ModelWrapper(str(path))
    return ModelWrapper(model_or_path)


def _attr(node, name: str, default: Any = None) -> Any:
    import onnx.helper

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _fold(node, shape: list[int], direction: str) -> int:
    """Elements per stream word for `node`'s input or output stream, asked of the node's op
    class (the innermost dimension of its folded shape)."""
    from qonnx.custom_op.registry import getCustomOp

    try:
        fold = int(getCustomOp(node).stream_fold(direction))
    except Exception as exc:  # noqa: BLE001 - an op the driver cannot describe is a user-facing error
        raise UnsupportedError(f"HW node {node.name} ({node.op_type}) at the accelerator's {direction}: "
                               f"the driver cannot tell its stream fold ({exc})") from exc
    if fold < 1 or shape[-1] % fold:
        raise UnsupportedError(f"{node.name}: innermost dimension {shape[-1]} is not divisible by the "
                               f"stream fold {fold}")
    return fold


def _datatype(model, tensor: str, node, attrs: tuple[str, ...]):
    from qonnx.core.datatype import DataType

    dt = model.get_tensor_datatype(tensor)
    if dt is None or dt.name == "FLOAT32":
        for a in attrs:
            v = _attr(node, a)
            if v:
                return DataType[v]
        raise UnsupportedError(f"tensor {tensor}: no integer datatype annotated; the accelerator's streams "
                               "must carry qonnx integer datatypes")
    return dt


def _const(model, name: str) -> list | float:
    init = model.get_initializer(name)
    if init is None:
        raise UnsupportedError(f"host-side node operand {name} is not a constant; the driver can only "
                               "apply constant pre/post-processing")
    arr = np.asarray(init, dtype=np.float32)
    return arr.tolist()


def _host_op(model, node) -> dict[str, Any]:
    """One pre/post node as a JSON-like dict the board-side `driver_io.apply_ops` executes."""
    op = node.op_type
    if op == "Quant":
        return {"op": "Quant", "scale": _const(model, node.input[1]), "zeropt": _const(model, node.input[2]),
                "bitwidth": float(np.asarray(model.get_initializer(node.input[3])).reshape(-1)[0]),
                "signed": int(_attr(node, "signed", 1)), "narrow": int(_attr(node, "narrow", 0)),
                "rounding_mode": str(_attr(node, "rounding_mode", "ROUND"))}
    if op == "Transpose":
        return {"op": "Transpose", "perm": [int(p) for p in _attr(node, "perm")]}
    if op in ("Mul", "Div", "Add", "Sub"):
        const_inputs = [i for i in node.input if model.get_initializer(i) is not None]
        if len(const_inputs) != 1:
            raise UnsupportedError(f"{node.name} ({op}): exactly one constant operand expected")
        const_first = node.input[0] == const_inputs[0]
        return {"op": op, "value": _const(model, const_inputs[0]), "const_first": const_first}
    if op in ("Reshape", "Flatten"):
        return {"op": "Reshape", "shape": [int(s) for s in model.get_tensor_shape(node.output[0])[1:]]}
    return {"op": "Identity"}


def _shapes(shape: list[int], fold: int, bits: int) -> tuple[list[int], list[int], list[int]]:
    from codesign.dataflow.packing import word_bytes

    normal = list(shape)
    folded = normal[:-1] + [normal[-1] // fold, fold]
    packed = normal[:-1] + [normal[-1] // fold, word_bytes(fold * bits)]
    return normal, folded, packed


def extract_io_shape_dict(model_or_path: Any) -> dict[str, Any]:
    """Describe the accelerator's streams and the host-side pre/post-processing of a dataflow graph.

    Returns a JSON-like dict (FINN's `io_shape_dict` keys plus codesign's): `idt`, `odt` (qonnx
    datatype names), `ishape_normal/folded/packed`, `oshape_normal/folded/packed` (batch 1 in
    front), `in_width_bits`/`out_width_bits` (stream widths padded to bytes, the `s_axis_0` /
    `m_axis_0` TDATA widths), `in_words_per_frame`/`out_words_per_frame`, `pre_ops`/`post_ops`,
    the global input/output names and shapes, and the DMA/GPIO names of the block design.
    """
    model = _load_model(model_or_path)
    nodes = list(model.graph.node)
    hw_idx = [i for i, n in enumerate(nodes) if n.domain == HW_DOMAIN]
    if not hw_idx:
        raise UnsupportedError(f"the dataflow graph has no HW nodes (domain {HW_DOMAIN}); "
                               "was it produced by `codesign compile`?")
    first, last = hw_idx[0], hw_idx[-1]
    if hw_idx != list(range(first, last + 1)):
        raise UnsupportedError("the HW nodes are not one contiguous chain; the driver expects "
                               "pre-nodes, one HW chain, post-nodes (docs/contracts.md)")
    pre, post = nodes[:first], nodes[last + 1:]
    for n in pre:
        if n.op_type not in _PRE_OPS:
            raise UnsupportedError(f"host-side pre-node {n.name} ({n.op_type}) is not supported by the driver; "
                                   f"supported: {', '.join(sorted(_PRE_OPS))}")
    for n in post:
        if n.op_type not in _POST_OPS:
            raise UnsupportedError(f"host-side post-node {n.name} ({n.op_type}) is not supported by the driver; "
                                   f"supported: {', '.join(sorted(_POST_OPS))}")
    hw_in_node, hw_out_node = nodes[first], nodes[last]
    hw_in, hw_out = hw_in_node.input[0], hw_out_node.output[0]
    idt = _datatype(model, hw_in, hw_in_node, _DT_ATTR_IN)
    odt = _datatype(model, hw_out, hw_out_node, _DT_ATTR_OUT)
    ishape = [int(s) for s in model.get_tensor_shape(hw_in)]
    oshape = [int(s) for s in model.get_tensor_shape(hw_out)]
    ifold = _fold(hw_in_node, ishape, "input")
    ofold = _fold(hw_out_node, oshape, "output")
    in_n, in_f, in_p = _shapes(ishape, ifold, idt.bitwidth())
    out_n, out_f, out_p = _shapes(oshape, ofold, odt.bitwidth())
    g_in, g_out = model.graph.input[0].name, model.graph.output[0].name
    return {
        "idt": idt.name, "odt": odt.name,
        "ishape_normal": in_n, "ishape_folded": in_f, "ishape_packed": in_p,
        "oshape_normal": out_n, "oshape_folded": out_f, "oshape_packed": out_p,
        "in_fold": ifold, "out_fold": ofold,
        "in_width_bits": in_p[-1] * 8, "out_width_bits": out_p[-1] * 8,
        "in_words_per_frame": int(np.prod(in_f[1:-1])), "out_words_per_frame": int(np.prod(out_f[1:-1])),
        "global_input_name": g_in, "global_output_name": g_out,
        "global_input_shape": [int(s) for s in model.get_tensor_shape(g_in)],
        "global_output_shape": [int(s) for s in model.get_tensor_shape(g_out)],
        "hw_input_name": hw_in, "hw_output_name": hw_out,
        "pre_ops": [_host_op(model, n) for n in pre],
        "post_ops": [_host_op(model, n) for n in post],
        "input_dma_name": DMA_NAME, "output_dma_name": DMA_NAME,
        "frames_gpio_name": FRAMES_GPIO_NAME,
        "num_inputs": 1, "num_outputs": 1,
    }


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["pyrepr"] = repr
    return env


def write_driver_package(io_shape_dict: dict[str, Any], driver_dir: str | Path, bitfile_name: str,
                         model_name: str = "codesign") -> Path:
    """Write the board-side driver folder; `bitfile_name` is the exact `.bit` the build writes.

    The default `--bitfile` of the generated driver is that name relative to `../bitfile/`, so the
    default works out of the box (FINN's known pitfall is a default that names another file).
    """
    driver_dir = Path(driver_dir)
    driver_dir.mkdir(parents=True, exist_ok=True)
    env = _env()
    ctx = {
        "io_shape_dict_literal": pprint.pformat(io_shape_dict, indent=1, width=100, sort_dicts=True),
        "bitfile_name": bitfile_name,
        "model_name": model_name,
    }
    for tpl, out in (("driver/driver.py.j2", "driver.py"), ("driver/driver_io.py.j2", "driver_io.py"),
                     ("driver/validate.py.j2", "validate.py"), ("driver/README.md.j2", "README.md")):
        atomic.write_text(driver_dir / out, env.get_template(tpl).render(**ctx))
    atomic.atomic_write(driver_dir / "packing.py", lambda p: shutil.copyfile(PACKING_SRC, p))
    atomic.write_json(driver_dir / "io_shape_dict.json", io_shape_dict)
    log.info("wrote PYNQ driver package %s (default bitfile ../bitfile/%s)", driver_dir, bitfile_name)
    return driver_dir
