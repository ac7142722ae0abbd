"""Event-driven execution of every rank's instruction stream under a cost model.

Two clocks matter and are kept apart:

- *Progress* (which rank may run its next instruction) follows the runtime's
  blocking rules, the ones the verifier proves (`schedc.deadlock`): a maximal
  run of consecutive sends and receives on a rank is one batch, posted at once
  and waited for whole; the k-th send from a to b meets the k-th receive on b
  from a; an ALLREDUCE completes when its whole group stands at it. Progress
  that stalls with instructions left is a `Deadlock`, named per rank, never a
  loop.
- *Time* follows the cost model. With overlapping communication (the default)
  communication runs beside compute: a send leaves when posted and never
  holds its rank; a batch's receives hold the rank until their data has
  arrived, as the runtime waits on the batch (and as the compiler's analysis
  counts). With `lazy_recv` a receive holds only the compute op that consumes
  it (receives prefetched on their own stream). With `serial_comm` a batch
  blocks its rank until every message in it has arrived, and a transfer
  starts only when both ends are posted.

Each directed link carries one message at a time, in the sender's order:
transfer = bytes / bandwidth, then latency until arrival.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
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
    """(kind, duration, key, data key) per instruction, so the hot loop only indexes.

    For comm ops key = (channel, what): channel (src, dst), what = (ACT|GRAD,
    producing stage, mb, pipeline), the same on both ends of a message.
    """
    out: list[tuple] = []
    ar_seen: dict[tuple, int] = {}
    for ins in stream:
        op, s = ins.op, ins.stage
        if op in ("F", "B", "I", "W"):
            dkey = None if op == "W" else (_ACT if op == "F" else _GRAD, s, ins.mb, ins.pipeline)
            out.append((COMPUTE, costs.op_time(op, s), None, dkey))
        elif op in ("SEND_ACT", "SEND_GRAD"):
            kind = _ACT if op == "SEND_ACT" else _GRAD
            what = (kind, s, ins.mb, ins.pipeline)
            wire = costs.message_time("ACT" if kind == _ACT else "GRAD", s)
            out.append((SEND, wire, ((rank, ins.peer), what), None))
        elif op in ("RECV_ACT", "RECV_GRAD"):
            kind = _ACT if op == "RECV_ACT" else _GRAD
            what = (kind, s - 1 if kind == _ACT else s + 1, ins.mb, ins.pipeline)
            out.append((RECV, 0.0, ((ins.peer, rank), what), (kind, s, ins.mb, ins.pipeline)))
        elif op == "ALLREDUCE":
            # The n-th all-reduce of a stage on one rank meets the n-th on the others.
            mine = (s, ins.group)
            n = ar_seen.get(mine, 0)
            ar_seen[mine] = n + 1
            out.append((ALLREDUCE, 0.0, (_AR, s, ins.group, n), None))
        else:
            out.append((LOCAL, costs.op_time(op, s), None, None))
    return out


def simulate_streams(
    streams: Sequence[Sequence[Instr]], costs: CostModel, serial_comm: bool = False,
    lazy_recv: bool = False,
) -> Timeline:
    """Run every rank's unrolled stream; raise `Deadlock` if progress stalls."""
    return _Engine(streams, costs, serial_comm, lazy_recv).run()


class MessageMismatch(UserError):
    """The k-th send on a channel meets a receive for something else."""


