"""Time on the replay core: an observer that gives every instruction a start
and an end under a cost function, for the compiler's unit-cost analysis
(`schedc.timing`) and the cost-model simulator (`schedc.simulate`) alike.

- Compute and local ops run back to back on their rank's clock.
- A batch is posted at its rank's clock. With overlapping communication (the
  default) a send leaves when posted and never holds its rank; the batch's
  receives hold the rank until their data has arrived, as the runtime waits
  on the batch. With `lazy_recv` a receive holds only the compute op that
  consumes it (receives prefetched on their own stream). With `serial_comm`
  a batch blocks its rank until every message in it has arrived, and a
  transfer starts only when both ends are posted.
- Each directed link carries one message at a time, in the sender's order:
  transfer = wire time (bytes / bandwidth), then latency until arrival.
- An ALLREDUCE starts when its last member arrives.
- Under an overlap rule with K > 1 (`overlap`, schedc/overlap.py) a batch
  holds its rank until its receives' data has arrived; with `serial_comm` a
  send holds its rank only where the replay waits for it (more than K - 1
  batches holding sends, a collective, the end). A receive posted ahead
  starts when posted, so with `serial_comm` its transfer runs while the rank
  computes.

For a message, start = posted; end = arrival at the peer (send) or data
available (receive).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from copy import copy
from typing import Protocol

from schedc.instructions import AROUND, MESSAGE, SEND_OPS, TABLE, UNIT_COSTS, unit_cost
from schedc.program import Instr
from schedc.replay import Observer
from schedc.unroll import RunStream


class Costs(Protocol):
    """What the clock asks of a cost model (`schedc.simulate.costs.CostModel`)."""

    latency: float

    def op_time(self, op: str, stage: int) -> float: ...

    def message_time(self, kind: str, stage: int) -> float: ...

    def allreduce_time(self, stage: int, participants: int) -> float: ...


class UnitCosts:
    """The compiler's unit costs, from the instruction table: zero latency,
    free messages and collectives."""

    latency = 0.0

    def op_time(self, op: str, stage: int) -> float:
        return unit_cost(op)

    def message_time(self, kind: str, stage: int) -> float:
        return 0.0

    def allreduce_time(self, stage: int, participants: int) -> float:
        return 0.0


class Clock(Observer):
    """The cost model's time, observing the replay core's progress."""

    def __init__(self, streams: Sequence[Sequence[Instr]], costs: Costs,
                 serial_comm: bool = False, lazy_recv: bool = False,
                 overlap: bool = False, keep_messages: bool = True) -> None:
        self.streams = streams
        self.overlap = overlap
        self.ahead = [-1] * len(streams)  # the batch whose receives were posted ahead
        self.costs = costs
        self.serial = serial_comm
        self.lazy = lazy_recv and not serial_comm
        self.sections: dict[int, tuple[Sequence[Instr], list[float]]] = {}
        self.dur = [self._stream_durations(s) for s in self.streams]
        self.dkey = [_data_keys(s) for s in self.streams] if self.lazy else []
        n = len(self.streams)
        self.now = [0.0] * n
        # Doubles in arrays, not float objects in lists: 8 bytes an instruction
        # each, not about 30 (the verifier clocks every instruction of a compile).
        self.starts = [_zeros(len(s)) for s in self.streams]
        self.ends = [_zeros(len(s)) for s in self.streams]
        self.data_ready: list[dict] = [{} for _ in range(n)]
        self.batch_clock = [0.0] * n  # when the messages the batch waits for have landed
        self.link_free: dict[tuple[int, int], float] = {}
        # (sender, index, receiver, index) of every message, for the simulator's
        # timeline; a bare timing (the compiler's) keeps none.
        self.messages: list[tuple[int, int, int, int]] = []
        self.keep_messages = keep_messages

    def extend(self, r: int) -> None:
        """Rank r's stream has grown at its end (schedc.runs): its new
        instructions get times too."""
        done, stream = len(self.dur[r]), self.streams[r]
        self.dur[r].extend(self._stream_durations(stream, done))
        if self.lazy:
            self.dkey[r].extend(_data_keys(stream[done:]))
        self.starts[r].extend(_zeros(len(stream) - done))
        self.ends[r].extend(_zeros(len(stream) - done))

    def fork(self, streams: Sequence[Sequence[Instr]], same: list[int]) -> Clock:
        """A clock for a fork of the replay this one observes (Replay.fork's
        `streams` and `same`: each stream equals this clock's on its first
        same[r] instructions): it goes on from this clock's times, and this
        clock is not changed."""
        new = copy(self)
        new.streams = streams
        new.dur = [d[:n] + new._stream_durations(s, n)
                   for d, s, n in zip(self.dur, streams, same, strict=True)]
        if self.lazy:
            new.dkey = [k[:n] + _data_keys(s[n:])
                        for k, s, n in zip(self.dkey, streams, same, strict=True)]
        new.starts, new.ends = ([t[:n] + _zeros(len(s) - n)
                                 for t, s, n in zip(times, streams, same, strict=True)]
                                for times in (self.starts, self.ends))
        new.now, new.batch_clock, new.ahead = list(self.now), list(self.batch_clock), \
            list(self.ahead)
        new.data_ready = [dict(d) for d in self.data_ready]
        new.link_free = dict(self.link_free)
        new.messages = list(self.messages)
        return new

    def times_read(self, posted: list[tuple[int, int]], unmatched: set[tuple[int, int]]
                   ) -> tuple[tuple, list[float]]:
        """What a replay stopped with each rank r's batch posted[r] (lo, hi;
        lo == hi: none) and the messages `unmatched` (rank, index) not yet met
        reads of the clock from there on, or has already written past lo:
        (the links used, the times in order: every rank's clock and batch
        clock, each link's free time, the starts of the posted batches and
        the ends of their messages already met)."""
        links = tuple(sorted(self.link_free))
        times = [*self.now, *self.batch_clock, *map(self.link_free.__getitem__, links)]
        for r, (lo, hi) in enumerate(posted):
            times += self.starts[r][lo:hi]
            times += [self.ends[r][i] for i in range(lo, hi) if (r, i) not in unmatched]
        return links, times

    def _stream_durations(self, stream: Sequence[Instr], lo: int = 0) -> list[float]:
        """_durations of stream[lo:]: a RunStream's whole sections once each
        (a duration reads the op and stage alone, which no shift changes)."""
        if not isinstance(stream, RunStream):
            return _durations(stream[lo:], self.costs)
        out: list[float] = []
        for seq, a, b, _, _, _ in stream.parts(lo):
            if a or b < len(seq):
                out.extend(_durations(seq[a:b], self.costs))
                continue
            held = self.sections.get(id(seq))
            if held is None or held[0] is not seq:
                held = self.sections[id(seq)] = (seq, _durations(seq, self.costs))
            out.extend(held[1])
        return out

    def local(self, r: int, lo: int, hi: int) -> None:
        starts, ends, dur, t = self.starts[r], self.ends[r], self.dur[r], self.now[r]
        if self.lazy:
            ready, dkey = self.data_ready[r], self.dkey[r]
            for i in range(lo, hi):
                key = dkey[i]
                if key is not None:
                    arrival = ready.pop(key, 0.0)
                    if arrival > t:
                        t = arrival
                starts[i] = t
                t += dur[i]
                ends[i] = t
        else:
            for i in range(lo, hi):
                starts[i] = t
                t += dur[i]
                ends[i] = t
        self.now[r] = t

    def posted(self, r: int, lo: int, hi: int) -> None:
        t = self.batch_clock[r] = self.now[r]
        starts = self.starts[r]
        if self.ahead[r] == lo:  # its receives were posted ahead: only the sends start now
            self.ahead[r] = -1
            stream = self.streams[r]
            for i in range(lo, hi):
                if stream[i].op in SEND_OPS:
                    starts[i] = t
            return
        for i in range(lo, hi):
            starts[i] = t

    def posted_early(self, r: int, lo: int, hi: int) -> None:
        self.ahead[r] = lo
        t, starts, stream = self.now[r], self.starts[r], self.streams[r]
        for i in range(lo, hi):
            if stream[i].op not in SEND_OPS:
                starts[i] = t

    def finished(self, r: int, lo: int, hi: int) -> None:
        if self.overlap:  # the batch's receives only: its sends complete in the background
            if not self.lazy:
                self._hold(r, lo, hi, sends=False)
        elif not self.lazy and self.batch_clock[r] > self.now[r]:
            self.now[r] = self.batch_clock[r]

    def sends_waited(self, r: int, lo: int, hi: int) -> None:
        if self.serial:  # an eager send never holds its rank
            self._hold(r, lo, hi, sends=True)

    def _hold(self, r: int, lo: int, hi: int, sends: bool) -> None:
        """The rank waits until the sends (or receives) of lo..hi have completed."""
        t, ends, stream = self.now[r], self.ends[r], self.streams[r]
        for i in range(lo, hi):
            if (stream[i].op in SEND_OPS) == sends and ends[i] > t:
                t = ends[i]
        self.now[r] = t

    def matched(self, sr: int, sp: int, rr: int, rp: int) -> None:
        wire = self.dur[sr][sp]
        begin, t_recv = self.starts[sr][sp], self.starts[rr][rp]
        if self.serial and t_recv > begin:
            begin = t_recv
        link = (sr, rr)
        free = self.link_free.get(link, 0.0)
        if free > begin:
            begin = free
        self.link_free[link] = begin + wire
        arrival = begin + wire + self.costs.latency
        self.ends[sr][sp] = arrival
        self.ends[rr][rp] = arrival if arrival > t_recv else t_recv
        if self.overlap and not self.lazy:
            pass  # the waits read `ends` (finished, sends_waited)
        elif self.serial:
            for rank in (sr, rr):
                self.batch_clock[rank] = max(self.batch_clock[rank], arrival)
        elif not self.lazy:
            if arrival > self.batch_clock[rr]:
                self.batch_clock[rr] = arrival
        else:
            dkey = _data_key(self.streams[rr][rp])
            ready = self.data_ready[rr]
            ready[dkey] = max(ready.get(dkey, 0.0), arrival)
        if self.keep_messages:
            self.messages.append((sr, sp, rr, rp))

    def collective(self, members: list[tuple[int, int]]) -> None:
        r, i = members[0]
        ins = self.streams[r][i]
        begin = max(self.now[m] for m, _ in members)
        end = begin + self.costs.allreduce_time(ins.stage, len(members))
        for m, j in members:
            self.starts[m][j], self.ends[m][j] = begin, end
            self.now[m] = end


def _zeros(n: int) -> array:
    return array("d", bytes(8 * n))


def _durations(stream: Sequence[Instr], costs: Costs) -> list[float]:
    """Time of each compute/local op; wire time of each send (receives: 0)."""
    if isinstance(costs, UnitCosts):
        return [UNIT_COSTS.get(ins.op, 0.0) for ins in stream]
    out = []
    known: dict[tuple[str, int | None], float] = {}
    for ins in stream:
        key = (ins.op, ins.stage)
        t = known.get(key)
        if t is None:
            row = TABLE.get(ins.op)
            if row is not None and row.kind == MESSAGE:
                t = costs.message_time(row.message, ins.stage) if row.send else 0.0
            else:
                t = costs.op_time(ins.op, ins.stage)
            known[key] = t
        out.append(t)
    return out


def _data_key(ins: Instr) -> tuple | None:
    """What a compute op consumes from a receive (lazy receives): (message kind,
    consuming stage, mb, pipeline); the same key for the receive that brings it."""
    row = TABLE.get(ins.op)
    if row is None:
        return None
    if row.kind == MESSAGE:
        return (row.message, ins.stage, ins.mb, ins.pipeline)
    around = AROUND.get(ins.op)  # the receive it consumes, if any (F: ACT; B, I: GRAD)
    if around and around.receives:
        return (TABLE[around.receives[0][0]].message, ins.stage, ins.mb, ins.pipeline)
    return None


def _data_keys(stream: Sequence[Instr]) -> list[tuple | None]:
    return [_data_key(ins) for ins in stream]
