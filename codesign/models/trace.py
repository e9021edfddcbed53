"""Bring your own model: trace a user's torch / Brevitas `nn.Module` into a codesign spec.

Every later step (relevance, pruning, bit plans, QAT, export, compile, search) works on specs
(plain data, codesign/models/zoo.py) and on checkpoints that carry one. So a user's own module
is not run as it is: it is traced once with torch.fx, each node is mapped onto a spec layer,
and its weights are renamed into SpecNet's state_dict layout. After that the user's model is
indistinguishable from a zoo model, and no step downstream needs to know it came from outside.

What maps (anything else is refused with one line naming the fx node):

* Conv2d / QuantConv2d (groups 1 -> `conv`, groups = channels -> `dwconv`), Linear / QuantLinear
  (-> `fc`), all without bias (codesign's layers are bias-free with a BatchNorm after them);
* BatchNorm1d/2d right after a conv/linear (-> `bn: true`), ReLU / QuantReLU (module, F.relu,
  torch.relu, .relu()) after it or after a max pool (max and a monotone activation commute);
* MaxPool2d (-> `pool`), AvgPool2d (-> `avgpool`), AdaptiveAvgPool2d(1) or a mean over H, W
  (-> `gap`), Flatten / torch.flatten / view / reshape to (N, -1) (-> `flatten`), Dropout and
  Identity (dropped: eval semantics);
* a fork whose two branches meet again in an `add` (-> a `residual` block; an activation right
  after the add is the block's `act`);
* Brevitas: a QuantIdentity on the input (-> plan `input_bits`), a 1-bit QuantIdentity after a
  layer (bipolar activation), and one QuantIdentity shared by both branches of a residual add
  (the block's join quantizer). The bit widths become a codesign plan (codesign/models/plan.py);
  the quantizer *types* are codesign's own (codesign/models/quantizers.py).

The traced spec is checked against the module itself: the float SpecNet built from it, with the
mapped weights, must give the module's outputs (for a Brevitas module: with its quantizers
switched off). A mapping that would silently compute something else is an error, not a model.
"""

from __future__ import annotations

import copy
import logging
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from codesign.errors import CodesignError, UnsupportedError
from codesign.models.entry import (ModelEntryError, build_entry_point, check_model_name, is_entry_point,
                                   load_entry_point, source_fingerprint)

__all__ = ["SUPPORTED", "TraceError", "TracedModel", "spec_from_module", "trace_module", "resolve_model",
           # the entry-point helpers, re-exported: `--model package.module:function`
           "ModelEntryError", "build_entry_point", "check_model_name", "is_entry_point", "load_entry_point",
           "source_fingerprint"]

log = logging.getLogger(__name__)

SUPPORTED = ("Conv2d/QuantConv2d (groups 1 or depthwise, bias=False), Linear/QuantLinear (bias=False), "
             "BatchNorm1d/2d after them, ReLU/QuantReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1) or mean over "
             "H,W, Flatten/flatten/view/reshape to (N, -1), Dropout/Identity, an add of two branches (residual), "
             "Brevitas QuantIdentity as input quantizer, bipolar activation or residual join")

BN_EPS = 1e-5  # what SpecNet's nn.BatchNorm1d/2d use


class TraceError(UnsupportedError):
    """A user module holds an op or a structure codesign's specs cannot express."""


@dataclass
class TracedModel:
    """What tracing a user module gives: the spec, its weights in SpecNet's layout, the plan
    of a Brevitas module (None for a float one), and spec layer -> the user's module name."""

    spec: dict
    state_dict: dict[str, torch.Tensor]
    plan: dict | None
    layer_sources: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------ fx tracing

def _is_brevitas(m: nn.Module) -> bool:
    return type(m).__module__.startswith("brevitas.")


