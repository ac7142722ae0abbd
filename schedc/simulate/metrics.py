"""Figures of merit of a simulated run.

Definitions (also in docs/costs.md):
- busy time of a rank: time in F, B, I and W. Bubble ratio = 1 - busy / makespan
  per rank; overall = 1 - total busy / (ranks x makespan).
- steady state: the window from the end of the first body repetition to the
  end of the last (the latest rank decides both), so it covers steps - 1
  periods and excludes fill and drain. With one step it is the span of the body.
  Throughput = micro-batches started per period x periods / window length.
- activations: a micro-batch's activations on a stage live from its F to its
  B (or W when the backward is split).
- weight copies: one per stage replica held, plus one per STASH until its
  RELEASE, plus the look-ahead buffer and the previous version it reads.
- inconsistency(mb, s) = version of B (or I) - version of F; delay(mb, s) =
  version the gradient is applied to - version of F, where micro-batch j's
  gradient is applied by the stage replica's (j // period.microbatches)-th STEP
  and a STEP producing v + 1 applies to v.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schedc.simulate.run import Simulation

COMPUTE = ("F", "B", "I", "W")


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
    busy = [_busy(sim, r, 0.0, makespan) for r in range(n)]
    window = _steady_window(sim)
    span = window[1] - window[0]
    periods = max(sim.steps - 1, 1)
    steady_busy = sum(_busy(sim, r, *window) for r in range(n))
    incons, delays = _version_histograms(sim)
    return Figures(
        name=sim.name, unit=sim.costs.unit, steps=sim.steps, makespan=makespan,
        bubble_ratio=_ratio(sum(busy), n * makespan),
        steady_window=window,
        steady_state_throughput=(sim.manifest.period.microbatches * periods / span
                                 if span > 0 else 0.0),
        steady_state_bubble_ratio=_ratio(steady_busy, n * span),
        ranks=[_rank_figures(sim, r, busy[r], makespan) for r in range(n)],
        inconsistency_histogram=dict(incons), delay_histogram=dict(delays),
        max_inconsistency=max(incons, default=0), max_delay=max(delays, default=0),
    )


def _ratio(busy: float, total: float) -> float:
    return 1.0 - busy / total if total > 0 else 0.0


def _busy(sim: Simulation, r: int, lo: float, hi: float) -> float:
    tl = sim.timeline
    total = 0.0
    for ins, s, e in zip(tl.streams[r], tl.starts[r], tl.ends[r], strict=True):
        if ins.op in COMPUTE and e > lo and s < hi:
            total += min(e, hi) - max(s, lo)
    return total


def _on_timeline_end(sim: Simulation, r: int, stop: int) -> float:
    """The rank's clock after its first `stop` instructions."""
    tl = sim.timeline
    end = 0.0
    for i in range(stop):
        if tl.serial_comm or not tl.streams[r][i].op.startswith(("SEND", "RECV")):
            end = max(end, tl.ends[r][i])
    return end


def _steady_window(sim: Simulation) -> tuple[float, float]:
    n = len(sim.timeline.streams)
    last = max(_on_timeline_end(sim, r, sim.body_ends[r][-1]) for r in range(n))
    if sim.steps > 1:
        first = max(_on_timeline_end(sim, r, sim.body_ends[r][0]) for r in range(n))
    else:
        first = min(_on_timeline_end(sim, r, sim.body_starts[r][0]) for r in range(n))
    return first, last


def _rank_figures(sim: Simulation, r: int, busy: float, makespan: float) -> RankFigures:
    acts, act_bytes = _peak_activations(sim, r)
    copies, w_bytes = _peak_weights(sim, r)
    return RankFigures(r, busy, _ratio(busy, makespan), acts, act_bytes, copies, w_bytes)


def _peak_activations(sim: Simulation, r: int) -> tuple[int, float | None]:
    costs = sim.costs
    sized = costs.stored_bytes(0) is not None
    alive = peak = 0
    alive_b = peak_b = 0.0
    split = {(i.stage, i.mb, i.pipeline) for i in sim.timeline.streams[r] if i.op == "I"}
    for ins in sim.timeline.streams[r]:
        frees = ins.op == "W" or (ins.op == "B" and (ins.stage, ins.mb, ins.pipeline) not in split)
        if ins.op == "F":
            alive += 1
            alive_b += costs.stored_bytes(ins.stage) or 0.0
            peak, peak_b = max(peak, alive), max(peak_b, alive_b)
        elif frees:
            alive -= 1
            alive_b -= costs.stored_bytes(ins.stage) or 0.0
    return peak, (peak_b if sized else None)


def _peak_weights(sim: Simulation, r: int) -> tuple[int, float | None]:
    costs = sim.costs
    sized = costs.weight_bytes_of(0) is not None
    replicas = {(i.stage, i.pipeline) for i in sim.timeline.streams[r] if i.stage is not None}
    copies = len(replicas)
    held = sum(costs.weight_bytes_of(s) or 0.0 for s, _ in replicas) if sized else 0.0
    peak, peak_b = copies, held
    looked: set[tuple[int, int]] = set()
    for ins in sim.timeline.streams[r]:
        w = (costs.weight_bytes_of(ins.stage) or 0.0) if ins.stage is not None else 0.0
        if ins.op == "STASH":
            copies, held = copies + 1, held + w
        elif ins.op == "RELEASE":
            copies, held = copies - 1, held - w
        elif ins.op == "LOOKAHEAD" and (ins.stage, ins.pipeline) not in looked:
            looked.add((ins.stage, ins.pipeline))
            copies, held = copies + 2, held + 2 * w
        peak, peak_b = max(peak, copies), max(peak_b, held)
    return peak, (peak_b if sized else None)


def _version_histograms(sim: Simulation) -> tuple[Counter, Counter]:
    fwd: dict[tuple, int] = {}
    bwd: dict[tuple, int] = {}
    steps: dict[tuple, list[int]] = {}
    for stream in sim.timeline.streams:
        for ins in stream:
            key = (ins.pipeline, ins.stage, ins.mb)
            if ins.op == "F":
                fwd[key] = ins.version
            elif ins.op in ("B", "I"):
                bwd[key] = ins.version
            elif ins.op == "STEP":
                steps.setdefault((ins.pipeline, ins.stage), []).append(ins.version)
    per_step = sim.manifest.period.microbatches
    incons, delays = Counter(), Counter()
    for key, vf in fwd.items():
        if key in bwd:
            incons[bwd[key] - vf] += 1
        produced = steps.get(key[:2], [])
        j = key[2] // per_step
        if j < len(produced):
            delays[produced[j] - 1 - vf] += 1
    return incons, delays
