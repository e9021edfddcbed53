"""The model zoo as data: each topology is a spec (a list of layer dicts), not a class.

Keeping topologies as plain data is what lets pruning shrink a network (change a channel
count, rebuild) and lets the hardware cost model read a network without torch.
Shapes follow FINN's classic networks (TFC/SFC/LFC, CNV), LeNet-5 and, as graph specs (residual
blocks, depthwise convs, global average pooling; docs/contracts.md), MLPerf Tiny's ResNet-8 and
DS-CNN and MobileNet-v1 (width 0.25).
"""

from __future__ import annotations

import copy
from typing import Any

from codesign.errors import CodesignError

Spec = dict[str, Any]

ZOO = ("tfc", "sfc", "lfc", "cnv", "lenet", "resnet8", "mobilenet", "dscnn")
QUANT_TYPES = ("conv", "dwconv", "fc")
CHAIN_TYPES = ("conv", "pool", "flatten", "fc")
KNOWN_TYPES = ("conv", "dwconv", "pool", "avgpool", "gap", "flatten", "fc", "residual")


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


def _cv(name: str, out: int, k: Any, stride: Any = 1, pad: Any = 0, act: bool = True) -> dict:
    """A conv + BN (+ ReLU) of the graph zoo; k/stride/pad may be int or [h, w]."""
    return {"type": "conv", "name": name, "out_channels": out, "kernel": k, "stride": stride,
            "padding": pad, "bn": True, "act": act}


def _dw(name: str, k: int = 3, stride: int = 1, pad: int = 1) -> dict:
    return {"type": "dwconv", "name": name, "kernel": k, "stride": stride, "padding": pad, "bn": True, "act": True}


def _head(num_classes: int) -> list[dict]:
    return [{"type": "gap"}, {"type": "flatten"}, _fc("fc0", num_classes, last=True)]


