"""Figures of merit of a simulated run.

Definitions (also in docs/costs.md):
- busy time of a rank: time in F, B, I and W. Bubble ratio = 1 - busy / makespan
  per rank; overall = 1 - total busy / (ranks x makespan).
- steady state: one body repetition away from fill and drain, k = steps - 2
  (the last one before the drain may be perturbed by it; k = steps - 1 when
  steps = 2). Its period P is the longest time any rank's clock advances over
  it; throughput = period.microbatches / P; steady bubble = 1 - busy in that
  repetition / (ranks x P). With one step, P is the span of the whole body.
  These are the compiler's definitions (`schedc.analysis`): at steps = 8 the
  figures equal its `steady_state_bubble_ratio`.
- activations: a micro-batch's activations on a stage live from its F to its
  B, or to its I when the backward is split (the compiler's convention).
- weight copies: per stage replica, the peak of 1 + stashed versions (STASH
  until RELEASE) + the look-ahead buffer (LOOKAHEAD until the next STEP);
  a rank's figure is the sum over the replicas it holds.
- inconsistency(mb, s) = version of B (or I) - version of F; delay(mb, s) =
  version the gradient is applied to - version of F, where micro-batch j's
  gradient is applied by the stage replica's (j // period.microbatches)-th STEP
  and a STEP producing v + 1 applies to v.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schedc.errors import VerifyError
from schedc.instructions import COMM_OPS, FREES_ACTIVATION, STORES_ACTIVATION, VERSION_SOURCE
from schedc.instructions import COMPUTE_OPS as COMPUTE
from schedc.simulate.run import Simulation


@dataclass
class RankFigures:
    rank: int
    busy: float
    bubble_ratio: float
    peak_activations: int
    peak_activation_bytes: float | None
    weight_copies: int
    weight_bytes: float | None


@dataclass
class Figures:
    name: str
    unit: str
    steps: int
    makespan: float
    bubble_ratio: float
    steady_window: tuple[float, float]
    steady_state_throughput: float
    steady_state_bubble_ratio: float
    ranks: list[RankFigures]
    inconsistency_histogram: dict[int, int] = field(default_factory=dict)
    delay_histogram: dict[int, int] = field(default_factory=dict)
    max_inconsistency: int = 0
    max_delay: int = 0

    @property
    def peak_activation_bytes(self) -> float | None:
        values = [r.peak_activation_bytes for r in self.ranks]
        return None if None in values else max(values, default=0.0)

    @property
    def peak_memory_bytes(self) -> float | None:
        """Worst rank's activation + weight bytes (None when sizes are unknown)."""
        totals = [(r.peak_activation_bytes or 0.0) + (r.weight_bytes or 0.0) for r in self.ranks]
        known = any(r.peak_activation_bytes is not None or r.weight_bytes is not None
                    for r in self.ranks)
        return max(totals, default=0.0) if known else None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "unit": self.unit, "steps": self.steps,
            "makespan": self.makespan, "bubble_ratio": self.bubble_ratio,
            "steady_state": {"window": list(self.steady_window),
                             "throughput": self.steady_state_throughput,
                             "bubble_ratio": self.steady_state_bubble_ratio},
            "ranks": [r.__dict__ for r in self.ranks],
            "peak_memory_bytes": self.peak_memory_bytes,
            "max_inconsistency": self.max_inconsistency, "max_delay": self.max_delay,
            "inconsistency_histogram": {str(k): v for k, v in
                                        sorted(self.inconsistency_histogram.items())},
            "delay_histogram": {str(k): v for k, v in sorted(self.delay_histogram.items())},
        }


def figures(sim: Simulation) -> Figures:
    tl = sim.timeline
    makespan = tl.makespan
    n = len(tl.streams)
    busy = [_busy(sim, r, 0, len(tl.streams[r])) for r in range(n)]
    lo, hi, period, steady_busy = _steady(sim)
    incons, delays = _version_histograms(sim)
    return Figures(
        name=sim.name, unit=sim.costs.unit, steps=sim.steps, makespan=makespan,
        bubble_ratio=_ratio(sum(busy), n * makespan),
        steady_window=(lo, hi),
        steady_state_throughput=sim.manifest.period.microbatches / period if period else 0.0,
        steady_state_bubble_ratio=_ratio(steady_busy, n * period),
        ranks=[_rank_figures(sim, r, busy[r], makespan) for r in range(n)],
        inconsistency_histogram=dict(incons), delay_histogram=dict(delays),
        max_inconsistency=max(incons, default=0), max_delay=max(delays, default=0),
    )


def _ratio(busy: float, total: float) -> float:
    return 1.0 - busy / total if total > 0 else 0.0


def _busy(sim: Simulation, r: int, lo: int, hi: int) -> float:
    """Compute time of rank r's instructions lo..hi-1."""
    tl = sim.timeline
    starts, ends, stream = tl.starts[r], tl.ends[r], tl.streams[r]
    return sum(ends[i] - starts[i] for i in range(lo, hi) if stream[i].op in COMPUTE)