class _Engine:
    def __init__(self, streams: Sequence[Sequence[Instr]], costs: CostModel,
                 serial_comm: bool, lazy_recv: bool = False) -> None:
        self.streams = [list(s) for s in streams]
        self.code = [_encode(r, s, costs) for r, s in enumerate(self.streams)]
        self.costs = costs
        self.serial = serial_comm
        self.lazy = lazy_recv and not serial_comm
        n = len(self.streams)
        self.pc = [0] * n
        self.now = [0.0] * n
        self.starts = [[0.0] * len(s) for s in self.streams]
        self.ends = [[0.0] * len(s) for s in self.streams]
        self.data_ready: list[dict] = [{} for _ in range(n)]
        # Per channel: posted sends and receives, (rank, index), matched in order.
        self.sends: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.recvs: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.batch_end = [-1] * n  # index after the posted batch; -1: none posted
        self.open = [0] * n  # messages of the posted batch not yet matched
        self.batch_clock = [0.0] * n  # when the messages the batch waits for have landed
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
            self.now[r], self.pc[r] = t, pc
            if kind == ALLREDUCE:
                if not self._collective(r, pc, key):
                    return
            else:
                if self.batch_end[r] < 0:
                    self._post_batch(r, pc)
                if self.open[r]:
                    return
                self._finish_batch(r)
            pc, t = self.pc[r], self.now[r]
        self.pc[r], self.now[r] = pc, t

    def _post_batch(self, r: int, pc: int) -> None:
        code = self.code[r]
        self.batch_clock[r] = self.now[r]
        i = pc
        while i < len(code) and code[i][0] in (SEND, RECV):
            kind, _, (chan, _), _ = code[i]
            self.starts[r][i] = self.now[r]
            mine, theirs = (self.sends, self.recvs) if kind == SEND else (self.recvs, self.sends)
            posted = mine.setdefault(chan, [])
            posted.append((r, i))
            other = theirs.get(chan, [])
            self.open[r] += 1
            if len(other) >= len(posted):  # the other end is already there
                o_rank, o_pc = other[len(posted) - 1]
                send, recv = ((r, i), (o_rank, o_pc)) if kind == SEND else ((o_rank, o_pc), (r, i))
                self._transfer(*send, *recv)
                self.open[r] -= 1
                self.open[o_rank] -= 1
                if self.open[o_rank] == 0 and o_rank != r:
                    self.ready.append(o_rank)
            i += 1
        self.batch_end[r] = i

    def _finish_batch(self, r: int) -> None:
        self.pc[r] = self.batch_end[r]
        self.batch_end[r] = -1
        if not self.lazy:
            self.now[r] = max(self.now[r], self.batch_clock[r])

    def _transfer(self, sr: int, sp: int, rr: int, rp: int) -> None:
        s_what, r_what = self.code[sr][sp][2][1], self.code[rr][rp][2][1]
        if s_what != r_what:
            send, recv = self.streams[sr][sp], self.streams[rr][rp]
            raise MessageMismatch(f"send/receive mismatch: rank {sr} instruction {sp} "
                                  f"({send.label()}) meets rank {rr} instruction {rp} "
                                  f"({recv.label()})")
        wire = self.code[sr][sp][1]
        t_send, t_recv = self.starts[sr][sp], self.starts[rr][rp]
        link = (sr, rr)
        begin = max(t_send, t_recv) if self.serial else t_send
        begin = max(begin, self.link_free.get(link, 0.0))
        self.link_free[link] = begin + wire
        arrival = begin + wire + self.costs.latency
        self.ends[sr][sp] = arrival
        self.ends[rr][rp] = max(arrival, t_recv)
        if self.serial:
            for rank in (sr, rr):
                self.batch_clock[rank] = max(self.batch_clock[rank], arrival)
        elif not self.lazy:
            self.batch_clock[rr] = max(self.batch_clock[rr], arrival)
        else:
            dkey = self.code[rr][rp][3]
            ready = self.data_ready[rr]
            ready[dkey] = max(ready.get(dkey, 0.0), arrival)
        self.messages.append((sr, sp, rr, rp))

    def _collective(self, r: int, pc: int, key: tuple) -> bool:
        members = self.collectives.setdefault(key, [])
        members.append(r)
        _, stage, group, _ = key
        if len(members) < len(group):
            return False
        del self.collectives[key]
        begin = max(self.now[m] for m in members)
        end = begin + self.costs.allreduce_time(stage, len(group))
        for m in members:
            i = self.pc[m]
            self.starts[m][i], self.ends[m][i] = begin, end
            self.now[m] = end
            self.pc[m] = i + 1
            if m != r:
                self.ready.append(m)
        return True

    def _blocked(self, r: int) -> BlockedAt:
        pc = self.pc[r]
        kind, _, key, _ = self.code[r][pc]
        if kind == ALLREDUCE:
            got = len(self.collectives.get(key, []))
            why = f"all-reduce of stage {key[1]} has {got} of {len(key[2])} ranks"
            return BlockedAt(r, pc, self.streams[r][pc].label(), why)
        for i in range(pc, self.batch_end[r]):  # the first message still unmatched
            kind, _, (chan, _), _ = self.code[r][i]
            mine, theirs = (self.sends, self.recvs) if kind == SEND else (self.recvs, self.sends)
            k = mine[chan].index((r, i))
            if len(theirs.get(chan, [])) <= k:
                ins = self.streams[r][i]
                why = (f"no matching RECV on rank {ins.peer}" if kind == SEND
                       else f"no matching SEND from rank {ins.peer}")
                return BlockedAt(r, i, ins.label(), why)
        return BlockedAt(r, pc, self.streams[r][pc].label(), "blocked")  # pragma: no cover