def _resnet8(input_shape, num_classes: int) -> Spec:
    """MLPerf Tiny image classification ResNet-8: a 16-channel stem, three residual stages
    (16, 32, 64 channels; the last two halve H and W and project the shortcut with a 1x1
    stride-2 conv + BN), global average pool, one fc."""
    layers: list[dict] = [_cv("conv0", 16, 3, pad=1)]
    i = 1
    for b, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
        body = [_cv(f"conv{i}", width, 3, stride=stride, pad=1), _cv(f"conv{i + 1}", width, 3, pad=1, act=False)]
        i += 2
        shortcut: list[dict] = []
        if stride != 1:
            shortcut = [_cv(f"conv{i}", width, 1, stride=stride, act=False)]
            i += 1
        layers.append({"type": "residual", "name": f"res{b}", "body": body, "shortcut": shortcut, "act": True})
    layers += _head(num_classes)
    return {"name": "resnet8", "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


MOBILENET_WIDTHS = (16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256)
MOBILENET_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def _mobilenet(input_shape, num_classes: int) -> Spec:
    """MobileNet-v1 at width 0.25: a stride-2 stem, 13 depthwise-separable blocks (dw 3x3 +
    BN + ReLU, pointwise 1x1 + BN + ReLU), global average pool, one fc."""
    layers: list[dict] = [_cv("conv0", 8, 3, stride=2, pad=1)]
    for i, (width, stride) in enumerate(zip(MOBILENET_WIDTHS, MOBILENET_STRIDES)):
        layers += [_dw(f"dw{i}", stride=stride), _cv(f"pw{i}", width, 1)]
    layers += _head(num_classes)
    return {"name": "mobilenet", "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


def _dscnn(input_shape, num_classes: int) -> Spec:
    """DS-CNN-S (MLPerf Tiny keyword spotting): a 10x4 stride-2 stem of 64 channels, four
    depthwise-separable blocks of 64, global average pool, one fc."""
    layers: list[dict] = [_cv("conv0", 64, [10, 4], stride=2, pad=[5, 1])]
    for i in range(4):
        layers += [_dw(f"dw{i}"), _cv(f"pw{i}", 64, 1)]
    layers += _head(num_classes)
    return {"name": "dscnn", "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


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
    elif key == "resnet8":
        spec = _resnet8(input_shape, num_classes)
    elif key == "mobilenet":
        spec = _mobilenet(input_shape, num_classes)
    elif key == "dscnn":
        spec = _dscnn(input_shape, num_classes)
    else:
        raise CodesignError(f"unknown model '{name}': choose one of {', '.join(ZOO)}")
    validate_spec(spec)
    return spec


# ------------------------------------------------------------------------------ walking a spec

def _pair(v: Any, what: str, lname: str) -> tuple[int, int]:
    """An int or a 2-list [h, w] as (h, w); anything else is a spec error naming the layer."""
    if isinstance(v, bool):
        raise CodesignError(f"layer {lname}: {what} must be an int or [h, w], got {v!r}")
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(e, int) and not isinstance(e, bool)
                                                            for e in v):
        return int(v[0]), int(v[1])
    raise CodesignError(f"layer {lname}: {what} must be an int or [h, w], got {v!r}")


def _lname(layer: dict, i: int) -> str:
    return str(layer.get("name", f"#{i} ({layer.get('type')})"))


def is_quant_layer(layer: dict) -> bool:
    """A layer with weights and a bit-plan entry (conv, dwconv, fc)."""
    return layer.get("type") in QUANT_TYPES


def quant_layers(spec: Spec) -> list[dict]:
    """The conv/dwconv/fc layers (the ones with weights and a bit plan entry), in execution order;
    a residual block contributes its body's layers, then its shortcut's."""
    out: list[dict] = []

    def walk(layers: list[dict]) -> None:
        for l in layers:
            if l.get("type") == "residual":
                walk(l.get("body", []))
                walk(l.get("shortcut", []))
            elif is_quant_layer(l):
                out.append(l)
    walk(spec["layers"])
    return out


def residual_blocks(spec: Spec) -> list[dict]:
    """The residual layer dicts of a spec (top level; blocks do not nest)."""
    return [l for l in spec["layers"] if l.get("type") == "residual"]


def module_paths(spec: Spec) -> dict[str, str]:
    """Where each conv/dwconv/fc layer lives in a SpecNet: `body.conv0`, `body.res1.body.conv3`,
    `body.res1.shortcut.conv5`. Its BN is at `<path>_bn`, its activation at `<path>_act`, so
    state_dict keys are `<path>.weight` and `<path>_bn.running_mean` (plain data, no torch)."""
    out: dict[str, str] = {}
    for l in spec["layers"]:
        if l.get("type") == "residual":
            for branch in ("body", "shortcut"):
                for s in l.get(branch, []):
                    if is_quant_layer(s):
                        out[s["name"]] = f"body.{l['name']}.{branch}.{s['name']}"
        elif is_quant_layer(l):
            out[l["name"]] = f"body.{l['name']}"
    return out


def block_of(spec: Spec) -> dict[str, tuple[str, str]]:
    """Layer name -> (residual block name, 'body' | 'shortcut') for layers inside a block."""
    out: dict[str, tuple[str, str]] = {}
    for l in residual_blocks(spec):
        for branch in ("body", "shortcut"):
            for s in l.get(branch, []):
                if is_quant_layer(s):
                    out[s["name"]] = (l["name"], branch)
    return out


def graph_features(spec: Spec) -> list[str]:
    """What makes `spec` more than a classic chain (conv/pool/flatten/fc with square kernels, one
    group, pools with stride = kernel): one phrase per feature, empty for a chain spec. Code
    that walks `spec["layers"]` as a chain refuses a spec with any of these, naming the first."""
    feats: list[str] = []
    for i, l in enumerate(spec["layers"]):
        t, n = l.get("type"), _lname(l, i)
        if t not in CHAIN_TYPES:
            feats.append(f"{t} layer '{n}'" if t in ("residual", "dwconv") else f"{t} layer")
        elif t == "conv":
            if any(not isinstance(l.get(k, d), int) for k, d in (("kernel", 1), ("stride", 1), ("padding", 0))):
                feats.append(f"non-square kernel/stride/padding of '{n}'")
            if int(l.get("groups", 1)) != 1:
                feats.append(f"grouped conv '{n}'")
        elif t == "pool":
            k = l.get("kernel")
            if l.get("stride", k) != k or l.get("padding", 0) != 0 or not isinstance(k, int):
                feats.append("max pool with stride != kernel, padding or a non-square window")
    return feats


def is_graph_spec(spec: Spec) -> bool:
    """True when `spec` uses any layer or option beyond the classic chain (see graph_features)."""
    return bool(graph_features(spec))


def refuse_graph_spec(spec: Spec, who: str, hint: str, error: type[CodesignError] = CodesignError) -> None:
    """Raise one clear line when `who` (a chain-only walk) gets a graph spec."""
    feats = graph_features(spec)
    if feats:
        raise error(f"{who} handles chain specs only; model '{spec.get('name')}' has {feats[0]}"
                    + (f" (and {len(feats) - 1} more graph features)" if len(feats) > 1 else "") + f": {hint}")


def layer_shapes(spec: Spec) -> dict[str, dict[str, Any]]:
    """Per weight layer: input/output shapes, fan-in, MACs and weight count (no torch needed).

    `in_shape`/`out_shape` are (C, H, W) for conv/dwconv and (F,) for fc; `nv` is the number of
    output positions (OH*OW for a conv, 1 for fc) — the hardware's number of input vectors.
    Conv entries keep `kernel`/`stride`/`padding` as the spec gives them (int or [h, w]) and add
    `groups` (a dwconv's is its channel count). Residual blocks are walked body then shortcut.
    """
    out: dict[str, dict[str, Any]] = {}
    state = _walk(spec["layers"], (tuple(spec["input_shape"]), None), out, top=True)
    del state
    return out


_Shape = tuple[tuple[int, int, int], int | None]  # ((C, H, W), flattened features or None)


def _walk(layers: list[dict], state: _Shape, out: dict[str, dict[str, Any]], top: bool) -> _Shape:
    (c, h, w), flat = state
    npool = 0
    for i, layer in enumerate(layers):
        t = layer.get("type")
        lname = _lname(layer, i)
        if t in ("conv", "dwconv"):
            if flat is not None:
                raise CodesignError(f"{t} layer {lname} after flatten")
            kh, kw = _pair(layer["kernel"], "kernel", lname)
            sh, sw = _pair(layer.get("stride", 1), "stride", lname)
            ph, pw = _pair(layer.get("padding", 0), "padding", lname)
            if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
                raise CodesignError(f"layer {lname}: kernel and stride must be >= 1 and padding >= 0")
            oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if oh < 1 or ow < 1:
                raise CodesignError(f"layer {lname}: input {h}x{w} too small for kernel {layer['kernel']}")
            if t == "dwconv":
                co, g = c, c
            else:
                co, g = layer["out_channels"], int(layer.get("groups", 1))
                if g < 1 or c % g or co % g:
                    raise CodesignError(f"layer {lname}: groups={g} must divide its input channels ({c}) and "
                                        f"out_channels ({co})")
            fan_in = (c // g) * kh * kw
            k = layer["kernel"]
            out[lname] = {"type": t, "in_shape": (c, h, w), "out_shape": (co, oh, ow),
                          "fan_in": fan_in, "fan_out": co, "nv": oh * ow,
                          "weights": fan_in * co, "macs": fan_in * co * oh * ow,
                          "kernel": list(k) if isinstance(k, (list, tuple)) else k,
                          "stride": layer.get("stride", 1), "padding": layer.get("padding", 0), "groups": g}
            c, h, w = co, oh, ow
        elif t in ("pool", "avgpool"):
            if flat is not None:
                raise CodesignError(f"{t} after flatten")
            kh, kw = _pair(layer["kernel"], "kernel", f"{t} #{i}")
            sh, sw = _pair(layer.get("stride", layer["kernel"]), "stride", f"{t} #{i}")
            ph, pw = _pair(layer.get("padding", 0), "padding", f"{t} #{i}") if t == "pool" else (0, 0)
            if t == "avgpool" and "padding" in layer:
                raise CodesignError(f"avgpool #{i}: padding is not supported (average pools are unpadded)")
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if h < 1 or w < 1:
                raise CodesignError(f"pooling by {layer['kernel']} leaves an empty feature map")
            npool += 1
        elif t == "gap":
            if flat is not None:
                raise CodesignError("gap after flatten")
            h = w = 1
        elif t == "flatten":
            if not top:
                raise CodesignError("flatten inside a residual block (branches are conv/dwconv/pool only)")
            flat = c * h * w
        elif t == "fc":
            if not top:
                raise CodesignError(f"fc layer {lname} inside a residual block (branches are conv/dwconv/pool only)")
            fin = flat if flat is not None else c * h * w
            fo = layer["out_features"]
            out[lname] = {"type": "fc", "in_shape": (fin,), "out_shape": (fo,), "fan_in": fin,
                          "fan_out": fo, "nv": 1, "weights": fin * fo, "macs": fin * fo}
            flat = fo
        elif t == "residual":
            if not top:
                raise CodesignError(f"residual block '{lname}' inside another residual block (blocks do not nest)")
            if flat is not None:
                raise CodesignError(f"residual block '{lname}' after flatten")
            body, short = layer.get("body"), layer.get("shortcut", [])
            if not isinstance(body, list) or not body or not isinstance(short, list):
                raise CodesignError(f"residual block '{lname}': 'body' must be a non-empty list of layers and "
                                    "'shortcut' a list (empty = identity)")
            (bs, _) = _walk(body, ((c, h, w), None), out, top=False)
            (ss, _) = _walk(short, ((c, h, w), None), out, top=False)
            if tuple(bs) != tuple(ss):
                raise CodesignError(f"residual block '{lname}': the body gives {tuple(bs)} (C, H, W) but the "
                                    f"shortcut gives {tuple(ss)}; both branches must produce the same shape "
                                    "(give the shortcut a 1x1 conv with the body's stride and width)")
            c, h, w = bs
        else:
            raise CodesignError(f"unknown layer type '{t}' (layer {lname}; known: {', '.join(KNOWN_TYPES)})")
    return (c, h, w), flat


def _all_names(layers: list[dict], acc: list[str]) -> list[str]:
    for l in layers:
        if "name" in l and (is_quant_layer(l) or l.get("type") == "residual"):
            acc.append(l["name"])
        if l.get("type") == "residual":
            _all_names(l.get("body", []) or [], acc)
            _all_names(l.get("shortcut", []) or [], acc)
    return acc


def validate_spec(spec: Spec) -> None:
    """Check structure and shapes; raise a CodesignError naming the offending layer."""
    for key in ("name", "input_shape", "num_classes", "layers"):
        if key not in spec:
            raise CodesignError(f"model spec lacks '{key}'")
    for i, l in enumerate(_flat_layers(spec["layers"])):
        if not isinstance(l, dict) or l.get("type") not in KNOWN_TYPES:
            t = l.get("type") if isinstance(l, dict) else l
            raise CodesignError(f"unknown layer type '{t}' (layer {_lname(l, i) if isinstance(l, dict) else i}; "
                                f"known: {', '.join(KNOWN_TYPES)})")
        if (is_quant_layer(l) or l["type"] == "residual"):
            n = l.get("name")
            if not isinstance(n, str) or not n or "." in n:
                raise CodesignError(f"{l['type']} layer #{i}: 'name' must be a non-empty string without '.', "
                                    f"got {n!r}")
        if l["type"] == "dwconv" and ("out_channels" in l or "groups" in l):
            raise CodesignError(f"layer {l['name']}: a dwconv has no out_channels/groups of its own (its width "
                                "follows its input); remove the key, or use a conv with groups")
    names = _all_names(spec["layers"], [])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CodesignError(f"duplicate layer names in spec: {dup} (names must be unique, also inside "
                            "residual bodies and shortcuts)")
    if not quant_layers(spec):
        raise CodesignError("model spec has no conv/fc layer")
    last = spec["layers"][-1]
    if last["type"] != "fc" or last.get("act") or last.get("bn"):
        raise CodesignError("the last layer must be an fc layer without activation or BN (logits)")
    if last["out_features"] != spec["num_classes"]:
        raise CodesignError("last layer width differs from num_classes")
    for l in quant_layers(spec):
        if l["type"] == "dwconv":
            continue
        width = l.get("out_channels", l.get("out_features"))
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise CodesignError(f"layer {l['name']}: width must be a positive integer, got {width}")
    for blk in residual_blocks(spec):
        body = blk.get("body") or []
        if body and (not is_quant_layer(body[-1]) or body[-1].get("act")):
            raise CodesignError(f"residual block '{blk['name']}': the body's last layer must be a conv/dwconv "
                                "with act false (the block's activation comes after the add)")
    layer_shapes(spec)


def _flat_layers(layers: list[Any]) -> list[Any]:
    out: list[Any] = []
    for l in layers:
        out.append(l)
        if isinstance(l, dict) and l.get("type") == "residual":
            out += _flat_layers(list(l.get("body") or []) + list(l.get("shortcut") or []))
    return out


def with_widths(spec: Spec, widths: dict[str, int]) -> Spec:
    """A copy of `spec` with some layers' output widths changed (used by structured pruning).

    A dwconv has no width of its own (it follows its input): an entry for one must equal the
    width its producer ends up with, anything else is an error naming the producer to change.
    """
    new = copy.deepcopy(spec)
    dw = {}
    for l in quant_layers(new):
        if l["name"] not in widths:
            continue
        if l["type"] == "dwconv":
            dw[l["name"]] = int(widths[l["name"]])
            continue
        key = "out_channels" if l["type"] == "conv" else "out_features"
        l[key] = int(widths[l["name"]])
    validate_spec(new)
    if dw:
        shapes = layer_shapes(new)
        for n, want in dw.items():
            have = shapes[n]["fan_out"]
            if want != have:
                raise CodesignError(f"layer {n} is a dwconv: its width follows its input ({have} channels after "
                                    f"the other changes), it cannot be set to {want}; change its producer's width")
    return new
