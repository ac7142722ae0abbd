"""Ranks sharing fewer cores than there are ranks (a profile's `cores`).

CPU ranks on one machine with fewer cores than ranks take turns: while more
ranks want to compute than there are cores, each computes at cores / wanting
of its speed, and a rank waiting for a message gives its core away. The
simulator models this by one factor that stretches every op (not messages):
the schedule runs with its ops x f, and f is the fixed point of

    f = max(1, busy(f) / (makespan(f) * cores))

where busy(f) / makespan(f) is how many ranks compute at once on average in
the stretched run. With every rank always busy this gives f = ranks / cores;
with bubbles less, since a bubble on one rank is compute time for another. It
is the time-average of processor sharing, not its moment-by-moment order (the
replay core is not a global-time event queue), so it is exact when the
number of computing ranks stays the same through the run, and an estimate
otherwise (docs/costs.md, "Contention").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from schedc.instructions import MESSAGE, TABLE
from schedc.program import Instr
from schedc.simulate.costs import CostModel
from schedc.simulate.engine import Timeline, simulate_streams

ITERATIONS = 50
TOLERANCE = 1e-9


def simulate_shared(streams: Sequence[Sequence[Instr]], costs: CostModel,
                    serial_comm: bool = False, lazy_recv: bool = False) -> Timeline:
    """`simulate_streams`, with every op stretched by the sharing of `costs.cores`."""
    timeline = simulate_streams(streams, costs, serial_comm, lazy_recv)
    if costs.cores is None or costs.cores >= len(streams):
        return timeline
    f = 1.0
    for _ in range(ITERATIONS):
        want = max(1.0, busy(timeline) / (timeline.makespan * costs.cores)) \
            if timeline.makespan > 0 else 1.0
        if abs(want - f) <= TOLERANCE * f:
            break
        f = want
        timeline = simulate_streams(streams, replace(costs, scale=costs.scale * f),
                                    serial_comm, lazy_recv)
    return timeline


def busy(timeline: Timeline) -> float:
    """Time every rank spent in ops that are not messages, summed over ranks."""
    total = 0.0
    for stream, starts, ends in zip(timeline.streams, timeline.starts, timeline.ends,
                                    strict=True):
        for ins, t0, t1 in zip(stream, starts, ends, strict=True):
            row = TABLE.get(ins.op)
            if row is None or row.kind != MESSAGE:
                total += t1 - t0
    return total
