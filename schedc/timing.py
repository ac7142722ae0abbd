"""Unit-cost timing of instruction streams: the compiler's own cost model.

The replay core (`schedc.replay`) with the clock (`schedc.clock`) under the
instruction table's unit costs (F = 1, B = 2, I = W = 1, everything else
free, zero latency): the very rules and clock the simulator uses, so a
simulation under unit costs reproduces these times exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedc.clock import Clock, UnitCosts
from schedc.instructions import COMPUTE_OPS, unit_cost
from schedc.program import Instr
from schedc.replay import Replay
from schedc.unroll import unshifted


@dataclass(frozen=True)
class Timing:
    start: Sequence[Sequence[float]]  # [rank][index]
    end: Sequence[Sequence[float]]

    @property
    def makespan(self) -> float:
        return max((max(e) for e in self.end if e), default=0.0)

    def busy(self, streams: Sequence[Sequence[Instr]], rank: int, lo: int = 0,
             hi: int | None = None) -> float:
        seq = unshifted(streams[rank], lo, hi)  # the op alone counts
        return sum(unit_cost(i.op) for i in seq if i.op in COMPUTE_OPS)


def unit_timing(streams: Sequence[Sequence[Instr]]) -> Timing:
    """Start and end time of every instruction (streams must be deadlock-free)."""
    clock = Clock(streams, UnitCosts(), keep_messages=False)
    Replay(clock.streams, clock).run()
    return Timing(clock.starts, clock.ends)
