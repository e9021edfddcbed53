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
    cons: np.ndarray          # step of input word k (one frame)
    prod: np.ndarray          # step of output word k (one frame)
    in_buffer: int = 0        # words the node buffers internally in front of its program
    cycles: int = 0
    out_width: int = 1        # bits per output word (the FIFO after it is this wide)

    def program(self, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(event steps, event index of input word k, event index of output word k) over frames."""
        off = np.arange(frames, dtype=np.int64)[:, None] * self.n_steps
        cons = (off + self.cons[None, :]).ravel()
        prod = (off + self.prod[None, :]).ravel()
        steps, inv = np.unique(np.concatenate([cons, prod]), return_inverse=True)
        return steps, inv[: len(cons)], inv[len(cons):]


@dataclass
class ChainSchedule:
    """Times (cycles) at which each stage takes (C) and emits (P) its words, over all frames."""

    C: list[np.ndarray]
    P: list[np.ndarray]
    period: float
    converged: bool = True
    sweeps: int = 0


def _schedule(steps: np.ndarray, ci: np.ndarray, pi: np.ndarray, arrive: np.ndarray | None,
              room: np.ndarray | None) -> np.ndarray:
    """Earliest event times: t(e) = step(e) + max(0, max_{e' <= e}(lb(e') - step(e')))."""
    lb = np.full(len(steps), -(1 << 60), dtype=np.int64)
    if arrive is not None:
        np.maximum.at(lb, ci, arrive)
    if room is not None:
        np.maximum.at(lb, pi, room)
    slack = np.maximum.accumulate(np.maximum(lb - steps, 0))
    return steps + slack


def _check_words(stages: list[Stage]) -> None:
    for a, b in zip(stages, stages[1:]):
        if len(a.prod) != len(b.cons):
            raise CodesignError(f"FIFO sizing: {a.name} emits {len(a.prod)} words per frame but {b.name} takes "
                                f"{len(b.cons)}; the stream widths do not match (insert width converters first)")


def _period(P_last: np.ndarray, words: int, frames: int) -> float:
    ends = P_last.reshape(frames, words)[:, -1]
    return float(ends[-1] - ends[1]) / (frames - 2) if frames > 2 else float(ends[-1] - ends[0])


def simulate(stages: list[Stage], depths: list[int] | None, frames: int = FRAMES,
             max_sweeps: int = 500, progs: list | None = None, init: "ChainSchedule | None" = None) -> ChainSchedule:
    """Schedule of the chain; ``depths[i]`` is the FIFO between stage i and i+1 (None: infinite).

    With backpressure the producer/consumer constraints are solved by forward/backward sweeps
    to their least fixed point (each sweep is a handful of vectorised numpy calls per stage).
    ``init``: a schedule known to be no later than the answer (e.g. the one of deeper FIFOs)
    to start from; the iteration is monotone, so it converges to the same fixed point.
    """
    _check_words(stages)
    progs = progs or [s.program(frames) for s in stages]
    n = len(stages)
    C: list[np.ndarray] = [np.zeros(0, np.int64)] * n
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
            steps, ci, pi = progs[i]
            arrive = (np.arange(len(ci), dtype=np.int64) if i == 0 else
                      (P[i - 1] + 1 if len(P[i - 1]) else None))
            room = None
            if depths is not None and i < n - 1 and len(C[i + 1]):
                d = int(depths[i]) + int(stages[i + 1].in_buffer)
                room = np.full(len(pi), -(1 << 60), dtype=np.int64)
                if d < len(pi):
                    room[d:] = C[i + 1][: len(pi) - d] + 1
            if i > 0 and not len(P[i - 1]):
                continue  # the producer is scheduled first on the next forward sweep
            t = _schedule(steps, ci, pi, arrive, room)
            if T[i] is None or not np.array_equal(t, T[i]):
                T[i], changed = t, True
                C[i], P[i] = t[ci], t[pi]
        if depths is None or (not changed and sweeps > 1):
            break
        if sweeps >= max_sweeps:
            converged = False
            log.warning("FIFO simulation did not settle in %d sweeps; the reported period is a lower bound",
                        max_sweeps)
            break
    return ChainSchedule(C, P, _period(P[-1], len(stages[-1].prod), frames), converged, sweeps)


def required_depths(stages: list[Stage], frames: int = FRAMES) -> tuple[list[int], ChainSchedule]:
    """Per FIFO between stage i and i+1: the depth that sustains the bottleneck throughput
    (occupancy of the as-late-as-possible schedule, less the consumer's own input buffer)."""
    progs = [s.program(frames) for s in stages]
    free = simulate(stages, None, frames, progs=progs)
    n = len(stages)
    C, P = list(free.C), list(free.P)
    horizon = int(free.P[-1][-1]) if len(free.P[-1]) else 0
    for i in range(n - 2, -1, -1):
        steps, ci, pi = progs[i]
        dl = np.full(len(steps), horizon, dtype=np.int64)
        np.minimum.at(dl, pi, C[i + 1] - 1)
        # latest times: t(e) = min(dl(e), t(e+1) - (step(e+1) - step(e))): a reversed running min
        t = steps + np.minimum.accumulate((dl - steps)[::-1])[::-1]
        C[i], P[i] = t[ci], t[pi]
    depths = []
    for i in range(n - 1):
        p, c = P[i], C[i + 1]
        k = np.arange(len(p))
        inside = k - np.minimum(k, np.searchsorted(c, p, side="left"))
        need = 1 + int(inside.max()) if len(p) else 1
        depths.append(int(min(max(need - stages[i + 1].in_buffer, 2), MAX_DEPTH)))
    free.progs = progs  # type: ignore[attr-defined]
    return depths, free


def minimal_depths(stages: list[Stage], frames: int = FRAMES, max_sims: int = 16) -> list[int]:
    """``required_depths``, then shrunk while the simulated period stays at the bottleneck (the
    as-late-as-possible occupancy is sufficient, not always necessary): all FIFOs at depth 2 if
    that suffices; else, most expensive FIFO (depth x width) first, each tried at depth 2 and,
    if it would need block RAM, binary-searched down towards the deepest shift-register FIFO.
    At most ``max_sims`` simulations, so the step stays fast on big designs (a FIFO left at its
    sufficient depth is never wrong, only larger)."""
    need, free = required_depths(stages, frames)
    progs = free.progs  # type: ignore[attr-defined]
    target = free.period * (1 + THROTTLE_TOL)
    sims = 0

    def ok(depths: list[int]) -> bool:
        nonlocal sims
        sims += 1
        sched = simulate(stages, depths, frames, progs=progs, init=free)
        return sched.converged and sched.period <= target

    if all(d <= 2 for d in need):
        return need
    if ok([2] * len(need)):
        return [2] * len(need)
    depths = list(need)
    widths = [max(int(s.out_width), 1) for s in stages[:-1]]
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
    return Stage(node.name, node.op_type, int(n), np.asarray(cons, np.int64), np.asarray(prod, np.int64),
                 int(inst.input_buffer_words(p)), int(inst.cycles(p)), int(inst.get_outstream_width()))


def chain_stages(model: Any) -> tuple[list[Stage], list[int | None], list[Any]]:
    """Compute stages of the HW chain, the FIFO depth between consecutive ones (None where no
    FIFO node sits between them) and the FIFO nodes (or None) in the same positions."""
    from codesign.dataflow.cost import hw_nodes, op_instance

    stages: list[Stage] = []
    depths: list[int | None] = []
    fifos: list[Any] = []
    pending: Any = None
    for node in hw_nodes(model):
        inst = op_instance(node)
        if inst.is_stream_buffer:
            pending = node
            continue
        if stages:
            depths.append(int(op_instance(pending).get_nodeattr("depth")) if pending is not None else None)
            fifos.append(pending)
        pending = None
        stages.append(_stage(model, node))
    return stages, depths, fifos


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
    attributes; ``InsertFIFO`` builds the FIFO of the larger one) on a folded chain without FIFO
    nodes: the analytic depths, or ``fixed_depth`` everywhere (then shallow ones are reported)."""
    from codesign.dataflow.cost import hw_nodes, op_instance

    stages, _, _ = chain_stages(model)
    nodes = {n.name: n for n in hw_nodes(model)}
    est = max((s.cycles for s in stages), default=0)
    if len(stages) < 2:
        return FifoSizing("fixed" if fixed_depth else "analytic", {}, {}, est)
    need = minimal_depths(stages, frames)
    depths = [int(fixed_depth)] * len(need) if fixed_depth else need
    for a, b, d in zip(stages, stages[1:], depths):
        op_instance(nodes[a.name]).set_nodeattr("outFIFODepths", [int(d)])
        op_instance(nodes[b.name]).set_nodeattr("inFIFODepths", [int(d)])
    res = FifoSizing("fixed" if fixed_depth else "analytic", {a.name: d for a, d in zip(stages, depths)},
                     {a.name: r for a, r in zip(stages, need)}, est)
    res.shallow = [a.name for a, d, r in zip(stages, depths, need) if d < r]
    return res


def check_fifos(model: Any, sizing: FifoSizing | None = None, frames: int = FRAMES) -> FifoSizing:
    """Simulate the chain with the FIFO nodes in place; flag a period above the estimate."""
    stages, depths, _ = chain_stages(model)
    est = max((s.cycles for s in stages), default=0)
    res = sizing or FifoSizing("fixed", {}, {}, est)
    res.estimated_cycles = est
    if len(stages) < 2:
        res.simulated_cycles = float(est)
        return res
    sched = simulate(stages, [1 if d is None else d for d in depths], frames)
    res.simulated_cycles = round(sched.period, 3)
    res.simulated_latency = int(sched.P[-1][len(stages[-1].prod) - 1]) + 1
    res.converged = sched.converged
    res.depths = {a.name: (1 if d is None else int(d)) for a, d in zip(stages, depths)}
    res.throttled = bool(sched.period > est * (1 + THROTTLE_TOL))
    if res.throttled:
        names = ", ".join(res.shallow) if res.shallow else "see fifo_required_depths"
        log.warning("FIFOs too shallow: the chain runs at %.0f cycles per frame instead of the estimated %d "
                    "(%.1f%% slower); FIFOs after %s are below the depth the model sizes",
                    sched.period, est, 100 * (sched.period / est - 1) if est else 0.0, names)
    elif res.shallow:
        log.info("FIFOs after %s are below the sized depths, but the chain still reaches the estimate",
                 ", ".join(res.shallow))
    return res
