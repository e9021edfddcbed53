"""The op interface: one class per HW op owns everything about it (docs/contracts.md, "The op interface").

Every HW op is a qonnx ``CustomOp`` so that ``qonnx.core.onnx_exec.execute_onnx`` runs a
compiled graph through the op's golden numpy function. The shape and stream helpers follow
FINN's names (``get_folded_input_shape``, ``get_instream_width``, ...).

Why one class per op: the compiler, folding, the vectorised search path, the reports, the RTL
renderer, the PYNQ driver and the FINN backend all ask the op class (through the registry in
``codesign.dataflow.ops``) instead of keeping their own op-type tables, so adding an op is one
new module plus its Verilog template, and the cycle/resource models cannot disagree.

Class-level hooks work on a *parameter dict* (``params_from_attrs``), never on a graph node,
because the vectorised search path evaluates them on numpy arrays of candidates without any
ONNX graph; the per-node path builds the same dict from a node and calls the same functions.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, ClassVar, Mapping

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

DOMAIN = "codesign.dataflow.ops"


def dtype_bits(dt: DataType) -> int:
    """Bit width of a qonnx datatype on a stream (BIPOLAR is one bit)."""
    return int(dt.bitwidth())


def prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))


class HWCustomOp(CustomOp):
    """Base of the codesign HW ops: the op interface (docs/contracts.md, "The op interface").

    A subclass (one module per op) defines the attributes, ``_execute`` (golden numpy), the
    normal/folded shapes and the class-level hooks below: ``params_from_attrs``, ``cycles``
    (the single cycle model), ``resources``, ``io_pattern`` (FIFO sizing), the folding
    declarations, the FINN names and ``generate_rtl`` with its ``template``. The ONNX plumbing
    (shape inference, datatype annotation, verification) lives here.
    """

    #: attributes every HW op understands (FINN carries similar bookkeeping attributes);
    #: inFIFODepths/outFIFODepths are FINN's per-node FIFO depths (written by FIFO sizing)
    _common_attrs: dict[str, tuple] = {
        "backend": ("s", False, "codesign"),
        "preferred_impl_style": ("s", False, "rtl"),
        "inFIFODepths": ("ints", False, [2]),
        "outFIFODepths": ("ints", False, [2]),
    }

    # -- identity: FINN names ----------------------------------------------------------------
    #: FINN's op type for this op (None: the class name); FINN >= 0.10 specialises it into
    #: ``<finn_op_type>_hls`` / ``_rtl`` (``finn_op_names``)
    finn_op_type: ClassVar[str | None] = None
    #: the folding attributes FINN accepts for this op (others are dropped when translating)
    finn_folding_attrs: ClassVar[tuple[str, ...]] = ()
    #: FINN creates these nodes itself in later steps (FIFOs, width converters)
    finn_inserts_itself: ClassVar[bool] = False
    #: host-side op types (e.g. the float input quantizer) that FINN+ puts in hardware as this
    #: op before the HW chain, where we keep them on the host
    finn_host_ops_before: ClassVar[tuple[str, ...]] = ()

    # -- folding ---------------------------------------------------------------------------
    #: folded attribute -> (attribute of the dimension it must divide, its params key)
    fold_dims: ClassVar[dict[str, tuple[str, str]]] = {}
    #: attribute that folds the innermost dimension of the input / output stream (None: one
    #: element per word or not an attribute); the driver and followers read it
    in_fold_attr: ClassVar[str | None] = None
    out_fold_attr: ClassVar[str | None] = None
    #: the op's (single) folded attribute takes its consumer's input fold (largest divisor of
    #: its own dimension not above it), so the stream widths match without a width converter
    follows_consumer: ClassVar[bool] = False
    #: which spec layer a node belongs to in per-layer tables: "weights" (it is the layer),
    #: "next" (it feeds the next weight layer), "previous" (it follows the previous one)
    layer_role: ClassVar[str] = "previous"
    #: a stream buffer between two nodes (its ``depth`` attribute is the FIFO depth)
    is_stream_buffer: ClassVar[bool] = False
    #: stream plumbing the compile flow inserts after folding (width converters, FIFOs): not in a
    #: fresh lowering, so the saved folding config leaves such nodes out
    inserted_after_folding: ClassVar[bool] = False
    #: stream inputs / outputs of the op (a branching graph's join has two inputs, its fork two
    #: outputs); the stream inputs come first in the node's inputs, initializers after them. RTL
    #: ports: ``in<k>_V_*`` and ``out_V_*`` (output 0), ``out<j>_V_*`` (j >= 1)
    n_stream_inputs: ClassVar[int] = 1
    n_stream_outputs: ClassVar[int] = 1

    # -- RTL -------------------------------------------------------------------------------
    #: the parametric Verilog core in accel_templates/ this op instantiates
    template: ClassVar[str | None] = None
    #: further Verilog files in accel_templates/ the core instantiates (modules shared between
    #: ops, e.g. the popcount tree); the RTL flow copies them with the core (``template_files``)
    extra_templates: ClassVar[tuple[str, ...]] = ()
    #: names under which the RTL generator receives the initializers of inputs 1, 2, ...
    rtl_inputs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def template_files(cls) -> list[str]:
        """Every accel_templates/ Verilog file a node of this op needs, its core first: what the
        RTL renderer copies into a design (and so Verilator, Yosys and the Vivado package read)
        and what the out-of-context timing flow synthesises per node."""
        return ([cls.template] if cls.template else []) + list(cls.extra_templates)

    def get_nodeattr_types(self) -> dict[str, tuple]:
        attrs = dict(self._common_attrs)
        attrs.update(self.op_attrs())
        return attrs

    def op_attrs(self) -> dict[str, tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- datatypes -------------------------------------------------------------------------
    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("inputDataType")]

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("outputDataType")]

    # -- shapes ----------------------------------------------------------------------------
    def get_normal_input_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_normal_output_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_folded_input_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_folded_output_shape(self, ind: int = 0) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def get_instream_width(self, ind: int = 0) -> int:
        """Bits per input stream word: the folded innermost dimension times the element bits."""
        return int(self.get_folded_input_shape(ind)[-1]) * dtype_bits(self.get_input_datatype(ind))

    def get_outstream_width(self, ind: int = 0) -> int:
        return int(self.get_folded_output_shape(ind)[-1]) * dtype_bits(self.get_output_datatype(ind))

    def get_instream_width_padded(self, ind: int = 0) -> int:
        """Stream width rounded up to whole bytes (AXI-Stream convention)."""
        return -(-self.get_instream_width(ind) // 8) * 8

    def get_outstream_width_padded(self, ind: int = 0) -> int:
        return -(-self.get_outstream_width(ind) // 8) * 8

    def get_number_output_values(self) -> int:
        """Number of output stream words per input frame."""
        return prod(self.get_folded_output_shape()[:-1])

    def get_number_input_values(self) -> int:
        return prod(self.get_folded_input_shape()[:-1])

    def stream_fold(self, direction: str) -> int:
        """Elements per stream word on the "input" or "output" stream (the driver packs by it)."""
        shape = self.get_folded_input_shape() if direction == "input" else self.get_folded_output_shape()
        return int(shape[-1])

    # -- the op's models (class level: work on parameter dicts, scalars or arrays) ---------
    @classmethod
    def finn_op_names(cls) -> tuple[str, ...]:
        """FINN's names for this op: the base name and its ``_hls`` / ``_rtl`` specialisations."""
        base = cls.finn_op_type or cls.__name__
        return (base, f"{base}_hls", f"{base}_rtl")

    #: how FINN+ lowers this op, in stream order: (FINN op type, {our attr: FINN attr} or None to
    #: pass FINN's folding attributes through); None: one node of ``finn_op_type`` (FINN+ 1.6.1)
    finn_lowering: ClassVar[tuple[tuple[str, dict[str, str] | None], ...] | None] = None

    @classmethod
    def finn_difference_notes(cls, ours: Mapping[str, Any], finn_main: Mapping[str, Any],
                              mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
        """Op-specific reasons why FINN+'s estimate of this node (attributes ``finn_main`` of its
        first FINN node, figures ``theirs``) differs from ours (``ours``, ``mine``); the
        comparison in ``codesign.backends.finn_plus`` adds the generic ones."""
        steps = cls.finn_lowering_steps() or ()
        if len(steps) > 1:
            return [f"FINN+ maps it to {len(steps)} nodes ({' + '.join(s[0] for s in steps)}); ours is one"]
        return []

    @classmethod
    def finn_folding_for(cls, attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """FINN's folding attributes for each node of this op's FINN+ lowering (stream order),
        from our node's attributes and folding entry ``attrs``: the declared renames, or FINN's
        folding attributes passed through."""
        out: list[dict[str, Any]] = []
        for _, rename in cls.finn_lowering_steps() or ():
            if rename is None:
                out.append({k: v for k, v in attrs.items() if k in cls.finn_folding_attrs})
            else:
                out.append({rename[k]: v for k, v in attrs.items() if k in rename})
        return out

    #: FINN's older names of this op (FINN < 0.10, e.g. ``MatrixVectorActivation``), accepted
    #: in folding configs written by those versions
    finn_legacy_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def finn_lowering_steps(cls) -> tuple[tuple[str, dict[str, str] | None], ...] | None:
        """FINN+'s node types for this op in stream order (None: FINN inserts it itself)."""
        if cls.finn_inserts_itself:
            return None
        return cls.finn_lowering or ((cls.finn_op_names()[0], None),)

    @classmethod
    def params_from_attrs(cls, a: Mapping[str, Any], inits: Mapping[str, Any] | None = None,
                          tensor_dt: Any = None) -> dict[str, Any]:  # pragma: no cover - abstract
        """The numbers the cycle/resource/FIFO models need, from the node attributes ``a``
        (defaults filled in), the RTL initializers ``inits`` (``rtl_inputs`` names, may be
        missing) and ``tensor_dt(kind)`` -> qonnx DataType of the "input"/"output" tensor or
        None. Folding attributes (PE, SIMD, ram_style, resType) appear under their own names so
        a caller can override them with candidate arrays."""
        raise NotImplementedError

    @classmethod
    def cycles(cls, p: Mapping[str, Any]) -> Any:  # pragma: no cover - abstract
        """The op's single cycle model: clock cycles per frame (array-polymorphic)."""
        raise NotImplementedError

    @classmethod
    def resources(cls, p: Mapping[str, Any], dsp_family: int = 0) -> dict[str, Any]:  # pragma: no cover
        """LUT, FF, BRAM_18K, URAM, DSP and mem_bits of the RTL as written (array-polymorphic)."""
        raise NotImplementedError

    @classmethod
    def pipeline_depth(cls, p: Mapping[str, Any]) -> Any:
        """Register stages between the clock step at which ``io_pattern`` emits an output word
        and the step at which the RTL's output register holds it (array-polymorphic). 1 for a
        module with one registered output; the pipelined cores declare theirs (the formula is in
        each template's header comment). It adds to the latency, never to the II."""
        return np.asarray(1, dtype=np.int64)

    @classmethod
    def cost(cls, p: Mapping[str, Any], dsp_family: int = 0) -> dict[str, Any]:
        """``cycles`` plus ``resources`` (and the ``pipeline_depth``): what the per-node and the
        vectorised paths both call."""
        out = dict(cls.resources(p, dsp_family))
        out["cycles"] = np.asarray(cls.cycles(p), dtype=np.int64)
        out["pipeline_depth"] = np.asarray(cls.pipeline_depth(p), dtype=np.int64)
        return out

    @classmethod
    def io_pattern(cls, p: Mapping[str, Any]) -> tuple[int, np.ndarray, np.ndarray]:  # pragma: no cover
        """How the op consumes and produces stream words over one frame when never stalled:
        ``(n_steps, consume_steps, produce_steps)``, the clock steps (0 .. n_steps-1) at which
        input word k is taken and output word k is emitted. ``n_steps`` equals ``cycles(p)``
        (scalar params). FIFO sizing simulates the chain from these patterns. An op whose stream
        inputs carry different words (the concat) returns a tuple of consume-step arrays, one per
        input, and overrides ``latency``; a join whose inputs move together returns one array."""
        raise NotImplementedError

    @classmethod
    def input_buffer_words(cls, p: Mapping[str, Any]) -> int:
        """Input words the op can hold beyond what ``io_pattern`` takes (e.g. a second input
        buffer filled while the current one is replayed): FIFO sizing counts them as depth."""
        return 0

    @classmethod
    def latency(cls, p: Mapping[str, Any]) -> int:
        """Pipeline latency: cycles from the frame's first input word to its first output word
        (the io_pattern's distance plus the pipeline depth)."""
        _, cons, prod_ = cls.io_pattern(p)
        depth = int(np.asarray(cls.pipeline_depth(p)).reshape(-1)[0])
        return int(prod_[0] - cons[0] + depth) if len(prod_) and len(cons) else 0

    @classmethod
    def fold_candidates(cls, p: Mapping[str, Any], grids: dict[str, list[int]],
                        mvau_wwidth_max: int) -> dict[str, list[int]]:
        """Restrict the divisor grids of the folded attributes (e.g. a stream-width cap)."""
        return grids

    @classmethod
    def op_and_param_counts(cls, p: Mapping[str, Any]) -> dict[str, int]:
        """MACs and parameters keyed like FINN's op_and_param_counts.json (none by default)."""
        return {}

    @classmethod
    def generate_rtl(cls, spec: Any, inst: str, ctx: Any) -> Any:  # pragma: no cover - abstract
        """Render the node: ``spec`` has name, op_type, attrs, inits; ``ctx`` is hw.rtl's render
        context (``top``, ``write_data(name, text)``, ``render(template, name, **kw)``).
        Returns a ``codesign.dataflow.ops.rtlgen.NodeRTL``."""
        raise NotImplementedError

    @classmethod
    def declared_defaults(cls) -> dict[str, Any]:
        """Defaults of the optional attributes (accDataType's placeholder left out)."""
        types = cls.get_nodeattr_types(cls.__new__(cls))
        return {k: spec[2] for k, spec in types.items() if not spec[1] and k != "accDataType"}

    @classmethod
    def rtl_cycles(cls, spec: Any) -> int:
        """Cycles per frame of a node given as an RTL spec (attrs + inits): the same model."""
        a = cls.declared_defaults()
        a.update({k: (v.decode() if isinstance(v, bytes) else v) for k, v in spec.attrs.items()})
        return int(cls.cycles(cls.params_from_attrs(a, spec.inits)))

    # -- per-node views of the class models -------------------------------------------------
    def cost_params(self, model: Any = None) -> dict[str, Any]:
        """``params_from_attrs`` for this node: its attributes over the declared defaults
        (accDataType's INT32 default is a placeholder, not a computed width, so it is left out),
        its initializers from ``model`` and the tensor datatypes annotated there."""
        node = self.onnx_node
        a = self.declared_defaults()
        a.update(node_attrs(node))
        inits: dict[str, Any] = {}
        if model is not None:
            for name, tensor in zip(self.rtl_inputs, list(node.input)[self.n_stream_inputs:]):
                if tensor:
                    v = model.get_initializer(tensor)
                    if v is not None:
                        inits[name] = v

        def tensor_dt(kind: str):
            if model is None:
                return None
            t = node.input[0] if kind == "input" else node.output[0]
            return model.get_tensor_datatype(t)

        p = self.params_from_attrs(a, inits, tensor_dt)
        p["op_type"] = node.op_type
        p["name"] = node.name
        return p

    def get_exp_cycles(self) -> int:
        """Cycles per frame from the op's single cycle model."""
        return int(self.cycles(self.cost_params(None)))

    def mismatches_against_source(self, y: np.ndarray, y_ref: np.ndarray) -> int | None:
        """As the network's last HW node whose output differs in size from the source model's
        (``y_ref``): the number of mismatching output elements, or None when this op does not
        change the output's meaning (then the sizes must agree)."""
        return None

    #: short name of the single-node example builder (``codesign.hw.opspecs.<name>_spec``);
    #: None: the op has no example builder yet
    example_name: ClassVar[str | None] = None

    @classmethod
    def example_node(cls, *args: Any, **kw: Any) -> Any:
        """One node of this op with seeded random weights at a chosen folding and bit width
        (``HWNodeSpec``), for timing, synthesis and RTL tests and the cost-model corpus."""
        raise NotImplementedError(f"{cls.__name__} has no example node builder")

    def emits_activation(self) -> bool:
        """Whether this node's output is a quantized activation (the codes of a source Quant):
        the verifier pairs such nodes with the source model's activation quantizers."""
        return False

    def get_latency(self) -> int:
        """Pipeline latency of this node (see ``latency``)."""
        return int(self.latency(self.cost_params(None)))

    # -- ONNX plumbing ---------------------------------------------------------------------
    def make_shape_compatible_op(self, model: Any):
        """A constant of the normal output shape stands in for the op in shape inference."""
        return self.make_const_shape_op(list(self.get_normal_output_shape()))

    def infer_node_datatype(self, model: Any) -> None:
        """Annotate the output with the op's declared output datatype."""
        model.set_tensor_datatype(self.onnx_node.output[0], self.get_output_datatype())

    def verify_node(self) -> list[str]:
        """Check attributes (required ones present, folding legal); returns info messages."""
        msgs: list[str] = []
        for name, spec in self.get_nodeattr_types().items():
            if spec[1]:
                try:
                    self.get_nodeattr(name)
                except Exception as e:  # noqa: BLE001 - report, do not raise
                    msgs.append(f"missing required attribute {name}: {e}")
        if not msgs:  # the folding checks need the required attributes
            msgs.extend(self.verify_folding())
        if not msgs:
            msgs.append("ok")
        return msgs

    def verify_folding(self) -> list[str]:
        return []

    def execute_node(self, context: dict, graph: Any) -> None:
        node = self.onnx_node
        inputs = [context[name] for name in node.input]
        out = self._execute(*inputs)
        expected = tuple(context[node.output[0]].shape) if node.output[0] in context else None
        # float64 holds every integer below 2^53 exactly (float32 only below 2^24: a 784-input
        # 8x8-bit accumulator already exceeds that); a tensor read by a standard op on the host
        # stays float32, the type onnxruntime expects there
        host_reader = any(n.domain != DOMAIN for n in graph.node if node.output[0] in n.input)
        out = np.asarray(out, dtype=np.float32 if host_reader else np.float64)
        if expected is not None and expected != tuple(out.shape) and prod(expected) == out.size:
            out = out.reshape(expected)
        context[node.output[0]] = out

    def _execute(self, *inputs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _clog2(x: Any) -> np.ndarray:
    """ceil(log2(x)) of positive integers (0 for 1), exact and array-polymorphic, as Verilog's $clog2."""
    v = np.maximum(np.asarray(x, dtype=np.int64), 1)
    out = np.zeros_like(v)
    while np.any(v > (1 << out)):
        out = np.where(v > (1 << out), out + 1, out)
    return out


#: Yosys 0.23 memory_libmap's choice for a memory without a ram_style, from its xc7 costs: a
#: RAMB18 costs 129 (RAMB36 257), a LUTRAM primitive 8 (RAM32M: 32 x 6, RAM64M: 64 x 3 for a
#: simple dual-port RAM), and a ROM bit left in logic 1/64 (inferred from measured ROMs: 512 x 16
#: = 8 Kib stays in logic, 896 x 16 and 1024 x 16 go to one RAMB18, 1024 x 4 stays in logic)
BRAM18_COST = 129
LUTRAM_COST = 8
ROM_LOGIC_BITS_PER_COST = 64


#: block-RAM port shapes (words, bits) Yosys 0.23 maps a ROM onto: RAMB18E1 and RAMB36E1
_RAMB18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
_RAMB36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))


def rom_bram18(depth: Any, width: Any) -> np.ndarray:
    """BRAM18 (RAMB36 = 2) of a ROM as Yosys 0.23 maps it: the ROM is cut into slices of a port
    shape's depth and the slices sit side by side in that shape's words (one port reads every
    slice at once, LUTs pick one), so a shape of D words x B bits needs ceil(ceil(depth/D) *
    width / B) primitives, parity bits included; the cheapest shape (129 per RAMB18, 257 per
    RAMB36) wins. Measured: 65536 x 4 -> 15 RAMB18 (2K x 9: 32 slices x 4 bits in 9-bit
    words), 65536 x 8 -> 29, 9216 x 32 -> 8 RAMB36 (1K x 36), 73728 x 16 -> 32 RAMB36, where
    the aspect table (``bram18_count``) says 16, 32, 18 and 72 BRAM18."""
    d, w = np.asarray(depth, np.int64), np.asarray(width, np.int64)
    best_cost = np.full(np.broadcast(d, w).shape, np.inf)
    best = np.zeros(best_cost.shape, np.int64)
    for shapes, cost, b18 in ((_RAMB18_SHAPES, BRAM18_COST, 1), (_RAMB36_SHAPES, 2 * BRAM18_COST - 1, 2)):
        for sd, sb in shapes:
            n = -(-(-(-d // sd) * w) // sb)
            c = n * cost
            better = c < best_cost
            best_cost = np.where(better, c, best_cost)
            best = np.where(better, n * b18, best)
    return np.where((d > 0) & (w > 0), best, 0).astype(np.int64)


def rom_auto_in_bram(depth: Any, width: Any) -> np.ndarray:
    """Whether Yosys puts a ROM without a ram_style in block RAM: its bits in logic cost more
    than the block RAM it needs (``rom_bram18``)."""
    d, w = np.asarray(depth, np.int64), np.asarray(width, np.int64)
    return (d > 0) & (w > 0) & (d * w > ROM_LOGIC_BITS_PER_COST * BRAM18_COST * rom_bram18(d, w))


def ram_auto_in_bram(depth: Any, width: Any) -> np.ndarray:
    """Whether Yosys puts a simple dual-port RAM without a ram_style (an input buffer) in
    block RAM: its LUTRAM primitives (RAM32M up to 32 words, else RAM64M) cost more than the RAMB18s."""
    from codesign.dataflow.cost import bram18_count, cdiv

    d, w = np.asarray(depth, np.int64), np.asarray(width, np.int64)
    lutram = LUTRAM_COST * np.where(d <= 32, cdiv(w, 6), cdiv(d, 64) * cdiv(w, 3))
    return (d > 0) & (w > 0) & (lutram > BRAM18_COST * bram18_count(d, w))


def rom_rtl_style(ram_style: Any, depth: Any, width: Any) -> np.ndarray:
    """Where Yosys puts a ROM of the rom_node wrapper (RAM_BLOCK or RAM_DISTRIBUTED): the
    generator writes ram_style "block" for ultra (Yosys infers no URAM); without a style (auto)
    Yosys 0.23 keeps a ROM in logic unless its bits cost more there than in block RAM
    (``rom_auto_in_bram``)."""
    from codesign.dataflow.cost import RAM_AUTO, RAM_BLOCK, RAM_DISTRIBUTED, RAM_ULTRA, ram_code

    rs = np.asarray(ram_code(ram_style), np.int64)
    rs = np.where(rs == RAM_ULTRA, RAM_BLOCK, rs)
    return np.where(rs == RAM_AUTO, np.where(rom_auto_in_bram(depth, width), RAM_BLOCK, RAM_DISTRIBUTED), rs)


@lru_cache(maxsize=65536)
def _rom_one(rs: int, depth: int, width: int) -> tuple[int, int, int]:
    """(BRAM18, logic LUTs, mux LUTs) of one ROM of depth x width bits as Yosys maps it.
    Cached: the folding search asks the same few shapes thousands of times."""
    from codesign.dataflow.cost import RAM_BLOCK, cdiv

    if depth <= 0 or width <= 0:
        return 0, 0, 0
    if int(rom_rtl_style(rs, depth, width)) == RAM_BLOCK:
        return int(rom_bram18(depth, width)), 0, 0
    lut = width * int(cdiv(depth, 64))  # one LUT6 per 64 words per bit, then a mux tree per bit
    return 0, lut, lut * int(_clog2(cdiv(depth, 64)))


def _pe_roms_one(pe: int, rs: int, depth: int, width: int, table: Mapping[int, tuple[int, ...]] | None,
                 cols: Mapping[int, tuple[int, ...]] | None) -> tuple[int, int, int, int, int]:
    widths = table.get(pe) if table else None
    if widths is None:  # contents unknown: every bit of every ROM varies
        widths = (width,) * pe
    distinct = cols.get(pe) if cols else None
    if distinct is None or len(distinct) != len(widths):
        distinct = widths
    bram = lut = mux = q_lut = 0
    for w, u in zip(widths, distinct):
        b, l, m = _rom_one(rs, depth, w)
        if b == 0 and w > 0:  # in logic: one function (and read register) per distinct column
            l, m = _rom_one(rs, depth, u)[1:] if u > 0 else (0, 0)
            q_lut += u
        bram, lut, mux = bram + b, lut + l, mux + m
    return bram, lut, mux, int(sum(widths)), q_lut


def pe_rom_memories(PE: Any, ram_style: Any, depth: Any, width: Any,
                    table: Mapping[int, tuple[int, ...]] | None = None,
                    cols: Mapping[int, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """PE ROMs of the rom_node wrapper (one per PE, depth x width, registered read) as Yosys
    0.23 maps them, over broadcast folding arrays (the vectorised search passes arrays).

    Each ROM is only as wide as its varying bits (``table``: ``rom_variable_bits`` of its
    contents, by PE; Yosys drops bits constant in every word, and a ROM of constants vanishes),
    placed by ``rom_rtl_style`` on that trimmed size; in logic, identical columns are one
    function (``cols``: ``rom_distinct_columns``). Returns BRAM_18K (``rom_bram18``),
    LUTRAM (logic LUTs: 64 words per LUT6 per distinct column), mux (the clog2(depth/64)-level mux tree per
    bit), var_bits (kept bits of all PEs), q_bits (read registers of the ROMs left in logic; a
    block RAM holds its own) and bits (untrimmed). Shared by every op with wrapper ROMs
    (the standalone threshold op, the depthwise unit) so their placement cannot disagree."""
    f = np.vectorize(lambda a, b, c, d: _pe_roms_one(int(a), int(b), int(c), int(d), table, cols),
                     otypes=[np.int64] * 5)
    from codesign.dataflow.cost import ram_code

    P = np.asarray(PE, np.int64)
    bram, lut, mux, var, q = f(P, np.asarray(ram_code(ram_style), np.int64), depth, width)
    return {"BRAM_18K": bram, "URAM": np.zeros_like(bram), "LUTRAM": lut, "mux": mux, "var_bits": var,
            "q_bits": q, "bits": P * np.asarray(depth, np.int64) * np.asarray(width, np.int64)}


#: rom_variable_bits results by content (cost_params runs many times per node during folding)
_ROM_VAR_CACHE: dict[tuple, dict[int, tuple[int, ...]]] = {}


def rom_variable_bits(codes: np.ndarray, bits: int) -> dict[int, tuple[int, ...]]:
    """Per folding PE (every divisor of the row count): the number of bits of each PE's ROM
    that vary over its words, the ROM of PE p holding rows p, p + PE, ... of `codes`.

    Why: Yosys (opt_mem, before memory mapping) drops the bits of a ROM that are constant in
    every word, so the memory that reaches block RAM or LUTs is only the varying bits wide;
    sorted thresholds in a narrow range share their high bits. `codes` (rows, n) are the
    non-negative `bits`-wide words the generator writes (element j at bits [j*bits, (j+1)*bits))."""
    c = np.asarray(codes, dtype=np.int64)
    if c.ndim != 2 or c.size == 0 or bits <= 0:
        return {}
    key = (c.shape, int(bits), hash(c.tobytes()))
    hit = _ROM_VAR_CACHE.get(key)
    if hit is not None:
        return hit
    rows = c.shape[0]
    planes = ((c[:, :, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.int8).reshape(rows, -1)
    out: dict[int, tuple[int, ...]] = {}
    for pe in range(1, rows + 1):
        if rows % pe:
            continue
        g = planes.reshape(rows // pe, pe, -1)
        out[pe] = tuple(int(v) for v in (g.max(axis=0) != g.min(axis=0)).sum(axis=1))
    if len(_ROM_VAR_CACHE) > 256:
        _ROM_VAR_CACHE.clear()
    _ROM_VAR_CACHE[key] = out
    return out


#: rom_distinct_columns results by content (as _ROM_VAR_CACHE)
_ROM_COL_CACHE: dict[tuple, dict[int, tuple[int, ...]]] = {}


def rom_distinct_columns(codes: np.ndarray, bits: int, pes: Any = None) -> dict[int, tuple[int, ...]]:
    """Per folding PE (as ``rom_variable_bits``): the number of distinct varying bit columns of
    each PE's ROM that no earlier PE's ROM has (a column: one bit position over the ROM's words;
    the sum over PEs is the distinct columns of all of them).

    Why: a ROM Yosys leaves in logic becomes one function of the address per kept bit, and
    identical functions (and their read registers) are merged (opt_merge), so a shallow ROM
    costs at most one LUT per distinct column: 135 varying bits of a 4-word ROM are at most
    14 distinct functions of its 2 address bits, also over all the PE ROMs (one address). Block-RAM placement still sees every varying
    bit (``rom_variable_bits``). ``pes``: only these foldings (default every divisor of the rows;
    a weight ROM of K*C rows folds only by divisors of C)."""
    c = np.asarray(codes, dtype=np.int64)
    if c.ndim != 2 or c.size == 0 or bits <= 0:
        return {}
    rows = c.shape[0]
    want = sorted({int(x) for x in pes if rows % int(x) == 0}) if pes is not None else None
    key = (c.shape, int(bits), hash(c.tobytes()), tuple(want) if want is not None else None)
    hit = _ROM_COL_CACHE.get(key)
    if hit is not None:
        return hit
    planes = ((c[:, :, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8).reshape(rows, -1)
    out: dict[int, tuple[int, ...]] = {}
    for pe in (want if want is not None else range(1, rows + 1)):
        if rows % pe:
            continue
        n, seen = [], set()
        for p in range(pe):
            g = planes[p::pe]  # (depth, columns) of PE p's ROM
            var = g[:, g.min(axis=0) != g.max(axis=0)]
            cols = {col.tobytes() for col in var.T}
            n.append(len(cols - seen))  # the PE ROMs share their address: a column seen before is merged too
            seen |= cols
        out[pe] = tuple(n)
    if len(_ROM_COL_CACHE) > 256:
        _ROM_COL_CACHE.clear()
    _ROM_COL_CACHE[key] = out
    return out


def make_hw_node(op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any):
    """Build an ONNX node of the codesign HW domain."""
    return helper.make_node(op_type, inputs, outputs, name=name, domain=DOMAIN, **attrs)


def bipolar_from_count(y: np.ndarray) -> np.ndarray:
    """Map a one-threshold count {0, 1} to the bipolar tensor values {-1, +1}."""
    return 2 * np.asarray(y) - 1


def node_attrs(node: Any) -> dict[str, Any]:
    """All attributes of an ONNX node as plain Python values (bytes decoded to str)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


def param_dt(a: Mapping[str, Any], attr: str, tensor_dt: Any, kind: str, what: str = "") -> DataType:
    """The datatype named by attribute ``attr``, else the annotated tensor's; one clear error."""
    from codesign.errors import UnsupportedError

    name = a.get(attr)
    if name:
        try:
            return DataType[name]
        except KeyError as exc:
            raise UnsupportedError(f"{what or 'node'}: unknown datatype {name!r} in {attr}") from exc
    dt = tensor_dt(kind) if tensor_dt is not None else None
    if dt is None:
        raise UnsupportedError(f"{what or 'node'}: no datatype for {attr} (set the attribute)")
    return dt


def as_pair(v: Any) -> tuple[int, int]:
    """(h, w) from a list attribute (or a scalar used for both)."""
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) >= 2 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


def prod_or_int(v: Any) -> int:
    return int(np.prod(v)) if isinstance(v, (list, tuple)) else int(v)


class IdentityStreamOp(HWCustomOp):
    """Base of the stream plumbing ops whose output equals their input."""

    def get_input_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def get_output_datatype(self, ind: int = 0) -> DataType:
        return DataType[self.get_nodeattr("dataType")]

    def _execute(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, copy=True)
