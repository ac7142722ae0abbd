"""Ranks sharing fewer cores than there are ranks (a profile's `cores`).

CPU ranks on one machine with fewer cores than ranks take turns: while n
ranks want to compute and n > cores, each computes at cores / n of its speed
(processor sharing), and a rank waiting for a message gives its core away.
Each of the R ranks also runs threads besides its interpreter (the
transport's), which use `background` of a core throughout (measured by the
runtime); they are served first, so n computing ranks share the rest,
cores - R * background, of which they get `efficiency` (measured by the
runtime: the CPU the measured run's ops got over what this sharing would have
given them at the concurrency the run had; below 1 when a woken rank waits for
its turn on a core). A rank computes during its ops, and from the posting of
each batch of messages for the CPU a message takes (the runtime's,
`overhead.message`, and the library's, `link.cpu`, which the model otherwise
puts on the wire). The simulator runs the programs as if every rank had its
own core, then stretches time: a stretch of the timeline during which n ranks
compute lasts max(1, n / ((cores - R * background) * efficiency)) times as
long. Every instruction keeps its place in that order and its start and end
move with the stretch, so this is processor sharing exactly, except that a
message in flight while the cores are oversubscribed is stretched with them
(docs/costs.md, "Contention").
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace

from schedc.instructions import MESSAGE, TABLE
from schedc.overlap import DEFAULT, Overlap
from schedc.program import Instr
from schedc.simulate.costs import CostModel
from schedc.simulate.engine import Timeline, simulate_streams


def simulate_shared(streams: Sequence[Sequence[Instr]], costs: CostModel,
                    serial_comm: bool = False, lazy_recv: bool = False,
                    rule: Overlap = DEFAULT) -> Timeline:
    """`simulate_streams`, then stretched by the sharing of `costs.cores`."""
    timeline = simulate_streams(streams, costs, serial_comm, lazy_recv, rule)
    if costs.cores is None:
        return timeline
    capacity = compute_capacity(costs.cores, len(streams), costs.background,
                                costs.efficiency)
    if capacity >= len(streams):
        return timeline
    return stretch(timeline, capacity, costs.message_overhead + costs.link_cpu)


MIN_CAPACITY = 0.1  # cores left to compute when the background claims (nearly) all


def compute_capacity(cores: int, ranks: int, background: float = 0.0,
                     efficiency: float = 1.0) -> float:
    """Cores left for the ranks' ops: `cores` less every rank's background threads,
    of which the ops get `efficiency` (the measured host's share of ideal sharing)."""
    return max((cores - ranks * background) * efficiency, MIN_CAPACITY)


def stretch(timeline: Timeline, cores: float, message_cpu: float = 0.0) -> Timeline:
    """The timeline with every stretch where n > cores ranks compute lasting
    n / cores times as long; a batch of k messages computes for k * message_cpu
    from its posting."""
    changes = []  # (time, +1 a rank starts computing / -1 it stops)
    for stream, starts, ends in zip(timeline.streams, timeline.starts, timeline.ends,
                                    strict=True):
        for t0, t1 in _merged(_busy(stream, starts, ends, message_cpu)):
            changes += [(t0, 1), (t1, -1)]
    changes.sort()
    at, stretched, factor = [0.0], [0.0], []  # piecewise linear map from `at`
    computing = 0
    for t, change in changes:
        if t > at[-1]:
            f = max(1.0, computing / cores)
            factor.append(f)
            stretched.append(stretched[-1] + (t - at[-1]) * f)
            at.append(t)
        computing += change
    factor.append(1.0)  # after the last op

    def new(t: float) -> float:
        i = bisect_right(at, t) - 1
        return stretched[i] + (t - at[i]) * factor[i]

    return replace(timeline, starts=[[new(t) for t in s] for s in timeline.starts],
                   ends=[[new(t) for t in e] for e in timeline.ends])


def _busy(stream: Sequence[Instr], starts: Sequence[float], ends: Sequence[float],
          message_cpu: float) -> list[tuple[float, float]]:
    """When a rank computes: its ops, and each batch (a maximal run of messages)
    for message_cpu per message from its posting."""
    out, batch_start, batch_len = [], None, 0
    for ins, t0, t1 in zip(stream, starts, ends, strict=True):
        row = TABLE.get(ins.op)
        if row is not None and row.kind == MESSAGE:
            batch_start = t0 if batch_start is None else min(batch_start, t0)
            batch_len += 1
            continue
        if batch_start is not None and message_cpu > 0:
            out.append((batch_start, batch_start + batch_len * message_cpu))
        batch_start, batch_len = None, 0
        if t1 > t0:
            out.append((t0, t1))
    if batch_start is not None and message_cpu > 0:
        out.append((batch_start, batch_start + batch_len * message_cpu))
    return out


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping spans of one rank as one: a rank computes once at a time."""
    out: list[tuple[float, float]] = []
    for t0, t1 in sorted(spans):
        if out and t0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t1))
        else:
            out.append((t0, t1))
    return out
