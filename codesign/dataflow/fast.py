"""Vectorised cost evaluation for design-space search: many candidates per numpy call.

Why: a co-design search scores thousands of (bit plan x folding x channel count) candidates;
building and costing an ONNX graph per candidate takes milliseconds, evaluating the same
formulas on arrays takes microseconds per candidate.

Exactness by construction: the per-op formulas are the *same* array-polymorphic functions the
per-node model uses (`codesign.dataflow.cost.OP_COST`), and calibration is the same
`Calibration.apply`; only the parameter extraction differs. Two entry points:

- `FastNet.from_model(model)`: parameters extracted once from a compiled dataflow graph
  (exact accumulator widths from the weights); candidates override attributes such as PE/SIMD.
- `FastNet.from_spec(spec, ...)`: no training, no graph: a contracts.md model spec plus arrays
  of bit widths, channel counts and PE/SIMD. Accumulator widths are the worst case for the
  bit widths (weights unknown). `to_model` builds the equivalent weightless HW graph for one
  candidate so the per-node model can check the fast path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from codesign.dataflow.cost import (CALIBRATED, DSP48, IDENTITY, OP_COST, RAM_STYLES, RESOURCES, Calibration,
                                    hw_nodes, mvau_acc_bits_worst, node_params)
from codesign.dataflow.folding import divisors
from codesign.errors import CodesignError

log = logging.getLogger(__name__)

_STR_KEYS = ("ram_style", "resType")


def _evaluate_layers(layers: list[dict[str, Any]], n: int, calibration: Calibration, dsp_family: int,
                     clock_ns: float, board: Any = None, util: float = 1.0,
                     per_node: bool = False) -> dict[str, Any]:
    """Sum the per-op formulas over a chain of layers whose parameters may be arrays of n."""
    tot = {r: np.zeros(n, np.int64) for r in RESOURCES}
    max_c = np.zeros(n, np.int64)
    crit = np.zeros(n, np.int64)
    nodes: dict[str, Any] = {}
    for p in layers:
        est = calibration.apply(p["op_type"], OP_COST[p["op_type"]](p, dsp_family))
        for r in RESOURCES:
            tot[r] += np.broadcast_to(est[r], (n,))
        c = np.broadcast_to(est["cycles"], (n,))
        max_c = np.maximum(max_c, c)
        crit += c
        if per_node:
            nodes[p["name"]] = {k: np.broadcast_to(est[k], (n,)) for k in CALIBRATED}
    out: dict[str, Any] = dict(tot)
    out["max_cycles"] = max_c
    out["critical_path_cycles"] = crit
    out["fps"] = 1e9 / (clock_ns * np.maximum(max_c, 1))
    out["latency_ns"] = crit * clock_ns
    if board is not None:
        from codesign.dataflow.boards import get_board

        b = get_board(board)
        avail = b.resources()
        fr = np.stack([tot[r] / avail[r] if avail[r] else np.where(tot[r] > 0, np.inf, 0.0) for r in RESOURCES])
        out["utilisation"] = {r: fr[i] for i, r in enumerate(RESOURCES)}
        out["max_utilisation"] = fr.max(axis=0)
        out["binding_resource"] = np.asarray(RESOURCES)[fr.argmax(axis=0)]
        out["fits"] = out["max_utilisation"] <= util
    if per_node:
        out["nodes"] = nodes
    return out


def _n_of(values: Any) -> int:
    """Number of candidates: the common length of every array/list leaf (scalars broadcast).
    Mappings and tuples are containers; lists and arrays are candidate vectors."""
    n = 1
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, tuple):
            stack.extend(v)
        elif isinstance(v, (list, np.ndarray)) and np.ndim(v):
            m = len(v)
            if m != 1 and n != 1 and m != n:
                raise CodesignError(f"candidate arrays disagree in length ({n} vs {m})")
            n = max(n, m)
    return n


def _largest_divisor_leq(dim: np.ndarray, cap: np.ndarray, cands: list[int]) -> np.ndarray:
    """Per candidate: the largest d in `cands` with dim % d == 0 and d <= cap (at least 1)."""
    out = np.ones(np.broadcast(dim, cap).shape, np.int64)
    for d in sorted(cands):
        ok = (dim % d == 0) & (d <= cap)
        out = np.where(ok, d, out)
    return out


def _smallest_divisor_meeting(dim: np.ndarray, cyc_of, target: np.ndarray, cands: list[int]) -> np.ndarray:
    """Per candidate: the smallest d in `cands` dividing dim with cyc_of(d) <= target, else dim."""
    dim = np.asarray(dim, np.int64)
    out = np.broadcast_to(dim, np.broadcast(dim, target).shape).copy()
    done = np.zeros(out.shape, bool)
    for d in sorted(cands):
        ok = ~done & (dim % d == 0) & (cyc_of(d) <= target)
        out = np.where(ok, d, out)
        done |= ok
    return out


@dataclass
class FastNet:
    """A network as a chain of op parameter templates (see module docstring)."""

    layers: list[dict[str, Any]]
    source: str
    spec: dict[str, Any] | None = None
    input_bits: int = 8
    label_select_k: int | None = None

    # ------------------------------------------------------------------ from a compiled model
    @classmethod
    def from_model(cls, model: Any) -> "FastNet":
        """Extract the HW nodes' parameters once (weights read here, never again)."""
        return cls([node_params(model, n) for n in hw_nodes(model)], source="model")

    def evaluate(self, overrides: Mapping[str, Mapping[str, Any]] | None = None, *,
                 calibration: Calibration | None = None, dsp_family: int = DSP48, clock_ns: float = 10.0,
                 board: Any = None, util: float = 1.0, per_node: bool = False) -> dict[str, Any]:
        """Evaluate candidates given as {node name: {param: array}} overrides (model source).

        Typical params: PE, SIMD (any `node_params` key works, e.g. ram_style as a string).
        Folding legality is the caller's job (use divisors); illegal values raise.
        """
        if self.source != "model":
            raise CodesignError("FastNet.from_spec networks are evaluated with evaluate_spec()")
        overrides = overrides or {}
        names = {p["name"] for p in self.layers}
        for k in overrides:
            if k not in names:
                raise CodesignError(f"unknown node {k!r} in candidates; nodes: {', '.join(sorted(names))}")
        n = _n_of(overrides)
        layers = []
        for p in self.layers:
            q = dict(p)
            for k, v in overrides.get(p["name"], {}).items():
                if k not in q:
                    raise CodesignError(f"{p['name']}: unknown parameter {k!r}")
                q[k] = v if k in _STR_KEYS else np.asarray(v, np.int64)
            _check_divides(q)
            layers.append(q)
        return _evaluate_layers(layers, n, calibration or IDENTITY, dsp_family, clock_ns, board, util, per_node)

    # ------------------------------------------------------------------ from a model spec
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], input_bits: int = 8,
                  label_select_k: int | None = None) -> "FastNet":
        """A network described by a contracts.md model spec (no weights, no graph)."""
        from codesign.models.zoo import validate_spec

        validate_spec(dict(spec))
        return cls([], source="spec", spec=dict(spec), input_bits=int(input_bits), label_select_k=label_select_k)

    @staticmethod
    def bits_from_plans(plans: list[Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
        """weight_bits / act_bits / input_bits arrays from one or more contracts.md bit plans
        (`{"input_bits": 8, "layers": {"fc0": {"weight_bits": 4, "act_bits": 4}, ...}}`)."""
        plans = [plans] if isinstance(plans, Mapping) else list(plans)
        layers = plans[0]["layers"]
        wb = {k: np.asarray([p["layers"][k]["weight_bits"] for p in plans], np.int64) for k in layers}
        ab = {k: np.asarray([p["layers"][k].get("act_bits", 0) for p in plans], np.int64) for k in layers}
        ib = np.asarray([p.get("input_bits", 8) for p in plans], np.int64)
        return {"weight_bits": wb, "act_bits": ab, "input_bits": ib}

    def spec_layers(self, weight_bits: Mapping[str, Any], act_bits: Mapping[str, Any],
                    pe: Mapping[str, Any], simd: Mapping[str, Any],
                    channels: Mapping[str, Any] | None = None, input_bits: Any = None,
                    aux_pe: Mapping[str, Any] | None = None, ram_style: str = "auto",
                    res_type: str = "lut") -> tuple[list[dict[str, Any]], int]:
        """The HW node chain of the spec for candidate arrays (keys are spec layer names).

        The chain mirrors the lowering: conv -> [FMPadding] -> SlidingWindow -> MVAU (with
        thresholds when the layer has an activation), pool -> StreamingMaxPool, fc -> MVAU,
        last fc -> MVAU without activation, optional LabelSelect. SlidingWindow/FMPadding take
        the following MVAU's SIMD (largest divisor of their channels not above it); max-pool and
        LabelSelect PE, unless given in `aux_pe` by node name, is the smallest divisor whose
        cycles stay within the MVAU bottleneck.
        """
        spec = self.spec
        assert spec is not None
        channels = channels or {}
        aux_pe = aux_pe or {}
        n = _n_of((weight_bits, act_bits, pe, simd, channels, input_bits, aux_pe))
        A = lambda v: np.broadcast_to(np.asarray(v, np.int64), (n,)) if np.ndim(v) else np.full(n, int(v), np.int64)  # noqa: E731
        ib = A(self.input_bits if input_bits is None else input_bits)
        c_in, h, w = spec["input_shape"]
        C = A(c_in)
        cur_bits = ib
        cur_bipolar = np.zeros(n, bool)  # the image input is unsigned, never bipolar
        flat = False
        counters: dict[str, int] = {}
        layers: list[dict[str, Any]] = []
        followers: list[tuple[dict[str, Any], int]] = []  # (node, index of the MVAU it follows)

        def name(op: str) -> str:
            i = counters.get(op, 0)
            counters[op] = i + 1
            return f"{op}_{i}"

        qls = [l for l in spec["layers"] if l["type"] in ("conv", "fc")]
        last_name = qls[-1]["name"]
        for layer in spec["layers"]:
            t = layer["type"]
            if t == "conv":
                k, s, pad = int(layer["kernel"]), int(layer.get("stride", 1)), int(layer.get("padding", 0))
                if pad:
                    fm = {"op_type": "FMPadding", "name": name("FMPadding"), "H": h, "W": w, "pad_t": pad,
                          "pad_l": pad, "pad_b": pad, "pad_r": pad, "C": C, "SIMD": None, "bits": cur_bits}
                    layers.append(fm)
                    h, w = h + 2 * pad, w + 2 * pad
                oh, ow = (h - k) // s + 1, (w - k) // s + 1
                sw = {"op_type": "SlidingWindow", "name": name("SlidingWindow"), "C": C, "SIMD": None, "IH": h,
                      "IW": w, "OH": oh, "OW": ow, "kh": k, "kw": k, "sh": s, "sw": s, "dh": 1, "dw": 1,
                      "abits": cur_bits, "ram_style": "distributed"}
                layers.append(sw)
                mw, nv, h, w = C * k * k, oh * ow, oh, ow
                if pad:
                    followers.append((fm, len(layers)))
                followers.append((sw, len(layers)))
            elif t == "pool":
                kp = int(layer["kernel"])
                nm = name("StreamingMaxPool")
                layers.append({"op_type": "StreamingMaxPool", "name": nm, "H": h, "W": w,
                               "k": kp, "C": C, "PE": aux_pe.get(nm), "bits": cur_bits, "ram_style": "auto"})
                h, w = h // kp, w // kp
                continue
            elif t == "flatten":
                flat = True
                continue
            if t == "fc":
                mw, nv = (C * h * w), 1
                h = w = 1
            lname = layer["name"]
            wb = A(weight_bits[lname])
            is_last = lname == last_name
            act = bool(layer.get("act", True)) and not is_last
            mh = A(spec["num_classes"]) if is_last else A(channels.get(lname, layer.get("out_channels", layer.get("out_features"))))
            ab_out = A(act_bits[lname]) if act else None
            wmin = np.where(wb == 1, -1, -(2 ** (wb - 1)))
            wmax = np.where(wb == 1, 1, 2 ** (wb - 1) - 1)
            amin = np.where(cur_bipolar, -1, 0)
            amax = np.where(cur_bipolar, 1, 2 ** cur_bits - 1)
            acc = mvau_acc_bits_worst(mw, wmin, wmax, amin, amax)
            xnor = ((wb == 1) & cur_bipolar).astype(np.int64)
            mv = {"op_type": "MVAU", "name": name("MVAU"), "MW": mw, "MH": mh, "PE": A(pe[lname]),
                  "SIMD": A(simd[lname]), "Nv": nv, "wbits": wb, "abits": cur_bits,
                  "obits": ab_out if act else acc, "acc_bits": acc,
                  "n_thr": (2 ** ab_out - 1) if act else np.zeros(n, np.int64),
                  "ram_style": ram_style, "resType": res_type, "xnor": xnor, "_layer": lname,
                  "_act": act, "_wbipolar": wb == 1}
            layers.append(mv)
            C = mh
            if act:
                cur_bits, cur_bipolar = ab_out, ab_out == 1
            else:
                cur_bits, cur_bipolar = acc, np.zeros(n, bool)
        if self.label_select_k:
            layers.append({"op_type": "LabelSelect", "name": name("LabelSelect"), "L": C, "PE": aux_pe.get("LabelSelect_0"),
                           "K": int(self.label_select_k), "vbits": cur_bits})
        # SIMD of SlidingWindow/FMPadding follows the MVAU that consumes them
        for node, mv_idx in followers:
            cap = layers[mv_idx]["SIMD"]
            node["SIMD"] = _largest_divisor_leq(node["C"], cap, divisors(int(np.max(node["C"]))) if np.ndim(node["C"]) else divisors(int(node["C"])))
        for q in layers:
            _check_divides(q)
        # remaining PE: smallest divisor within the MVAU bottleneck
        mv_cycles = np.zeros(n, np.int64)
        for q in layers:
            if q["op_type"] == "MVAU":
                mv_cycles = np.maximum(mv_cycles, OP_COST["MVAU"](q, DSP48)["cycles"])
        cand_c = sorted({int(c) for q in layers for c in np.unique(np.asarray(q.get("C", q.get("L", 1))))})
        for q in layers:
            if q["op_type"] in ("StreamingMaxPool", "LabelSelect") and q["PE"] is None:
                dim = q["C"] if q["op_type"] == "StreamingMaxPool" else q["L"]
                dset = sorted({d for c in cand_c for d in divisors(c)})
                if q["op_type"] == "StreamingMaxPool":
                    cyc = lambda d, q=q: q["H"] * q["W"] * (q["C"] // d)  # noqa: E731
                else:
                    cyc = lambda d, q=q: q["L"] // d  # noqa: E731
                q["PE"] = _smallest_divisor_meeting(dim, cyc, mv_cycles, dset)
            elif q.get("PE", 0) is not None and q["op_type"] in ("StreamingMaxPool", "LabelSelect"):
                q["PE"] = A(q["PE"])
        return layers, n

    def evaluate_spec(self, weight_bits: Mapping[str, Any], act_bits: Mapping[str, Any],
                      pe: Mapping[str, Any], simd: Mapping[str, Any],
                      channels: Mapping[str, Any] | None = None, input_bits: Any = None,
                      aux_pe: Mapping[str, Any] | None = None, *, ram_style: str = "auto", res_type: str = "lut",
                      calibration: Calibration | None = None, dsp_family: int = DSP48, clock_ns: float = 10.0,
                      board: Any = None, util: float = 1.0, per_node: bool = False) -> dict[str, Any]:
        """Evaluate candidates of a spec network: every argument maps a spec layer name to a
        scalar or an array of n candidates. Returns arrays: max_cycles, fps, latency_ns,
        critical_path_cycles, LUT, FF, BRAM_18K, URAM, DSP (and utilisation/fits with a board)."""
        if self.source != "spec":
            raise CodesignError("FastNet.from_model networks are evaluated with evaluate()")
        if ram_style not in RAM_STYLES:
            raise CodesignError(f"unknown ram_style {ram_style!r}; valid: {', '.join(RAM_STYLES)}")
        layers, n = self.spec_layers(weight_bits, act_bits, pe, simd, channels, input_bits, aux_pe,
                                     ram_style, res_type)
        if board is not None and dsp_family == DSP48:
            from codesign.dataflow.boards import get_board

            dsp_family = get_board(board).dsp_family
        return _evaluate_layers(layers, n, calibration or IDENTITY, dsp_family, clock_ns, board, util, per_node)

    def to_model(self, index: int, **cfg: Any) -> Any:
        """The weightless HW graph of candidate `index` (same arguments as `spec_layers`), for
        the per-node cost model; HW nodes only, attributes as the lowering writes them."""
        from onnx import TensorProto, helper
        from qonnx.core.datatype import DataType
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.basic import qonnx_make_model

        from codesign.dataflow.ops import make_hw_node

        layers, _ = self.spec_layers(**cfg)
        at = lambda v: int(np.asarray(v).reshape(-1)[index] if np.ndim(v) else v)  # noqa: E731

        def dt(bits: int, bipolar: bool, signed: bool = False) -> str:
            if bipolar:
                return "BIPOLAR"
            if bits == 1 and not signed:
                return "BINARY"
            return f"{'INT' if signed else 'UINT'}{bits}"

        nodes, tin = [], "in0"
        cur = dt(at(self.input_bits if cfg.get("input_bits") is None else cfg["input_bits"]), False)
        for i, p in enumerate(layers):
            tout = f"t{i}"
            op, nm = p["op_type"], p["name"]
            if op == "MVAU":
                wb = at(p["wbits"])
                odt = dt(at(p["obits"]), at(p["obits"]) == 1 and p["_act"]) if p["_act"] else f"INT{at(p['acc_bits'])}"
                nodes.append(make_hw_node("MVAU", [tin, f"W{i}"], [tout], nm, MW=at(p["MW"]), MH=at(p["MH"]),
                                          PE=at(p["PE"]), SIMD=at(p["SIMD"]), inputDataType=cur,
                                          weightDataType=dt(wb, wb == 1, signed=True), outputDataType=odt,
                                          noActivation=0 if p["_act"] else 1, binaryXnorMode=at(p["xnor"]),
                                          numInputVectors=[at(p["Nv"])], ram_style=p["ram_style"],
                                          resType=p["resType"]))
                cur = odt
            elif op == "SlidingWindow":
                nodes.append(make_hw_node(op, [tin], [tout], nm, ConvKernelDim=[p["kh"], p["kw"]],
                                          IFMChannels=at(p["C"]), IFMDim=[p["IH"], p["IW"]], OFMDim=[p["OH"], p["OW"]],
                                          SIMD=at(p["SIMD"]), Stride=[p["sh"], p["sw"]], Dilation=[1, 1],
                                          inputDataType=cur, outputDataType=cur, ram_style=p["ram_style"]))
            elif op == "FMPadding":
                nodes.append(make_hw_node(op, [tin], [tout], nm, ImgDim=[p["H"], p["W"]],
                                          Padding=[p["pad_t"], p["pad_l"], p["pad_b"], p["pad_r"]],
                                          NumChannels=at(p["C"]), SIMD=at(p["SIMD"]), inputDataType=cur))
            elif op == "StreamingMaxPool":
                nodes.append(make_hw_node(op, [tin], [tout], nm, ImgDim=[p["H"], p["W"]], PoolDim=[p["k"], p["k"]],
                                          NumChannels=at(p["C"]), PE=at(p["PE"]), dataType=cur))
            elif op == "LabelSelect":
                nodes.append(make_hw_node(op, [tin], [tout], nm, Labels=at(p["L"]), PE=at(p["PE"]),
                                          K=int(p["K"]), inputDataType=cur, outputDataType="UINT32"))
            tin = tout
        c0, h0, w0 = self.spec["input_shape"]
        first = layers[0]
        in_shape = [1, c0 * h0 * w0] if first["op_type"] == "MVAU" else [1, h0, w0, c0]
        graph = helper.make_graph(nodes, "fast_spec", [helper.make_tensor_value_info("in0", TensorProto.FLOAT, in_shape)],
                                  [helper.make_tensor_value_info(tin, TensorProto.FLOAT, None)])
        model = ModelWrapper(qonnx_make_model(graph, producer_name="codesign.fast"))
        model.set_tensor_datatype("in0", DataType[dt(at(self.input_bits if cfg.get("input_bits") is None
                                                         else cfg["input_bits"]), False)])
        try:  # shapes let the stream passes (InsertDWC/InsertFIFO) run on this graph
            from qonnx.transformation.infer_shapes import InferShapes

            model = model.transform(InferShapes())
        except Exception as exc:  # noqa: BLE001 - the cost model does not need shapes
            log.debug("shape inference on the spec graph failed: %s", exc)
        return model


def _check_divides(q: Mapping[str, Any]) -> None:
    from codesign.dataflow.folding import FOLD_CONSTRAINTS, _PARAM_DIM
    from codesign.errors import FoldingError

    for fattr, dim_attr in FOLD_CONSTRAINTS.get(q["op_type"], {}).items():
        v = q.get(fattr)
        if v is None:
            continue
        dim = np.asarray(q[_PARAM_DIM[dim_attr]], np.int64)
        v = np.asarray(v, np.int64)
        bad = (v < 1) | (dim % np.maximum(v, 1) != 0)
        if np.any(bad):
            i = int(np.argmax(np.broadcast_to(bad, np.broadcast(bad, dim).shape).reshape(-1)))
            vv = int(np.broadcast_to(v, bad.shape).reshape(-1)[i]) if bad.ndim else int(v)
            dd = int(np.broadcast_to(dim, bad.shape).reshape(-1)[i]) if bad.ndim else int(dim)
            raise FoldingError(f"{q['name']} ({q['op_type']}): {fattr}={vv} does not divide {dim_attr}={dd} "
                               f"(candidate {i}); valid {fattr} values: {divisors(dd)}")