class _Tracer(fx.Tracer):
    """Brevitas layers and activations stay leaves: their insides (quantizer proxies,
    QuantTensor arithmetic) are not what codesign maps, the layer is."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_brevitas(m) or super().is_leaf_module(m, module_qualified_name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _trace(module: nn.Module, name: str) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types on untraceable code
        raise TraceError(f"{name}: torch.fx cannot trace the module ({_first_line(exc)}); codesign needs a "
                         "forward(x) without data-dependent control flow") from None
    return fx.GraphModule(tracer.root, graph)


def _tensor_of(v: Any) -> torch.Tensor | None:
    if isinstance(v, torch.Tensor):
        return v
    value = getattr(v, "value", None)  # a Brevitas QuantTensor
    return value if isinstance(value, torch.Tensor) else None


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph once and remembers each node's output shape (None: not a tensor,
    e.g. `x.size(0)`); shapes are what tell a flatten from another reshape."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...] | None] = {}  # by node name (the probe is a copy)

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        t = _tensor_of(out)
        self.shapes[n.name] = tuple(t.shape) if t is not None else None
        return out


def _record_shapes(gm: fx.GraphModule, input_shape: tuple[int, ...], name: str) -> dict:
    probe = copy.deepcopy(gm).eval()  # running it must not touch the user's BN statistics
    rec = _ShapeRecorder(probe)
    try:
        with torch.no_grad():
            rec.run(torch.zeros(2, *input_shape))
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward
        raise TraceError(f"{name}: the module does not run on an input of shape (N, {', '.join(map(str, input_shape))}) "
                         f"({_first_line(exc)}); build it for the dataset's image shape") from None
    return rec.shapes


# --------------------------------------------------------------------- node classification

@dataclass
class _Op:
    """One mapped node of the graph (or a residual block of several)."""

    kind: str  # conv dwconv fc bn act inquant quantid pool avgpool gap flatten skip residual
    node: fx.Node
    qualname: str | None = None
    module: nn.Module | None = None
    info: dict = field(default_factory=dict)
    body: list["_Op"] = field(default_factory=list)
    shortcut: list["_Op"] = field(default_factory=list)
    join: "_Op | None" = None
    post: "_Op | None" = None  # the activation after a residual add


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _spec_value(p: tuple[int, int]) -> int | list[int]:
    """Square -> int (as the zoo writes it), otherwise the contract's [h, w] list."""
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def _target_str(node: fx.Node) -> str:
    if node.op == "call_function":
        try:
            return fx.node._get_qualified_name(node.target)
        except Exception:  # noqa: BLE001 - some builtins have no qualified name
            return str(node.target)
    return str(node.target)


_ADD_FUNCS = (operator.add, operator.iadd, torch.add)
_RELU_FUNCS = (F.relu, torch.relu, torch.relu_, F.relu_)
_FLAT_FUNCS = (torch.flatten, torch.reshape)
_RESHAPE_METHODS = ("view", "reshape", "flatten", "squeeze")
_DROP_FUNCS = (F.dropout, F.dropout2d)
_MAXPOOL_FUNCS = (F.max_pool2d, torch.max_pool2d)
_AVGPOOL_FUNCS = (F.avg_pool2d,)
_GAP_FUNCS = (F.adaptive_avg_pool2d,)


def _arg(node: fx.Node, pos: int, key: str, default: Any) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(key, default)


class _ShapeView:
    """Node -> shape, for shapes recorded by node name."""

    def __init__(self, by_name: dict[str, tuple[int, ...] | None]):
        self.by_name = by_name

    def get(self, n: fx.Node, default: Any = None) -> Any:
        return self.by_name.get(n.name, default)

    def __getitem__(self, n: fx.Node) -> Any:
        return self.by_name[n.name]