def _clock(sim: Simulation, r: int, stop: int) -> float:
    """Rank r's clock after its first `stop` instructions (overlapped comm is off-clock)."""
    tl = sim.timeline
    stream, ends = tl.streams[r], tl.ends[r]
    for i in range(stop - 1, -1, -1):
        if tl.comm_on_clock or stream[i].op not in COMM_OPS:
            return ends[i]  # the clock never goes back, so the last on-clock op has it
    return 0.0


def _steady(sim: Simulation) -> tuple[float, float, float, float]:
    """(window start, window end, period, busy time of all ranks in the window)."""
    n = len(sim.timeline.streams)
    k = max(sim.steps - 2, 1) if sim.steps > 1 else 0
    period = busy = 0.0
    lo, hi = float("inf"), 0.0
    for r in range(n):
        first, stop = sim.body_starts[r][k], sim.body_ends[r][k]
        before = _clock(sim, r, sim.body_ends[r][k - 1]) if k else _first_start(sim, r, first)
        after = _clock(sim, r, stop)
        period = max(period, after - before)
        lo, hi = min(lo, before), max(hi, after)
        busy += _busy(sim, r, first, stop)
    if sim.steps == 1:
        period = hi - lo
    return lo, hi, period, busy


def _first_start(sim: Simulation, r: int, first: int) -> float:
    starts = sim.timeline.starts[r]
    return starts[first] if first < len(starts) else 0.0


def _rank_figures(sim: Simulation, r: int, busy: float, makespan: float) -> RankFigures:
    acts, act_bytes = _peak_activations(sim, r)
    copies, w_bytes = _peak_weights(sim, r)
    return RankFigures(r, busy, _ratio(busy, makespan), acts, act_bytes, copies, w_bytes)


def _peak_activations(sim: Simulation, r: int) -> tuple[int, float | None]:
    costs = sim.costs
    sized = costs.stored_bytes(0) is not None
    alive = peak = 0
    alive_b = peak_b = 0.0
    for ins in sim.timeline.streams[r]:
        frees = ins.op in FREES_ACTIVATION
        if ins.op in STORES_ACTIVATION:
            alive += 1
            alive_b += costs.stored_bytes(ins.stage) or 0.0
            peak, peak_b = max(peak, alive), max(peak_b, alive_b)
        elif frees:
            alive -= 1
            alive_b -= costs.stored_bytes(ins.stage) or 0.0
    return peak, (peak_b if sized else None)


def _peak_weights(sim: Simulation, r: int) -> tuple[int, float | None]:
    costs = sim.costs
    held: dict[tuple, list[int]] = {}  # replica -> [stashed, look-ahead, peak]
    for ins in sim.timeline.streams[r]:
        if ins.stage is None:
            continue
        rep = held.setdefault((ins.pipeline, ins.stage), [0, 0, 1])
        if ins.op == "STASH":
            rep[0] += 1
        elif ins.op == "RELEASE":
            rep[0] -= 1
        elif ins.op == "LOOKAHEAD":
            rep[1] = 1
        elif ins.op == "STEP":
            rep[1] = 0
        rep[2] = max(rep[2], 1 + rep[0] + rep[1])
    copies = sum(rep[2] for rep in held.values())
    if costs.weight_bytes_of(0) is None:
        return copies, None
    return copies, sum(rep[2] * costs.weight_bytes_of(s) for (_, s), rep in held.items())


def version_rows(sim: Simulation) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Per (pipeline, stage, mb) that ran both passes: (version its forward read,
    version its backward read, version its gradient is applied to)."""
    fwd: dict[tuple, int] = {}
    bwd: dict[tuple, int] = {}
    steps: dict[tuple, list[int]] = {}
    for stream in sim.timeline.streams:
        for ins in stream:
            key = (ins.pipeline, ins.stage, ins.mb)
            if ins.op == VERSION_SOURCE:  # the forward
                fwd[key] = ins.version
            elif ins.op in COMPUTE:  # B, or the later of I and W (schedc.versions)
                bwd[key] = max(bwd.get(key, ins.version), ins.version)
            elif ins.op == "STEP":
                steps.setdefault((ins.pipeline, ins.stage), []).append(ins.version)
    period = sim.manifest.period
    per_step = period.microbatches // period.steps
    rows = {}
    for key, vf in fwd.items():
        produced = steps.get(key[:2], [])
        j = key[2] // per_step
        if key in bwd and j < len(produced):
            rows[key] = (vf, bwd[key], produced[j] - 1)
    return rows


def _version_histograms(sim: Simulation) -> tuple[Counter, Counter]:
    incons, delays = Counter(), Counter()
    for key, (vf, vb, applied) in version_rows(sim).items():
        incons[_non_negative(vb - vf, "inconsistency", key)] += 1
        delays[_non_negative(applied - vf, "delay", key)] += 1
    return incons, delays


def _non_negative(value: int, what: str, key: tuple) -> int:
    if value < 0:
        p, s, mb = key
        raise VerifyError(f"negative {what} {value} for micro-batch {mb} at stage {s} "
                          f"(pipeline {p}): a version is read before it is produced")
    return value
