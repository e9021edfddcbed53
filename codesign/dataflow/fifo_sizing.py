"""FIFO sizing from the ops' cycle models: a token-level simulation of the HW chain in numpy.

Why analytic: FINN sizes FIFOs by simulating the RTL with huge FIFOs (hours for big designs) or
not at all; here every op declares how it consumes and produces stream words over a frame
(``HWCustomOp.io_pattern``: bursts, replay of an input vector over neuron folds, line-buffer
warm-up of the sliding window, ...) and a small max-plus simulation of the chain gives the
FIFO depths that let the pipeline reach its bottleneck throughput, in milliseconds.

The model (one clock step per cycle, one stream word per transfer):
- node i runs its frame program in order; program step s is at time t(s) >= t(s-1) + 1;
- a step that takes input word k waits for it: t >= P_{i-1}(k) + 1 (the FIFO's registered
  output), the first node's words arrive one per clock;
- a step that emits word k waits for room: t >= C_{i+1}(k - D) + 1, D = FIFO depth plus the
  consumer's own input buffer (``input_buffer_words``); the last node's output is always taken.

Sizing: the schedule without backpressure (infinite FIFOs) runs at the bottleneck rate; its
as-late-as-possible variant (every node emits just before its consumer needs the word, the last
node unchanged) is feasible, so FIFOs holding its occupancy never slow the pipeline down (the
real, as-soon-as-possible schedule is componentwise no later than any feasible one).
Detection: the same simulation with the actual depths (backpressure on) gives the cycles per
frame those depths allow; a design whose FIFOs throttle it below the estimate is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codesign.errors import CodesignError

log = logging.getLogger(__name__)

#: frames simulated: the pipeline fills in the first, the steady-state period is frame 2 - frame 1
FRAMES = 3
#: FIFOs up to one SRL32 deep cost the same (codesign.dataflow.ops.fifo): shrinking below it saves nothing
SRL_DEPTH = 32
#: FIFOs above this many bits go to BRAM (codesign.dataflow.cost.FIFO_SRL_MAX_BITS): worth shrinking
FIFO_SRL_MAX_BITS = 16384
#: the largest FIFO the sizing writes (a design needing more is reported, not hidden)
MAX_DEPTH = 1 << 16
#: relative slack before a simulated period counts as throttled
THROTTLE_TOL = 0.005


@dataclass
class Stage:
    """One compute node's stream behaviour over ``frames`` frames (steps and word indices)."""

    name: str
    op_type: str
    n_steps: int
    cons: np.ndarray          # step of input word k (one frame; input 0 when port_cons is set)
    prod: np.ndarray          # step of output word k (one frame)
    in_buffer: int = 0        # words the node buffers internally in front of its program
    cycles: int = 0
    out_width: int = 1        # bits per output word (the FIFO after it is this wide)
    #: per stream input, the step of its word k, when the inputs differ (a concat takes input 0's
    #: words, then input 1's); None: every input takes word k at ``cons[k]`` (a join)
    port_cons: tuple[np.ndarray, ...] | None = None

    def ports(self) -> list[np.ndarray]:
        """The distinct input consumption patterns (one, or one per stream input)."""
        return list(self.port_cons) if self.port_cons else [self.cons]

    def port_index(self, port: int) -> int:
        """Which of ``ports()`` stream input ``port`` follows."""
        return int(port) if self.port_cons else 0

    def program(self, frames: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(event steps, per ``ports()`` entry the event index of input word k, event index of
        output word k) over frames."""
        off = np.arange(frames, dtype=np.int64)[:, None] * self.n_steps
        cons = [(off + c[None, :]).ravel() for c in self.ports()]
        prod = (off + self.prod[None, :]).ravel()
        steps, inv = np.unique(np.concatenate(cons + [prod]), return_inverse=True)
        bounds = np.cumsum([0] + [len(c) for c in cons])
        return steps, [inv[bounds[q]: bounds[q + 1]] for q in range(len(cons))], inv[bounds[-1]:]


@dataclass
class Edge:
    """A stream between two compute stages (indices into the stage list, topological order):
    output ``src_port`` of ``src`` feeds input ``dst_port`` of ``dst``; ``fifo`` is the FIFO node
    on it (None: none yet). A chain has the edges (i, i + 1); a branching graph's fork has two
    out-edges, its join two in-edges."""

    src: int
    dst: int
    src_port: int = 0
    dst_port: int = 0
    fifo: Any = None


def chain_edges(n: int) -> list[Edge]:
    return [Edge(i, i + 1) for i in range(n - 1)]


class FifoDeadlockError(CodesignError):
    """FIFOs too shallow for a branching graph: the fork waits for room on the bypass while the
    join waits for the other branch, so the design stops (one line: the FIFO, the depth needed)."""


@dataclass
class ChainSchedule:
    """Times (cycles) at which each stage takes (C) and emits (P) its words, over all frames."""

    C: list[list[np.ndarray] | None]   # per stage, per ``Stage.ports()`` entry
    P: list[np.ndarray]
    period: float
    converged: bool = True
    sweeps: int = 0


def _schedule(steps: np.ndarray, arrivals: list[tuple[np.ndarray, np.ndarray]], pi: np.ndarray,
              room: np.ndarray | None) -> np.ndarray:
    """Earliest event times: t(e) = step(e) + max(0, max_{e' <= e}(lb(e') - step(e')));
    ``arrivals``: (event index of input word k, its arrival time) per input stream."""
    lb = np.full(len(steps), -(1 << 60), dtype=np.int64)
    for ci, arrive in arrivals:
        np.maximum.at(lb, ci, arrive)
    if room is not None:
        np.maximum.at(lb, pi, room)
    slack = np.maximum.accumulate(np.maximum(lb - steps, 0))
    return steps + slack


def _check_words(stages: list[Stage], edges: list[Edge]) -> None:
    for e in edges:
        a, b = stages[e.src], stages[e.dst]
        took = len(b.ports()[b.port_index(e.dst_port)])
        if len(a.prod) != took:
            raise CodesignError(f"FIFO sizing: {a.name} emits {len(a.prod)} words per frame but {b.name} takes "
                                f"{took}; the stream widths do not match (insert width converters first)")


def _sink(stages: list[Stage], edges: list[Edge]) -> int:
    """The stage whose output leaves the design (no out-edge; the last in topological order)."""
    srcs = {e.src for e in edges}
    sinks = [i for i in range(len(stages)) if i not in srcs]
    return sinks[-1] if sinks else len(stages) - 1


def _period(P_last: np.ndarray, words: int, frames: int) -> float:
    ends = P_last.reshape(frames, words)[:, -1]
    return float(ends[-1] - ends[1]) / (frames - 2) if frames > 2 else float(ends[-1] - ends[0])


def simulate(stages: list[Stage], depths: list[int] | None, frames: int = FRAMES,
             max_sweeps: int = 500, progs: list | None = None, init: "ChainSchedule | None" = None,
             edges: list[Edge] | None = None) -> ChainSchedule:
    """Schedule of the stages; ``depths[e]`` is the FIFO on edge e (None: infinite). ``edges``
    default to the chain (i, i + 1); a branching graph passes its own (a stage waits for word k
    on *every* in-edge and for room on *every* out-edge).

    With backpressure the producer/consumer constraints are solved by forward/backward sweeps
    to their least fixed point (each sweep is a handful of vectorised numpy calls per stage).
    ``init``: a schedule known to be no later than the answer (e.g. the one of deeper FIFOs)
    to start from; the iteration is monotone, so it converges to the same fixed point. Depths
    that deadlock a branching graph have no fixed point: check them first (``find_deadlock``).
    """
    n = len(stages)
    edges = chain_edges(n) if edges is None else edges
    _check_words(stages, edges)
    progs = progs or [s.program(frames) for s in stages]
    ins: list[list[int]] = [[] for _ in range(n)]
    outs: list[list[int]] = [[] for _ in range(n)]
    for k, e in enumerate(edges):
        ins[e.dst].append(k)
        outs[e.src].append(k)
    C: list[list[np.ndarray] | None] = [None] * n
    P: list[np.ndarray] = [np.zeros(0, np.int64)] * n
    T: list[np.ndarray | None] = [None] * n
    if init is not None:
        C, P = list(init.C), list(init.P)
    sweeps, converged = 0, True
    while True:
        sweeps += 1
        changed = False
        order = range(n) if sweeps % 2 else range(n - 1, -1, -1)
        for i in order:
            steps, cis, pi = progs[i]
            if any(not len(P[edges[k].src]) for k in ins[i]):
                continue  # a producer is scheduled first on the next forward sweep
            if not ins[i]:
                arrivals = [(cis[0], np.arange(len(cis[0]), dtype=np.int64))]
            else:
                arrivals = [(cis[stages[i].port_index(edges[k].dst_port)], P[edges[k].src] + 1) for k in ins[i]]
            room = None
            if depths is not None:
                for k in outs[i]:
                    dst = edges[k].dst
                    if C[dst] is None:
                        continue
                    c_dst = C[dst][stages[dst].port_index(edges[k].dst_port)]
                    d = int(depths[k]) + int(stages[dst].in_buffer)
                    r = np.full(len(pi), -(1 << 60), dtype=np.int64)
                    if d < len(pi):
                        r[d:] = c_dst[: len(pi) - d] + 1
                    room = r if room is None else np.maximum(room, r)
            t = _schedule(steps, arrivals, pi, room)
            if T[i] is None or not np.array_equal(t, T[i]):
                T[i], changed = t, True
                C[i], P[i] = [t[ci] for ci in cis], t[pi]
        if depths is None or (not changed and sweeps > 1):
            break
        if sweeps >= max_sweeps:
            converged = False
            log.warning("FIFO simulation did not settle in %d sweeps; the reported period is a lower bound",
                        max_sweeps)
            break
    sink = _sink(stages, edges)
    return ChainSchedule(C, P, _period(P[sink], len(stages[sink].prod), frames), converged, sweeps)


def find_deadlock(stages: list[Stage], depths: list[int], frames: int = FRAMES,
                  edges: list[Edge] | None = None) -> tuple[list[int], int] | None:
    """Whether these FIFO depths let the design finish ``frames`` frames at all.

    Untimed token simulation of the stage programs (a Kahn network with bounded FIFOs): each
    stage runs its events in order as far as its inputs (word k produced on every in-edge) and
    its outputs (room: word k - depth consumed on every out-edge) allow, until nothing moves.
    Exact for the io_pattern model and independent of the timing, so it answers before any
    timed simulation (which has no fixed point on a deadlock). Returns None, or (the stages
    left unfinished, the events done) when the design stops."""
    n = len(stages)
    edges = chain_edges(n) if edges is None else edges
    _check_words(stages, edges)
    progs = [s.program(frames) for s in stages]
    ins: list[list[int]] = [[] for _ in range(n)]
    outs: list[list[int]] = [[] for _ in range(n)]
    for k, e in enumerate(edges):
        ins[e.dst].append(k)
        outs[e.src].append(k)
    # first event index needing input word k / emitting output word k (events in program order)
    cons_ev = [progs[i][1] for i in range(n)]
    prod_ev = [progs[i][2] for i in range(n)]
    n_ev = [len(progs[i][0]) for i in range(n)]
    done = [0] * n                         # events completed per stage
    consumed = [[0] * len(cons_ev[i]) for i in range(n)]  # input words taken, per ``Stage.ports()`` entry
    produced = [0] * n                     # output words emitted (on every out-edge)
    while True:
        moved = False
        for i in range(n):
            lim = n_ev[i]
            for k in ins[i]:
                ev = cons_ev[i][stages[i].port_index(edges[k].dst_port)]
                avail = produced[edges[k].src]
                if avail < len(ev):
                    lim = min(lim, int(ev[avail]))
            for k in outs[i]:
                dst = edges[k].dst
                room = consumed[dst][stages[dst].port_index(edges[k].dst_port)] + int(depths[k]) \
                    + int(stages[dst].in_buffer)
                if room < len(prod_ev[i]):
                    lim = min(lim, int(prod_ev[i][room]))
            if lim > done[i]:
                done[i] = lim
                consumed[i] = [int(np.searchsorted(ev, lim, side="left")) for ev in cons_ev[i]]
                produced[i] = int(np.searchsorted(prod_ev[i], lim, side="left"))
                moved = True
        if not moved:
            break
    stuck = [i for i in range(n) if done[i] < n_ev[i]]
    return (stuck, sum(done)) if stuck else None


def required_depths(stages: list[Stage], frames: int = FRAMES,
                    edges: list[Edge] | None = None) -> tuple[list[int], ChainSchedule]:
    """Per FIFO (edge e; the chain: between stage i and i+1): the depth that sustains the
    bottleneck throughput (occupancy of the as-late-as-possible schedule, less the consumer's
    own input buffer). In a branching graph a fork emits each word as late as its *earliest*
    consumer needs it, so the FIFO of the other (bypass) branch holds the words while the
    longer branch works on them: its depth is the latency difference of the two paths in words."""
    n = len(stages)
    edges = chain_edges(n) if edges is None else edges
    progs = [s.program(frames) for s in stages]
    free = simulate(stages, None, frames, progs=progs, edges=edges)
    C, P = list(free.C), list(free.P)
    sink = _sink(stages, edges)
    horizon = int(free.P[sink][-1]) if len(free.P[sink]) else 0
    outs: list[list[int]] = [[] for _ in range(n)]
    for k, e in enumerate(edges):
        outs[e.src].append(k)
    for i in range(n - 1, -1, -1):
        if not outs[i]:
            continue  # the output stage keeps its free schedule
        steps, cis, pi = progs[i]
        dl = np.full(len(steps), horizon, dtype=np.int64)
        for k in outs[i]:
            e = edges[k]
            np.minimum.at(dl, pi, C[e.dst][stages[e.dst].port_index(e.dst_port)] - 1)
        # latest times: t(e) = min(dl(e), t(e+1) - (step(e+1) - step(e))): a reversed running min
        t = steps + np.minimum.accumulate((dl - steps)[::-1])[::-1]
        C[i], P[i] = [t[ci] for ci in cis], t[pi]
    depths = []
    for e in edges:
        p, c = P[e.src], C[e.dst][stages[e.dst].port_index(e.dst_port)]
        k = np.arange(len(p))
        inside = k - np.minimum(k, np.searchsorted(c, p, side="left"))
        need = 1 + int(inside.max()) if len(p) else 1
        depths.append(int(min(max(need - stages[e.dst].in_buffer, 2), MAX_DEPTH)))
    free.progs = progs  # type: ignore[attr-defined]
    return depths, free


def minimal_depths(stages: list[Stage], frames: int = FRAMES, max_sims: int = 16,
                   edges: list[Edge] | None = None) -> list[int]:
    """``required_depths``, then shrunk while the simulated period stays at the bottleneck (the
    as-late-as-possible occupancy is sufficient, not always necessary): all FIFOs at depth 2 if
    that suffices; else, most expensive FIFO (depth x width) first, each tried at depth 2 and,
    if it would need block RAM, binary-searched down towards the deepest shift-register FIFO.
    A trial that deadlocks a branching graph is rejected before it is simulated.
    At most ``max_sims`` simulations, so the step stays fast on big designs (a FIFO left at its
    sufficient depth is never wrong, only larger)."""
    edges = chain_edges(len(stages)) if edges is None else edges
    need, free = required_depths(stages, frames, edges)
    progs = free.progs  # type: ignore[attr-defined]
    target = free.period * (1 + THROTTLE_TOL)
    sims = 0
    branching = any(e.dst != e.src + 1 for e in edges) or len(edges) != len(stages) - 1

    def ok(depths: list[int]) -> bool:
        nonlocal sims
        sims += 1
        if branching and find_deadlock(stages, depths, frames, edges) is not None:
            return False
        sched = simulate(stages, depths, frames, progs=progs, init=free, edges=edges)
        return sched.converged and sched.period <= target

    if all(d <= 2 for d in need):
        return need
    if ok([2] * len(need)):
        return [2] * len(need)
    depths = list(need)
    widths = [max(int(stages[e.src].out_width), 1) for e in edges]
    for i in sorted(range(len(depths)), key=lambda k: -depths[k] * widths[k]):
        if depths[i] <= 2 or sims >= max_sims:
            continue
        if ok(depths[:i] + [2] + depths[i + 1:]):
            depths[i] = 2
            continue
        if depths[i] * widths[i] <= FIFO_SRL_MAX_BITS or depths[i] <= SRL_DEPTH:
            continue
        lo, hi = max(SRL_DEPTH, FIFO_SRL_MAX_BITS // widths[i]), depths[i]
        while lo < hi and sims < max_sims:
            mid = (lo + hi) // 2
            if ok(depths[:i] + [mid] + depths[i + 1:]):
                hi = mid
            else:
                lo = mid + 1
        depths[i] = hi
    return depths


# --------------------------------------------------------------------------- graph level

def _stage(model: Any, node: Any) -> Stage:
    from codesign.dataflow.cost import op_instance

    inst = op_instance(node)
    p = inst.cost_params(model)
    n, cons, prod = inst.io_pattern(p)
    ports = tuple(np.asarray(c, np.int64) for c in cons) if isinstance(cons, tuple) else None
    first = ports[0] if ports else np.asarray(cons, np.int64)
    return Stage(node.name, node.op_type, int(n), first, np.asarray(prod, np.int64),
                 int(inst.input_buffer_words(p)), int(inst.cycles(p)), int(inst.get_outstream_width()), ports)


def graph_stages(model: Any) -> tuple[list[Stage], list[Edge], list[int | None]]:
    """Compute stages of the HW graph (topological order; FIFO nodes are not stages), the
    streams between them (``Edge``, with the FIFO node on each or None) and each edge's FIFO
    depth (None where no FIFO node sits on it). A chain gives the edges (i, i + 1)."""
    from codesign.dataflow.cost import hw_nodes, op_instance

    nodes = hw_nodes(model)
    compute = [n for n in nodes if not op_instance(n).is_stream_buffer]
    index = {n.name: i for i, n in enumerate(compute)}
    readers: dict[str, tuple[Any, int]] = {}
    for n in nodes:
        k_in = op_instance(n).n_stream_inputs
        for k, t in enumerate(list(n.input)[:k_in]):
            readers[t] = (n, k)
    stages = [_stage(model, n) for n in compute]
    edges: list[Edge] = []
    depths: list[int | None] = []
    for n in compute:
        for j, t in enumerate(n.output):
            fifo = None
            while t in readers:
                r, k = readers[t]
                if op_instance(r).is_stream_buffer:
                    fifo, t = r, r.output[0]
                    continue
                edges.append(Edge(index[n.name], index[r.name], j, k, fifo))
                depths.append(int(op_instance(fifo).get_nodeattr("depth")) if fifo is not None else None)
                break
    return stages, edges, depths


def chain_stages(model: Any) -> tuple[list[Stage], list[int | None], list[Any]]:
    """Compute stages of the HW graph, the FIFO depth on each stream between them (None where no
    FIFO node sits on it) and the FIFO nodes (or None), in the order of ``graph_stages``' edges
    (for a chain: between consecutive stages)."""
    stages, edges, depths = graph_stages(model)
    return stages, depths, [e.fifo for e in edges]


def edge_key(stages: list[Stage], e: Edge) -> str:
    """How reports name a stream: its producer, with ``:out<j>`` for a fork's further outputs."""
    return stages[e.src].name if e.src_port == 0 else f"{stages[e.src].name}:out{e.src_port}"


def _is_branching(stages: list[Stage], edges: list[Edge]) -> bool:
    return len(edges) != len(stages) - 1 or any(e.dst != e.src + 1 for e in edges)


def deadlock_message(stages: list[Stage], edges: list[Edge], depths: list[int], frames: int = FRAMES) -> str | None:
    """None if the depths let the design run; else one line naming the FIFO that deadlocks the
    reconvergent branches and the depth it needs (the smallest that runs, found by the untimed
    check, with the analytic sizing's depth beside it)."""
    if find_deadlock(stages, depths, frames, edges) is None:
        return None
    need, _ = required_depths(stages, frames, edges)

    def where(k: int) -> str:
        e = edges[k]
        name = getattr(e.fifo, "name", None) or "the FIFO"
        return f"{name} ({stages[e.src].name} -> {stages[e.dst].name})"

    short = [k for k in range(len(edges)) if depths[k] < need[k]]
    for k in sorted(short, key=lambda k: depths[k] - need[k]):
        trial = list(depths)
        trial[k] = need[k]
        if find_deadlock(stages, trial, frames, edges) is not None:
            continue
        lo, hi = depths[k] + 1, need[k]
        while lo < hi:
            mid = (lo + hi) // 2
            trial[k] = mid
            if find_deadlock(stages, trial, frames, edges) is None:
                hi = mid
            else:
                lo = mid + 1
        return (f"FIFO {where(k)} holds {depths[k]} words, but the reconvergent branches deadlock below {hi} "
                f"(the ops' stream models: the join waits for the longer branch while the fork waits for room "
                f"on this one); set its depth >= {hi} (analytic FIFO sizing, the default without --fifo-depth, "
                f"gives {need[k]})")
    names = ", ".join(f"{where(k)} depth {depths[k]} (sized {need[k]})" for k in short) or "(no FIFO below its size)"
    return (f"the branches of the graph deadlock with these FIFO depths: {names}; use analytic FIFO sizing "
            "(the default without --fifo-depth)")


@dataclass
class FifoSizing:
    """What the FIFO step decided and found (written into estimate_network_performance.json)."""

    mode: str                                  # "analytic" | "fixed"
    depths: dict[str, int]                     # producer node -> depth of the FIFO after it
    required: dict[str, int]                   # producer node -> depth the model needs
    estimated_cycles: int                      # bottleneck cycles (the analytic estimate)
    simulated_cycles: float | None = None      # cycles per frame with the depths in place
    simulated_latency: int | None = None       # cycles from the first input word to the first frame's last output
    throttled: bool = False
    shallow: list[str] = field(default_factory=list)
    converged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"fifo_sizing": self.mode, "fifo_depths": self.depths, "fifo_required_depths": self.required,
                "fifo_simulated_cycles": self.simulated_cycles, "fifo_simulated_latency_cycles": self.simulated_latency,
                "fifo_throttled": self.throttled,
                "fifo_shallow": self.shallow, "fifo_simulation_converged": self.converged}


def size_fifos(model: Any, fixed_depth: int | None = None, frames: int = FRAMES) -> FifoSizing:
    """Set every compute node's ``outFIFODepths`` and its consumer's ``inFIFODepths`` (FINN's
    attributes, one entry per output / input stream; ``InsertFIFO`` builds the FIFO of the
    larger one) on a folded graph without FIFO nodes: the analytic depths, or ``fixed_depth``
    everywhere (then shallow ones are reported, and ``check_fifos`` refuses depths that
    deadlock a branching graph)."""
    from codesign.dataflow.cost import hw_nodes, op_instance

    stages, edges, _ = graph_stages(model)
    nodes = {n.name: n for n in hw_nodes(model)}
    est = max((s.cycles for s in stages), default=0)
    if len(stages) < 2:
        return FifoSizing("fixed" if fixed_depth else "analytic", {}, {}, est)
    need = minimal_depths(stages, frames, edges=edges)
    depths = [int(fixed_depth)] * len(need) if fixed_depth else need
    outd: dict[str, dict[int, int]] = {}
    ind: dict[str, dict[int, int]] = {}
    for e, d in zip(edges, depths):
        outd.setdefault(stages[e.src].name, {})[e.src_port] = int(d)
        ind.setdefault(stages[e.dst].name, {})[e.dst_port] = int(d)
    for attr, table in (("outFIFODepths", outd), ("inFIFODepths", ind)):
        for name, ports in table.items():
            op_instance(nodes[name]).set_nodeattr(attr, [ports.get(j, 2) for j in range(max(ports) + 1)])
    res = FifoSizing("fixed" if fixed_depth else "analytic", {edge_key(stages, e): d for e, d in zip(edges, depths)},
                     {edge_key(stages, e): r for e, r in zip(edges, need)}, est)
    res.shallow = [edge_key(stages, e) for e, d, r in zip(edges, depths, need) if d < r]
    return res


def check_deadlock(model: Any, frames: int = FRAMES) -> None:
    """Raise FifoDeadlockError if the FIFO nodes in place deadlock a branching graph (a chain
    never deadlocks); called before any timed or RTL simulation."""
    stages, edges, depths = graph_stages(model)
    if len(stages) < 2 or not _is_branching(stages, edges):
        return
    msg = deadlock_message(stages, edges, [1 if d is None else d for d in depths], frames)
    if msg:
        raise FifoDeadlockError(msg)


def check_fifos(model: Any, sizing: FifoSizing | None = None, frames: int = FRAMES) -> FifoSizing:
    """Simulate the graph with the FIFO nodes in place; flag a period above the estimate.
    Depths that deadlock a branching graph raise FifoDeadlockError (naming the FIFO and the
    depth it needs) before anything is simulated."""
    stages, edges, depths = graph_stages(model)
    est = max((s.cycles for s in stages), default=0)
    res = sizing or FifoSizing("fixed", {}, {}, est)
    res.estimated_cycles = est
    if len(stages) < 2:
        res.simulated_cycles = float(est)
        return res
    actual = [1 if d is None else int(d) for d in depths]
    if _is_branching(stages, edges):
        msg = deadlock_message(stages, edges, actual, frames)
        if msg:
            raise FifoDeadlockError(msg)
    sched = simulate(stages, actual, frames, edges=edges)
    sink = _sink(stages, edges)
    res.simulated_cycles = round(sched.period, 3)
    res.simulated_latency = int(sched.P[sink][len(stages[sink].prod) - 1]) + 1
    res.converged = sched.converged
    res.depths = {edge_key(stages, e): d for e, d in zip(edges, actual)}
    res.throttled = bool(sched.period > est * (1 + THROTTLE_TOL))
    if res.throttled:
        names = ", ".join(res.shallow) if res.shallow else "see fifo_required_depths"
        log.warning("FIFOs too shallow: the design runs at %.0f cycles per frame instead of the estimated %d "
                    "(%.1f%% slower); FIFOs after %s are below the depth the model sizes",
                    sched.period, est, 100 * (sched.period / est - 1) if est else 0.0, names)
    elif res.shallow:
        log.info("FIFOs after %s are below the sized depths, but the design still reaches the estimate",
                 ", ".join(res.shallow))
    return res
