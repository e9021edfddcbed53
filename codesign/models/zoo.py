"""The model zoo as data: each topology is a spec (a list of layer dicts), not a class.

Keeping topologies as plain data is what lets pruning shrink a network (change a channel
count, rebuild) and lets the hardware cost model read a network without torch.
Shapes follow FINN's classic networks (TFC/SFC/LFC, CNV) and LeNet-5.
"""

from __future__ import annotations

import copy
from typing import Any

from codesign.errors import CodesignError

Spec = dict[str, Any]

ZOO = ("tfc", "sfc", "lfc", "cnv", "lenet")


def _fc(name: str, out: int, last: bool = False) -> dict:
    return {"type": "fc", "name": name, "out_features": out, "bn": not last, "act": not last}


def _conv(name: str, out: int, k: int, pad: int = 0, stride: int = 1) -> dict:
    return {"type": "conv", "name": name, "out_channels": out, "kernel": k, "stride": stride,
            "padding": pad, "bn": True, "act": True}


def _mlp(name: str, width: int, input_shape, num_classes: int) -> Spec:
    layers: list[dict] = [{"type": "flatten"}]
    layers += [_fc(f"fc{i}", width) for i in range(3)]
    layers.append(_fc("fc3", num_classes, last=True))
    return {"name": name, "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


def _cnv(input_shape, num_classes: int) -> Spec:
    # FINN's CNV expects 32x32 inputs (3x3 unpadded convs end at 1x1); a 28x28 input gets
    # padding 2 on the first conv so every later shape equals the 32x32 case.
    pad0 = 2 if input_shape[1] == 28 else 0
    layers = [
        _conv("conv0", 64, 3, pad=pad0), _conv("conv1", 64, 3), {"type": "pool", "kernel": 2},
        _conv("conv2", 128, 3), _conv("conv3", 128, 3), {"type": "pool", "kernel": 2},
        _conv("conv4", 256, 3), _conv("conv5", 256, 3), {"type": "flatten"},
        _fc("fc0", 512), _fc("fc1", 512), _fc("fc2", num_classes, last=True),
    ]
    return {"name": "cnv", "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


def _lenet(input_shape, num_classes: int) -> Spec:
    # LeNet-5: the 28x28 variant pads the first conv by 2 to reach the classic 32x32 geometry.
    pad0 = 2 if input_shape[1] == 28 else 0
    layers = [
        _conv("conv0", 6, 5, pad=pad0), {"type": "pool", "kernel": 2},
        _conv("conv1", 16, 5), {"type": "pool", "kernel": 2}, {"type": "flatten"},
        _fc("fc0", 120), _fc("fc1", 84), _fc("fc2", num_classes, last=True),
    ]
    return {"name": "lenet", "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


def make_spec(name: str, input_shape: tuple[int, int, int] | list[int] = (1, 28, 28),
              num_classes: int = 10) -> Spec:
    """Spec of a zoo topology for an input of shape (C, H, W)."""
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3:
        raise CodesignError(f"input_shape must be (C, H, W), got {input_shape}")
    key = name.lower()
    if key == "tfc":
        spec = _mlp("tfc", 64, input_shape, num_classes)
    elif key == "sfc":
        spec = _mlp("sfc", 256, input_shape, num_classes)
    elif key == "lfc":
        spec = _mlp("lfc", 1024, input_shape, num_classes)
    elif key == "cnv":
        spec = _cnv(input_shape, num_classes)
    elif key == "lenet":
        spec = _lenet(input_shape, num_classes)
    else:
        raise CodesignError(f"unknown model '{name}': choose one of {', '.join(ZOO)}")
    validate_spec(spec)
    return spec


def quant_layers(spec: Spec) -> list[dict]:
    """The conv/fc layers (the ones with weights and a bit plan entry), in order."""
    return [l for l in spec["layers"] if l["type"] in ("conv", "fc")]


def layer_shapes(spec: Spec) -> dict[str, dict[str, Any]]:
    """Per weight layer: input/output shapes, fan-in, MACs and weight count (no torch needed).

    `in_shape`/`out_shape` are (C, H, W) for conv and (F,) for fc; `nv` is the number of
    output positions (OH*OW for a conv, 1 for fc) — the hardware's number of input vectors.
    """
    c, h, w = spec["input_shape"]
    flat: int | None = None
    out: dict[str, dict[str, Any]] = {}
    for layer in spec["layers"]:
        t = layer["type"]
        if t == "conv":
            if flat is not None:
                raise CodesignError(f"conv layer {layer['name']} after flatten")
            k, s, p = layer["kernel"], layer.get("stride", 1), layer.get("padding", 0)
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if oh < 1 or ow < 1:
                raise CodesignError(f"layer {layer['name']}: input {h}x{w} too small for kernel {k}")
            co = layer["out_channels"]
            out[layer["name"]] = {"type": "conv", "in_shape": (c, h, w), "out_shape": (co, oh, ow),
                                  "fan_in": c * k * k, "fan_out": co, "nv": oh * ow,
                                  "weights": c * k * k * co, "macs": c * k * k * co * oh * ow,
                                  "kernel": k, "stride": s, "padding": p}
            c, h, w = co, oh, ow
        elif t == "pool":
            k = layer["kernel"]
            h, w = h // k, w // k
            if h < 1 or w < 1:
                raise CodesignError(f"pooling by {k} leaves an empty feature map")
        elif t == "flatten":
            flat = c * h * w
        elif t == "fc":
            fin = flat if flat is not None else c * h * w
            fo = layer["out_features"]
            out[layer["name"]] = {"type": "fc", "in_shape": (fin,), "out_shape": (fo,), "fan_in": fin,
                                  "fan_out": fo, "nv": 1, "weights": fin * fo, "macs": fin * fo}
            flat = fo
        else:
            raise CodesignError(f"unknown layer type '{t}' (known: conv, pool, flatten, fc)")
    return out


def validate_spec(spec: Spec) -> None:
    """Check structure and shapes; raise a CodesignError naming the offending layer."""
    for key in ("name", "input_shape", "num_classes", "layers"):
        if key not in spec:
            raise CodesignError(f"model spec lacks '{key}'")
    names = [l["name"] for l in quant_layers(spec)]
    if len(set(names)) != len(names):
        raise CodesignError(f"duplicate layer names in spec: {names}")
    if not names:
        raise CodesignError("model spec has no conv/fc layer")
    last = spec["layers"][-1]
    if last["type"] != "fc" or last.get("act") or last.get("bn"):
        raise CodesignError("the last layer must be an fc layer without activation or BN (logits)")
    if last["out_features"] != spec["num_classes"]:
        raise CodesignError("last layer width differs from num_classes")
    for l in quant_layers(spec):
        width = l.get("out_channels", l.get("out_features"))
        if not isinstance(width, int) or width < 1:
            raise CodesignError(f"layer {l['name']}: width must be a positive integer, got {width}")
    layer_shapes(spec)


def with_widths(spec: Spec, widths: dict[str, int]) -> Spec:
    """A copy of `spec` with some layers' output widths changed (used by structured pruning)."""
    new = copy.deepcopy(spec)
    for l in quant_layers(new):
        if l["name"] in widths:
            key = "out_channels" if l["type"] == "conv" else "out_features"
            l[key] = int(widths[l["name"]])
    validate_spec(new)
    return new