class _Mapper:
    """Walks the traced graph from the input to the output and turns it into _Ops."""

    def __init__(self, gm: fx.GraphModule, shapes: dict, name: str):
        self.gm, self.shapes, self.name = gm, _ShapeView(shapes), name
        self.modules = dict(gm.named_modules())
        self.seen_modules: dict[str, fx.Node] = {}
        self.uses: dict[str, int] = {}

    # -- errors -------------------------------------------------------------------------
    def fail(self, node: fx.Node, why: str) -> TraceError:
        return TraceError(f"{self.name}: cannot map fx node '{node.name}' ({node.op} {_target_str(node)}): {why}; "
                          f"supported: {SUPPORTED}")

    # -- graph helpers ------------------------------------------------------------------
    def is_tensor(self, n: fx.Node) -> bool:
        return n.op == "output" or self.shapes.get(n) is not None

    def tensor_users(self, n: fx.Node) -> list[fx.Node]:
        return [u for u in n.users if self.is_tensor(u)]

    def tensor_inputs(self, n: fx.Node) -> list[fx.Node]:
        out: list[fx.Node] = []
        for a in n.all_input_nodes:
            if self.is_tensor(a) and a not in out:
                out.append(a)
        return out

    def is_add(self, n: fx.Node) -> bool:
        return ((n.op == "call_function" and n.target in _ADD_FUNCS)
                or (n.op == "call_method" and n.target in ("add", "add_", "__add__", "__iadd__")))

    def is_act(self, n: fx.Node) -> bool:
        import brevitas.nn as qnn

        if n.op == "call_module":
            return isinstance(self.modules[str(n.target)], (nn.ReLU, qnn.QuantReLU))
        return (n.op == "call_function" and n.target in _RELU_FUNCS) or \
            (n.op == "call_method" and n.target in ("relu", "relu_"))

    # -- one node -----------------------------------------------------------------------
    def convert(self, u: fx.Node, cur: fx.Node) -> _Op:
        """The op of node `u`, whose only tensor input must be `cur`."""
        ins = self.tensor_inputs(u)
        if ins != [cur]:
            raise self.fail(u, f"it combines {len(ins)} tensors ({', '.join(i.name for i in ins)}); the only op "
                               "that combines tensors is an add of two branches (a residual)")
        if u.op == "call_module":
            return self.convert_module(u)
        if u.op in ("call_function", "call_method"):
            return self.convert_function(u, cur)
        raise self.fail(u, "not an op codesign maps")

    def convert_module(self, u: fx.Node) -> _Op:
        q = str(u.target)
        m = self.modules[q]
        self.uses[q] = self.uses.get(q, 0) + 1
        import brevitas.nn as qnn

        if q in self.seen_modules and not isinstance(m, qnn.QuantIdentity):  # a join is shared on purpose
            raise self.fail(u, f"module '{q}' is applied twice (also at node '{self.seen_modules[q].name}'); "
                               "codesign needs one module per layer")
        self.seen_modules[q] = u

        if isinstance(m, nn.Conv2d):  # also QuantConv2d
            return self.conv(u, q, m)
        if isinstance(m, nn.Linear):  # also QuantLinear
            if m.bias is not None:
                raise self.fail(u, "the linear layer has a bias; build it with bias=False and a BatchNorm1d after it "
                                   "(codesign's layers are bias-free), or drop the bias of the last layer")
            shape = self.shapes[u.args[0]]
            if len(shape) != 2:
                raise self.fail(u, f"a linear layer on a {len(shape)}-D tensor; flatten to (N, features) first")
            return _Op("fc", u, q, m, {"out_features": int(m.out_features), "in_features": int(m.in_features)})
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not (m.affine and m.track_running_stats):
                raise self.fail(u, "BatchNorm without affine parameters or running statistics; use the defaults "
                                   "(affine=True, track_running_stats=True)")
            if abs(float(m.eps) - BN_EPS) > 1e-12:
                raise self.fail(u, f"BatchNorm eps={m.eps:g}; codesign's BatchNorm uses eps={BN_EPS:g}: build it "
                                   "with the default eps")
            return _Op("bn", u, q, m, {"features": int(m.num_features), "dim": 2 if isinstance(m, nn.BatchNorm2d) else 1})
        if isinstance(m, qnn.QuantReLU):
            return _Op("act", u, q, m, {"bits": self.bits(u, m.act_quant.bit_width(), "activation")})
        if isinstance(m, qnn.QuantIdentity):
            return _Op("quantid", u, q, m, {"bits": self.bits(u, m.act_quant.bit_width(), "activation"),
                                             "signed": bool(m.act_quant.is_signed)})
        if _is_brevitas(m):
            raise self.fail(u, f"Brevitas {type(m).__name__} has no codesign counterpart")
        if isinstance(m, nn.ReLU):
            return _Op("act", u, q, m)
        if isinstance(m, nn.MaxPool2d):
            if _pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices:
                raise self.fail(u, "max pool with dilation, ceil_mode or return_indices")
            return self.pool("pool", u, m.kernel_size, m.stride, m.padding)
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or m.divisor_override is not None:
                raise self.fail(u, "average pool with ceil_mode or divisor_override")
            return self.pool("avgpool", u, m.kernel_size, m.stride, m.padding)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive(u)
        if isinstance(m, nn.Flatten):
            return self.reshape(u)
        if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Identity)):
            return _Op("skip", u, q, m)
        raise self.fail(u, f"{type(m).__name__} has no codesign counterpart")

    def convert_function(self, u: fx.Node, cur: fx.Node) -> _Op:
        t = u.target
        if u.op == "call_method":
            if t in ("relu", "relu_"):
                return _Op("act", u)
            if t in _RESHAPE_METHODS:
                return self.reshape(u)
            if t == "mean":
                return self.mean(u)
            if t in ("contiguous", "clone"):
                return _Op("skip", u)
            raise self.fail(u, f"tensor method .{t}() has no codesign counterpart")
        if t in _RELU_FUNCS:
            return _Op("act", u)
        if t in _FLAT_FUNCS:
            return self.reshape(u)
        if t in _DROP_FUNCS:
            return _Op("skip", u)
        if t in _MAXPOOL_FUNCS:
            if _pair(_arg(u, 4, "dilation", 1)) != (1, 1) or _arg(u, 5, "ceil_mode", False) \
                    or _arg(u, 6, "return_indices", False):
                raise self.fail(u, "max pool with dilation, ceil_mode or return_indices")
            k = _arg(u, 1, "kernel_size", None)
            return self.pool("pool", u, k, _arg(u, 2, "stride", None), _arg(u, 3, "padding", 0))
        if t in _AVGPOOL_FUNCS:
            if _arg(u, 4, "ceil_mode", False) or _arg(u, 6, "divisor_override", None) is not None:
                raise self.fail(u, "average pool with ceil_mode or divisor_override")
            return self.pool("avgpool", u, _arg(u, 1, "kernel_size", None), _arg(u, 2, "stride", None),
                             _arg(u, 3, "padding", 0))
        if t in _GAP_FUNCS:
            return self.adaptive(u)
        if t is torch.mean:
            return self.mean(u)
        raise self.fail(u, "this function has no codesign counterpart")

    # -- op details ---------------------------------------------------------------------
    def bits(self, node: fx.Node, value: Any, what: str) -> int:
        b = float(value)
        if b != int(b) or not 1 <= int(b) <= 8:
            raise self.fail(node, f"{what} bit width {b:g}; codesign plans take whole bits 1..8")
        return int(b)

    def conv(self, u: fx.Node, q: str, m: nn.Conv2d) -> _Op:
        if m.bias is not None:
            raise self.fail(u, "the conv has a bias; build it with bias=False and a BatchNorm2d after it "
                               "(codesign's convs are bias-free)")
        if _pair(m.dilation) != (1, 1):
            raise self.fail(u, f"dilation {m.dilation}; only dilation 1")
        if m.padding_mode != "zeros":
            raise self.fail(u, f"padding_mode '{m.padding_mode}'; only zero padding")
        k = _pair(m.kernel_size)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                pad = (0, 0)
            elif all(v % 2 == 1 for v in k):
                pad = ((k[0] - 1) // 2, (k[1] - 1) // 2)
            else:
                raise self.fail(u, f"padding='same' with the even kernel {k}; give the padding as numbers")
        else:
            pad = _pair(m.padding)
        info = {"kernel": _spec_value(k), "stride": _spec_value(_pair(m.stride)), "padding": _spec_value(pad),
                "in_channels": int(m.in_channels), "out_channels": int(m.out_channels)}
        if m.groups == 1:
            return _Op("conv", u, q, m, info)
        if m.groups == m.in_channels == m.out_channels:
            return _Op("dwconv", u, q, m, info)
        raise self.fail(u, f"grouped conv (groups={m.groups}, {m.in_channels} -> {m.out_channels} channels); only "
                           "groups=1 or depthwise (groups = in = out channels)")

    def pool(self, kind: str, u: fx.Node, kernel: Any, stride: Any, padding: Any) -> _Op:
        if not isinstance(kernel, (int, tuple, list)) or (stride is not None and not isinstance(stride, (int, tuple, list))) \
                or not isinstance(padding, (int, tuple, list)):
            raise self.fail(u, "pool sizes computed at run time; give them as numbers")
        k = _pair(kernel)
        s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride)
        p = _pair(padding)
        if kind == "avgpool" and p != (0, 0):
            raise self.fail(u, f"average pool with padding {p}; only unpadded average pools")
        info: dict[str, Any] = {"kernel": _spec_value(k)}
        if s != k:
            info["stride"] = _spec_value(s)
        if p != (0, 0):
            info["padding"] = _spec_value(p)
        return _Op(kind, u, info=info)

    def adaptive(self, u: fx.Node) -> _Op:
        shin, shout = self.shapes[u.args[0]], self.shapes[u]
        if len(shout) == 4 and shout[2:] == (1, 1):
            return _Op("gap", u)
        if shout == shin:
            return _Op("skip", u)
        raise self.fail(u, f"adaptive average pool to {shout[2:]}; only to 1x1 (global average pool)")

    def mean(self, u: fx.Node) -> _Op:
        shin, shout = self.shapes[u.args[0]], self.shapes[u]
        dims = _arg(u, 1, "dim", None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if len(shin) == 4 and sorted(d % 4 for d in dims) == [2, 3]:
            return _Op("gap", u, info={"flatten": len(shout) == 2})
        raise self.fail(u, f"mean over dims {dims}; only over H and W (a global average pool)")

    def reshape(self, u: fx.Node) -> _Op:
        shin, shout = self.shapes[self.tensor_inputs(u)[0]], self.shapes[u]
        if shin == shout:
            return _Op("skip", u)
        n = 1
        for v in shin[1:]:
            n *= v
        if len(shin) == 4 and shout == (shin[0], n):
            return _Op("flatten", u)
        raise self.fail(u, f"a reshape from {shin} to {shout}; only a flatten to (N, C*H*W)")

    # -- the walk -----------------------------------------------------------------------
    def run(self) -> list[_Op]:
        inputs = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise TraceError(f"{self.name}: forward takes {len(inputs)} inputs; codesign models take one image batch")
        ops, end = self.chain(inputs[0], in_branch=False)
        out = [n for n in self.gm.graph.nodes if n.op == "output"][0]
        if out.args[0] is not end:
            raise self.fail(out, "the model returns more than one tensor (or a tuple); return the logits only")
        return ops

    def chain(self, cur: fx.Node, in_branch: bool) -> tuple[list[_Op], fx.Node]:
        """Ops from `cur` (exclusive) up to the output, or in a branch up to the add it feeds."""
        ops: list[_Op] = []
        while True:
            users = self.tensor_users(cur)
            if not users:
                raise self.fail(cur, "its result is never used")
            if len(users) == 1:
                u = users[0]
                if u.op == "output":
                    if in_branch:
                        raise self.fail(cur, "a branch of a fork ends at the output instead of an add")
                    return ops, cur
                if self.is_add(u):
                    if in_branch:
                        return ops, cur
                    raise self.fail(u, "an add whose inputs do not come from one fork (two branches of one tensor)")
                ops.append(self.convert(u, cur))
                cur = u
                continue
            if len(users) == 2 and not in_branch:
                block, cur = self.residual(cur, users)
                ops.append(block)
                continue
            where = "inside a residual branch (nested forks)" if in_branch else f"by {len(users)} ops"
            raise self.fail(cur, f"its result is used {where}: "
                                 f"{', '.join(u.name for u in users)}; only a fork into two branches that meet in one add")

    def residual(self, fork: fx.Node, users: list[fx.Node]) -> tuple[_Op, fx.Node]:
        branches: list[tuple[list[_Op], fx.Node, fx.Node]] = []
        for u in users:
            if self.is_add(u):
                branches.append(([], fork, u))
                continue
            first = self.convert(u, fork)
            ops, end = self.chain(u, in_branch=True)
            branches.append(([first, *ops], end, self.tensor_users(end)[0]))
        adds = {b[2] for b in branches}
        if len(adds) != 1:
            raise self.fail(fork, "the two branches of this fork do not meet in one add")
        add = adds.pop()
        ins = self.tensor_inputs(add)
        ends = {b[1] for b in branches}
        if len(add.all_input_nodes) != 2 or set(ins) != ends or len(ends) != len(branches) or \
                set(add.kwargs) - {"input", "other"}:
            raise self.fail(add, "an add that is not exactly branch + branch (no alpha, scalars or third operand)")
        # the join quantizer J: one QuantIdentity closing both branches (Brevitas residuals)
        tails = [b[0][-1] if b[0] and b[0][-1].kind == "quantid" else None for b in branches]
        join = None
        if any(t is not None for t in tails):
            if any(t is None for t in tails) or tails[0].qualname != tails[1].qualname:
                raise self.fail(add, "a quantized residual add whose branches do not end in one shared QuantIdentity "
                                     "(codesign's residual quantizes both branches with one join quantizer)")
            join = tails[0]
            for b in branches:
                b[0].pop()
        # the same QuantIdentity is called twice by design: forget the double-use mark
        weight_kinds = ("conv", "dwconv", "fc")
        branches.sort(key=lambda b: -sum(o.kind in weight_kinds for o in b[0]))
        body, shortcut = branches[0][0], branches[1][0]
        if not body:
            raise self.fail(add, "both branches of the add are empty (x + x)")
        block = _Op("residual", add, body=body, shortcut=shortcut, join=join)
        after = self.tensor_users(add)
        if len(after) == 1 and self.is_act(after[0]):
            block.post = self.convert(after[0], add)
            return block, after[0]
        return block, add


# ---------------------------------------------------------------------------- spec assembly

class _Assembler:
    """_Ops -> spec layers, the state_dict renaming and (Brevitas) the plan."""

    def __init__(self, mapper: _Mapper, quant: bool):
        self.mapper, self.quant = mapper, quant
        self.count = {"conv": 0, "dwconv": 0, "fc": 0, "residual": 0}
        self.prefixes: dict[str, str] = {}  # user module qualname -> SpecNet module path
        self.plan_layers: dict[str, dict] = {}
        self.sources: dict[str, str] = {}
        self.input_bits: int | None = None
        self.bipolar = False

    def new_name(self, kind: str) -> str:
        prefix = {"conv": "conv", "dwconv": "dwconv", "fc": "fc", "residual": "res"}[kind]
        name = f"{prefix}{self.count[kind]}"
        self.count[kind] += 1
        return name

    def map_module(self, op: _Op | None, path: str) -> None:
        if op is not None and op.qualname is not None:
            self.prefixes[op.qualname] = path

    def check_quant(self, op: _Op, what: str) -> None:
        """A Brevitas model needs bits for every layer; a float one must not have any."""
        is_q = op.module is not None and _is_brevitas(op.module)
        if self.quant and not is_q:
            raise self.mapper.fail(op.node, f"a float {what} in a Brevitas model: make every conv/linear and "
                                            "activation a Brevitas quant layer (or none), so each has bits")

    def layers(self, ops: list[_Op], path: str, top: bool) -> list[dict]:
        """Spec layers of a chain; `path` is the SpecNet container of their modules."""
        out: list[dict] = []
        open_layer: dict | None = None  # the last conv/fc: a BN or activation may still follow
        stage = ""  # "w": right after the weights, "bn": after its BN, "pool": after max pools
        fail = self.mapper.fail
        for op in ops:
            k = op.kind
            if k == "skip":
                continue
            if k in ("conv", "dwconv", "fc"):
                self.check_quant(op, "conv/linear layer")
                name = self.new_name(k)
                layer: dict[str, Any] = {"type": k, "name": name}
                if k == "conv":
                    layer["out_channels"] = op.info["out_channels"]
                if k == "fc":
                    layer["out_features"] = op.info["out_features"]
                else:
                    layer.update(kernel=op.info["kernel"], stride=op.info["stride"], padding=op.info["padding"])
                layer.update(bn=False, act=False)
                out.append(layer)
                self.map_module(op, f"{path}.{name}")
                self.sources[name] = op.qualname or ""
                if self.quant:
                    wb = self.mapper.bits(op.node, op.module.weight_quant.bit_width(), "weight")
                    self.plan_layers[name] = {"weight_bits": wb}
                open_layer, stage = layer, "w"
                continue
            if k == "bn":
                want = 1 if open_layer is not None and open_layer["type"] == "fc" else 2
                if open_layer is None or stage != "w":
                    raise fail(op.node, "a BatchNorm that does not directly follow a conv/linear layer")
                if op.info["dim"] != want:
                    raise fail(op.node, f"BatchNorm{op.info['dim']}d after a {open_layer['type']} layer")
                open_layer["bn"] = True
                self.map_module(op, f"{path}.{open_layer['name']}_bn")
                stage = "bn"
                continue
            if k == "act" or (k == "quantid" and open_layer is not None and stage in ("w", "bn", "pool")
                              and op.info["bits"] == 1 and op.info["signed"]):
                self.check_quant(op, "activation")
                if open_layer is None or stage not in ("w", "bn", "pool") or open_layer["act"]:
                    raise fail(op.node, "an activation that does not follow a conv/linear layer (or its BatchNorm, "
                                        "or a max pool after it)")
                # after a max pool: SpecNet applies the act before the pool, which is the same
                # function (max commutes with a monotone non-decreasing activation)
                open_layer["act"] = True
                self.map_module(op, f"{path}.{open_layer['name']}_act")
                if self.quant:
                    self.plan_layers[open_layer["name"]]["act_bits"] = op.info["bits"]
                    self.bipolar |= op.info["bits"] == 1 and k == "quantid"
                stage = "done"
                continue
            if k == "quantid":
                if self.mapper.uses.get(op.qualname or "", 0) > 1:
                    raise fail(op.node, f"QuantIdentity '{op.qualname}' is applied twice but is not the join "
                                        "quantizer of a residual add; codesign needs one module per quantizer")
                if top and not out and self.input_bits is None:
                    self.input_bits = op.info["bits"]
                    self.map_module(op, f"{path}.input_quant")
                    continue
                raise fail(op.node, "a QuantIdentity that is neither the input quantizer, a 1-bit (bipolar) activation "
                                    "after a layer, nor the shared join quantizer of a residual add")
            if k in ("pool", "avgpool", "gap", "flatten"):
                if not top and k == "flatten":
                    raise fail(op.node, "a flatten inside a residual branch")
                out.append({"type": k, **op.info} if k != "gap" else {"type": "gap"})
                if k == "gap" and op.info.get("flatten"):
                    out.append({"type": "flatten"})
                stage = "pool" if (k == "pool" and stage in ("w", "bn", "pool")) else "done"
                continue
            if k == "residual":
                if not top:
                    raise fail(op.node, "a residual block inside a residual branch (nested)")
                out.append(self.residual(op, path))
                open_layer, stage = None, "done"
                continue
            raise fail(op.node, f"internal: unknown op kind {k}")
        return out

    def residual(self, op: _Op, path: str) -> dict:
        fail = self.mapper.fail
        name = self.new_name("residual")
        bpath = f"{path}.{name}"
        body = self.layers(op.body, f"{bpath}.body", top=False)
        shortcut = self.layers(op.shortcut, f"{bpath}.shortcut", top=False)
        qbody = [l for l in body if l["type"] in ("conv", "dwconv")]
        if not qbody or body[-1] is not qbody[-1] or body[-1]["act"]:
            raise fail(op.node, "a residual body must end in a conv (with an optional BatchNorm) without activation, "
                                "right before the add")
        if any(l["act"] for l in shortcut if l["type"] in ("conv", "dwconv")):
            raise fail(op.node, "an activation inside the residual shortcut")
        if op.join is not None:
            self.map_module(op.join, f"{bpath}.join")
        elif self.quant:
            raise fail(op.node, "a residual add of a Brevitas model without a join quantizer: close both branches "
                                "with one shared signed QuantIdentity")
        block: dict[str, Any] = {"type": "residual", "name": name, "body": body, "shortcut": shortcut,
                                 "act": op.post is not None}
        if op.post is not None:
            self.check_quant(op.post, "activation")
            self.map_module(op.post, f"{bpath}.act")
        if self.quant:
            if op.post is None:
                raise fail(op.node, "a residual add of a Brevitas model without a QuantReLU after it")
            a = op.post.info["bits"]
            jb = op.join.info["bits"]
            if jb != a + 1 or not op.join.info["signed"]:
                raise fail(op.join.node, f"the join quantizer has {jb} {'signed' if op.join.info['signed'] else 'unsigned'} "
                                         f"bits; codesign's residual joins with signed {a + 1} bits (activation bits + 1)")
            for l in [qbody[-1]] + [l for l in shortcut if l["type"] in ("conv", "dwconv")]:
                self.plan_layers[l["name"]]["act_bits"] = a
        return block


# ------------------------------------------------------------------------------ public API

def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return s or "model"


def _rename_state(module: nn.Module, prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        for q, path in prefixes.items():
            if key.startswith(q + "."):
                out[path + key[len(q):]] = value.detach().clone()
                break
    return out


def _plan_quant_layers(layers: list[dict]) -> list[dict]:
    out = []
    for l in layers:
        if l["type"] in ("conv", "dwconv", "fc"):
            out.append(l)
        elif l["type"] == "residual":
            out += _plan_quant_layers(l["body"]) + _plan_quant_layers(l["shortcut"])
    return out


def _self_check(module: nn.Module, traced: TracedModel, name: str, quant: bool, bipolar: bool) -> None:
    """The float SpecNet of the traced spec must compute what the module computes."""
    from codesign.models.build import build_float

    if bipolar:
        log.debug("%s: bipolar activations (no float counterpart): trace check on shapes only", name)
        return
    net = build_float(traced.spec).eval()
    float_keys = set(net.state_dict())
    net.load_state_dict({k: v for k, v in traced.state_dict.items() if k in float_keys})
    ref = copy.deepcopy(module).eval()
    x = torch.rand(4, *traced.spec["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if quant:
            from brevitas.graph.calibrate import quantization_status_manager

            with quantization_status_manager(ref, disable_act_quant=True, disable_weight_quant=True,
                                             disable_bias_quant=True, is_training=False):
                want = _tensor_of(ref(x))
        else:
            want = _tensor_of(ref(x))
        got = net(x)
    if want is None or want.shape != got.shape:
        raise TraceError(f"{name}: the traced spec gives outputs of shape {tuple(got.shape)}, the module "
                         f"{None if want is None else tuple(want.shape)}; this model is outside what codesign maps")
    err = float((want - got).abs().max())
    scale = float(want.abs().max()) + 1e-12
    if err > 1e-4 * max(1.0, scale):
        raise TraceError(f"{name}: the traced spec does not reproduce the module (max difference {err:.3g} on outputs "
                         f"up to {scale:.3g}); some op of its forward is not what codesign mapped it to")


def spec_from_module(module: nn.Module, input_shape: tuple[int, int, int] | list[int], name: str,
                     num_classes: int | None = None, check: bool = True) -> tuple[dict, dict, dict | None]:
    """(spec, state_dict in SpecNet's layout, plan or None) of a user module; see `trace_module`."""
    t = trace_module(module, input_shape, name, num_classes=num_classes, check=check)
    return t.spec, t.state_dict, t.plan


def trace_module(module: nn.Module, input_shape: tuple[int, int, int] | list[int], name: str,
                 num_classes: int | None = None, check: bool = True) -> TracedModel:
    """Trace `module` (input (C, H, W)) into a spec named `name`.

    The state_dict holds the weights and BatchNorm statistics under SpecNet's keys (for a
    Brevitas module also its quantizer state under the same module paths, which loads into
    `build_quant(spec, plan)` when the quantizers are codesign's). `num_classes`: the dataset's,
    checked against the last layer. `check`: validate the spec and compare its float SpecNet
    with the module (off only for specs this version's SpecNet cannot build yet)."""
    from codesign.models.plan import validate_plan
    from codesign.models.zoo import validate_spec

    if not isinstance(module, nn.Module):
        raise CodesignError(f"{name}: expected a torch.nn.Module, got {type(module).__name__}")
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3:
        raise CodesignError(f"{name}: input_shape must be (C, H, W), got {input_shape}")
    gm = _trace(module, name)
    shapes = _record_shapes(gm, input_shape, name)
    mapper = _Mapper(gm, shapes, name)
    ops = mapper.run()
    quant = any(_is_brevitas(m) for m in module.modules())
    asm = _Assembler(mapper, quant)
    layers = asm.layers(ops, "body", top=True)
    last = layers[-1] if layers else None
    if last is None or last["type"] != "fc" or last["bn"] or last["act"]:
        raise TraceError(f"{name}: the module must end in a linear layer giving the logits (no BatchNorm or activation "
                         "after it)")
    if num_classes is not None and last["out_features"] != int(num_classes):
        raise CodesignError(f"{name}: the last linear layer has {last['out_features']} outputs but the dataset has "
                            f"{num_classes} classes; build the model for {num_classes} classes")
    spec = {"name": _sanitize(name), "input_shape": list(input_shape), "num_classes": int(last["out_features"]),
            "layers": layers}
    plan = None
    if quant:
        qls = _plan_quant_layers(layers)
        entries = {}
        for i, l in enumerate(qls):
            e = dict(asm.plan_layers[l["name"]])
            if i == len(qls) - 1:
                e.pop("act_bits", None)
            else:
                e.setdefault("act_bits", 8)  # a layer without activation: its act bits are unused
            entries[l["name"]] = e
        if asm.input_bits is None:
            log.info("%s: no input QuantIdentity; the plan uses codesign's 8-bit input", name)
        plan = {"input_bits": asm.input_bits or 8, "layers": entries}
    traced = TracedModel(spec, _rename_state(module, asm.prefixes), plan, asm.sources)
    if check:
        try:
            validate_spec(spec)
            if plan is not None:
                validate_plan(spec, plan)
            _self_check(module, traced, name, quant, asm.bipolar)
        except CodesignError:
            raise
        except (TypeError, KeyError, ValueError, RuntimeError) as exc:  # a spec this SpecNet cannot build
            raise TraceError(f"{name}: the traced spec does not build here ({_first_line(exc)}); the model uses a "
                             "layer form this codesign's SpecNet lacks (see docs/byo-model.md)") from None
    log.info("%s: traced %d layers (%s)", name, len(_plan_quant_layers(layers)),
             ", ".join(f"{k}<-{v}" for k, v in asm.sources.items()))
    return traced


# ------------------------------------------------------------------------ the one resolver

def resolve_model(model: str, input_shape: tuple[int, int, int], num_classes: int) -> TracedModel:
    """The ONE place a `--model` / `model:` value becomes a spec: a zoo name gives the zoo spec
    (no weights, no plan); 'package.module:function' builds the user's module and traces it."""
    from codesign.models.zoo import make_spec

    check_model_name(model)
    if not is_entry_point(model):
        return TracedModel(make_spec(model, input_shape, num_classes), {}, None)
    module = build_entry_point(model)
    return trace_module(module, input_shape, str(model).strip(), num_classes=num_classes)
