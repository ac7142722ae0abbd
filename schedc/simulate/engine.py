"""Event-driven execution of every rank's instruction stream under a cost model.

Two clocks matter and are kept apart:

- *Progress* (which rank may run its next instruction) follows the contract's
  blocking semantics: a send and its receive complete together (rendezvous),
  an ALLREDUCE completes when every replica has issued it. A program whose
  progress stalls with instructions left would hang at run time: that is a
  `Deadlock`, named per rank, never a loop.
- *Time* follows the cost model. With overlapping communication (the default)
  sends and receives take no time on the rank's compute stream: a send leaves
  when posted, and the compute op that consumes a receive waits for its data.
  With `serial_comm` both ends block on the rank's timeline for the transfer.

Each directed link carries one message at a time, in the sender's order:
transfer = bytes / bandwidth, then latency until arrival.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schedc.errors import UserError
from schedc.program import Instr
from schedc.simulate.costs import CostModel

COMPUTE, SEND, RECV, ALLREDUCE, LOCAL = range(5)
_ACT, _GRAD, _AR = 0, 1, 2


@dataclass(frozen=True)
class BlockedAt:
    rank: int
    index: int  # in the rank's unrolled stream
    label: str
    waiting_for: str


class Deadlock(UserError):
    """The programs would hang: every unfinished rank is blocked."""

    def __init__(self, blocked: Sequence[BlockedAt]) -> None:
        self.blocked = list(blocked)
        lines = [f"  rank {b.rank}, instruction {b.index} ({b.label}): {b.waiting_for}"
                 for b in self.blocked]
        super().__init__("deadlock: the programs would hang\n" + "\n".join(lines))


@dataclass
class Timeline:
    """When every instruction of every rank's unrolled stream ran.

    For compute and local ops, [start, end) is time on the rank's stream. For
    a send, start = posted, end = arrival at the peer; for a receive, start =
    posted, end = data available. messages: (send rank, send index, recv rank,
    recv index) in the order they were matched.
    """

    streams: list[list[Instr]]
    starts: list[list[float]]
    ends: list[list[float]]
    messages: list[tuple[int, int, int, int]]
    serial_comm: bool

    @property
    def makespan(self) -> float:
        return max((max(e) for e in self.ends if e), default=0.0)


def _encode(rank: int, stream: Sequence[Instr], costs: CostModel) -> list[tuple]:
    """(kind, duration, key, data key) per instruction, so the hot loop only indexes."""
    out: list[tuple] = []
    ar_seen: dict[tuple, int] = {}
    for ins in stream:
        op, s = ins.op, ins.stage
        if op in ("F", "B", "I", "W"):
            dkey = None if op == "W" else (_ACT if op == "F" else _GRAD, s, ins.mb, ins.pipeline)
            out.append((COMPUTE, costs.op_time(op, s), None, dkey))
        elif op == "SEND_ACT":
            key = (_ACT, rank, ins.peer, s, ins.mb, ins.pipeline)
            out.append((SEND, costs.message_time("ACT", s), key, None))
        elif op == "SEND_GRAD":
            key = (_GRAD, rank, ins.peer, s, ins.mb, ins.pipeline)
            out.append((SEND, costs.message_time("GRAD", s), key, None))
        elif op == "RECV_ACT":
            key = (_ACT, ins.peer, rank, s - 1, ins.mb, ins.pipeline)
            out.append((RECV, 0.0, key, (_ACT, s, ins.mb, ins.pipeline)))
        elif op == "RECV_GRAD":
            key = (_GRAD, ins.peer, rank, s + 1, ins.mb, ins.pipeline)
            out.append((RECV, 0.0, key, (_GRAD, s, ins.mb, ins.pipeline)))
        elif op == "ALLREDUCE":
            # The n-th all-reduce of a stage by one replica meets the n-th of the others.
            mine = (s, ins.pipeline, ins.group)
            n = ar_seen.get(mine, 0)
            ar_seen[mine] = n + 1
            out.append((ALLREDUCE, 0.0, (_AR, s, ins.group, n), None))
        else:
            out.append((LOCAL, costs.op_time(op, s), None, None))
    return out


def simulate_streams(
    streams: Sequence[Sequence[Instr]],
    costs: CostModel,
    replicas: Callable[[int, tuple[int, ...]], int],
    serial_comm: bool = False,
) -> Timeline:
    """Run every rank's unrolled stream; raise `Deadlock` if progress stalls.

    replicas(stage, group): how many replicas take part in an all-reduce.
    """
    return _Engine(streams, costs, replicas, serial_comm).run()


class _Engine:
    def __init__(self, streams, costs, replicas, serial_comm) -> None:
        self.streams = [list(s) for s in streams]
        self.code = [_encode(r, s, costs) for r, s in enumerate(self.streams)]
        self.costs = costs
        self.replicas = replicas
        self.serial = serial_comm
        n = len(self.streams)
        self.pc = [0] * n
        self.now = [0.0] * n
        self.starts = [[0.0] * len(s) for s in self.streams]
        self.ends = [[0.0] * len(s) for s in self.streams]
        self.data_ready: list[dict] = [{} for _ in range(n)]
        self.pending: dict[tuple, tuple[int, int]] = {}  # one half of a rendezvous
        self.collectives: dict[tuple, list[int]] = {}
        self.link_free: dict[tuple[int, int], float] = {}
        self.messages: list[tuple[int, int, int, int]] = []
        self.ready: deque[int] = deque(range(n))

    def run(self) -> Timeline:
        while self.ready:
            self._advance(self.ready.popleft())
        stuck = [r for r, c in enumerate(self.code) if self.pc[r] < len(c)]
        if stuck:
            raise Deadlock([self._blocked(r) for r in stuck])
        return Timeline(self.streams, self.starts, self.ends, self.messages, self.serial)

    def _advance(self, r: int) -> None:
        """Run rank r until it finishes or waits for a peer."""
        code, starts, ends, ready = self.code[r], self.starts[r], self.ends[r], self.data_ready[r]
        pc, t = self.pc[r], self.now[r]
        n = len(code)
        while pc < n:
            kind, dur, key, dkey = code[pc]
            if kind == COMPUTE or kind == LOCAL:
                if dkey is not None:
                    arrival = ready.pop(dkey, 0.0)
                    if arrival > t:
                        t = arrival
                starts[pc] = t
                t += dur
                ends[pc] = t
                pc += 1
                continue
            self.now[r] = t
            self.pc[r] = pc
            if kind == ALLREDUCE:
                if not self._collective(r, pc, key):
                    return
            elif not self._rendezvous(r, pc, key, kind):
                return
            pc, t = self.pc[r], self.now[r]
        self.pc[r], self.now[r] = pc, t

    def _rendezvous(self, r: int, pc: int, key: tuple, kind: int) -> bool:
        """Post one end of a message; complete it if the other end is there."""
        other = self.pending.pop(key, None)
        if other is None:
            self.pending[key] = (r, pc)
            return False
        o_rank, o_pc = other
        if kind == SEND:
            self._transfer(r, pc, o_rank, o_pc)
        else:
            self._transfer(o_rank, o_pc, r, pc)
        self.pc[o_rank] = o_pc + 1
        self.pc[r] = pc + 1
        self.ready.append(o_rank)
        return True

    def _transfer(self, sr: int, sp: int, rr: int, rp: int) -> None:
        wire = self.code[sr][sp][1]
        t_send, t_recv = self.now[sr], self.now[rr]
        link = (sr, rr)
        begin = max(t_send, t_recv) if self.serial else t_send
        begin = max(begin, self.link_free.get(link, 0.0))
        self.link_free[link] = begin + wire
        arrival = begin + wire + self.costs.latency
        self.starts[sr][sp] = begin if self.serial else t_send
        self.ends[sr][sp] = arrival
        self.starts[rr][rp] = begin if self.serial else t_recv
        self.ends[rr][rp] = max(arrival, t_recv)
        if self.serial:
            self.now[sr] = self.now[rr] = arrival
        else:
            dkey = self.code[rr][rp][3]
            ready = self.data_ready[rr]
            ready[dkey] = max(ready.get(dkey, 0.0), arrival)
        self.messages.append((sr, sp, rr, rp))

    def _collective(self, r: int, pc: int, key: tuple) -> bool:
        members = self.collectives.setdefault(key, [])
        members.append(r)
        _, stage, group, _ = key
        count = self.replicas(stage, group)
        if len(members) < count:
            return False
        del self.collectives[key]
        begin = max(self.now[m] for m in members)
        end = begin + self.costs.allreduce_time(stage, count)
        for m in members:
            i = self.pc[m] if m != r else pc
            self.starts[m][i], self.ends[m][i] = begin, end
            self.now[m] = end
            self.pc[m] = i + 1
            if m != r:
                self.ready.append(m)
        return True

    def _blocked(self, r: int) -> BlockedAt:
        pc = self.pc[r]
        ins = self.streams[r][pc]
        kind, _, key, _ = self.code[r][pc]
        if kind == ALLREDUCE:
            got = len(self.collectives.get(key, []))
            need = self.replicas(key[1], key[2])
            why = f"all-reduce has {got} of {need} replicas of stage {key[1]}"
        elif kind == SEND:
            why = f"no matching RECV posted on rank {ins.peer}"
        else:
            why = f"no matching SEND posted on rank {ins.peer}"
        return BlockedAt(r, pc, ins.label(), why)
