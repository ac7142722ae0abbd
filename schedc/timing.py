"""Unit-cost timing of instruction streams: the compiler's own cost model.

F = 1, B = 2, I = W = 1; everything else is free; zero latency; a send is
posted when reached and never blocks; a receive waits for its send; an
ALLREDUCE waits for its whole group. Times are max-plus functions of the
programs, so the order ranks are advanced in does not change them. (The
simulator in `schedc.simulate` is the general, configurable model.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedc.program import COMPUTE_OPS, Instr

UNIT_COSTS = {"F": 1.0, "B": 2.0, "I": 1.0, "W": 1.0}


@dataclass(frozen=True)
class Timing:
    start: tuple[tuple[float, ...], ...]  # [rank][index]
    end: tuple[tuple[float, ...], ...]

    @property
    def makespan(self) -> float:
        return max((e[-1] for e in self.end if e), default=0.0)

    def busy(self, streams: Sequence[Sequence[Instr]], rank: int, lo: int = 0,
             hi: int | None = None) -> float:
        seq = streams[rank][lo:hi]
        return sum(UNIT_COSTS.get(i.op, 0.0) for i in seq)


def _comm_key(ins: Instr) -> tuple:
    stage = ins.stage + (1 if ins.op == "SEND_ACT" else -1 if ins.op == "SEND_GRAD" else 0)
    kind = "ACT" if ins.op.endswith("ACT") else "GRAD"
    return kind, ins.pipeline, stage, ins.mb


def unit_timing(streams: Sequence[Sequence[Instr]]) -> Timing:
    """Start and end time of every instruction (streams must be deadlock-free)."""
    n = len(streams)
    start = [[0.0] * len(s) for s in streams]
    end = [[0.0] * len(s) for s in streams]
    pc, clock = [0] * n, [0.0] * n
    posted: dict[tuple, float] = {}
    arrived: dict[tuple, dict[int, float]] = {}
    passed: dict[tuple[int, int], int] = {}
    progress = True
    while progress:
        progress = False
        for r in range(n):
            while pc[r] < len(streams[r]):
                ins = streams[r][pc[r]]
                t = clock[r]
                if ins.op in ("RECV_ACT", "RECV_GRAD"):
                    key = _comm_key(ins)
                    if key not in posted:
                        break
                    t = max(t, posted.pop(key))
                elif ins.op == "ALLREDUCE":
                    t = _allreduce_time(r, ins, passed, arrived, t)
                    if t is None:
                        break
                elif ins.op in ("SEND_ACT", "SEND_GRAD"):
                    posted[_comm_key(ins)] = t
                start[r][pc[r]] = t
                clock[r] = t + UNIT_COSTS.get(ins.op, 0.0) if ins.op in COMPUTE_OPS else t
                end[r][pc[r]] = clock[r]
                pc[r] += 1
                progress = True
    if any(pc[r] < len(streams[r]) for r in range(n)):
        raise RuntimeError("unit_timing on streams that deadlock")  # verified before
    return Timing(tuple(map(tuple, start)), tuple(map(tuple, end)))


def _allreduce_time(r: int, ins: Instr, passed: dict, arrived: dict, t: float) -> float | None:
    """Completion time of rank r's ALLREDUCE, or None while the group gathers."""
    key = (ins.stage, ins.group, passed.get((r, ins.stage), 0))
    members = arrived.setdefault(key, {})
    members[r] = t
    if len(members) < len(ins.group or ()):
        return None
    passed[(r, ins.stage)] = key[2] + 1
    return max(members.values())
