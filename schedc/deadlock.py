"""Deadlock freedom: run every rank's stream under the runtime's blocking rules.

The rules (docs/programs.md): a maximal run of consecutive send/receive
instructions on a rank is one *batch*, posted at once (batch_isend_irecv) and
waited for whole before the rank goes on; messages between two ranks match in
order, per direction and pipeline (each pipeline has its own communicator:
the k-th send from a to b of pipeline p meets the k-th receive on b from a of
pipeline p, and they must name the same stage and micro-batch); an
ALLREDUCE completes when every rank of its group stands at the ALLREDUCE of
the same stage. A rank holds at most one posted batch, so NCCL's in-order
streams add no waits of their own. The check is linear in the number of
instructions: each rank advances until it blocks and is retried only when a
peer posts.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence

from schedc.errors import VerifyError
from schedc.program import COMM_OPS, SEND_OPS, Instr

Locate = Callable[[int, int], tuple[str, int]]
_MATCH = {"SEND_ACT": "RECV_ACT", "SEND_GRAD": "RECV_GRAD"}


def matches(send: Instr, recv: Instr) -> bool:
    """Does `recv` receive what `send` sends?"""
    assert send.stage is not None
    step = 1 if send.op == "SEND_ACT" else -1
    return (
        _MATCH.get(send.op) == recv.op
        and recv.stage == send.stage + step
        and (send.mb, send.pipeline) == (recv.mb, recv.pipeline)
    )


class _Reorder(Exception):
    """Repair: the receiver must take `send`'s message before the one at index."""

    def __init__(self, rank: int, index: int, send: Instr) -> None:
        super().__init__()
        self.rank, self.index, self.send = rank, index, send


class _Checker:
    def __init__(self, streams: Sequence[Sequence[Instr]], locate: Locate,
                 repair: bool = False) -> None:
        self.streams, self.locate, self.repair = streams, locate, repair
        n = len(streams)
        self.pc = [0] * n
        self.batch_end = [-1] * n  # end of the posted batch, -1 when none
        self.waits: list[list[tuple[str, tuple[int, int, int], int]]] = [[] for _ in range(n)]
        self.sends: dict[tuple[int, int, int], list[tuple[int, int, int]]] = defaultdict(list)
        self.recvs: dict[tuple[int, int, int], list[tuple[int, int, int]]] = defaultdict(list)
        self.watchers: dict[tuple[int, int, int], set[int]] = defaultdict(set)

    def fail(self, rank: int, index: int, reason: str) -> VerifyError:
        section, idx = self.locate(rank, index)
        return VerifyError(reason, rank=rank, index=idx, section=section,
                           instr=self.streams[rank][index].label())

    def run(self) -> None:
        queue = deque(range(len(self.streams)))
        queued = set(queue)
        while True:
            while queue:
                r = queue.popleft()
                queued.discard(r)
                for other in self.advance(r):
                    if other not in queued:
                        queued.add(other)
                        queue.append(other)
            hoisted = self.hoist_receives() if self.repair else set()
            if not hoisted:
                break
            queue.extend(hoisted)
            queued |= hoisted
        self.report_stuck()

    def hoist_receives(self) -> set[int]:
        """Move the receive each stuck send waits for into its receiver's
        current batch. The send is already posted, so the receiver only waits
        for a message that will come; per-channel order is kept because every
        earlier receive on that channel has been matched already."""
        moved: set[int] = set()
        for r in range(len(self.streams)):
            if self.batch_end[r] < 0:
                continue
            for theirs, chan, k in self.waits[r]:
                # only the next receive of the channel: the k-th meets the k-th send
                if theirs == "recv" and len(self.recvs[chan]) == k:
                    send_at = self.sends[chan][k]
                    send = self.streams[send_at[0]][send_at[1]]
                    if self._hoist(chan[1], chan, send):
                        moved |= {chan[1], r}
        return moved

    def _hoist(self, q: int, chan: tuple[int, int, int], send: Instr) -> bool:
        seq = self.streams[q]
        start = self.batch_end[q] if self.batch_end[q] >= 0 else self.pc[q]
        for j in range(start, len(seq)):
            ins = seq[j]
            if ins.op in ("RECV_ACT", "RECV_GRAD") and matches(send, ins):
                seq.insert(start, seq.pop(j))
                if self.batch_end[q] >= 0:
                    self.recvs[chan].append((q, start))
                    self.waits[q].append(("send", chan, len(self.recvs[chan]) - 1))
                    self.batch_end[q] = start + 1
                return True
        return False

    def advance(self, r: int) -> set[int]:
        woken: set[int] = set()
        seq = self.streams[r]
        while self.pc[r] < len(seq):
            ins = seq[self.pc[r]]
            if ins.op in COMM_OPS:
                if self.batch_end[r] < 0:
                    woken |= self.post(r)
                if not self.batch_done(r):
                    break
                self.pc[r], self.batch_end[r] = self.batch_end[r], -1
            elif ins.op == "ALLREDUCE":
                group = self.allreduce_ready(r, ins)
                if group is None:
                    break
                for g in group:
                    self.pc[g] += 1
                woken |= set(group)
            else:
                self.pc[r] += 1
        return woken

    def post(self, r: int) -> set[int]:
        seq, i = self.streams[r], self.pc[r]
        woken: set[int] = set()
        waits = []
        while i < len(seq) and seq[i].op in COMM_OPS:
            ins = seq[i]
            peer = ins.peer
            if peer is None or not 0 <= peer < len(self.streams) or peer == r:
                raise self.fail(r, i, f"invalid peer {peer}")
            if ins.op in SEND_OPS:
                chan, mine, theirs = (r, peer, ins.pipeline), self.sends, "recv"
            else:
                chan, mine, theirs = (peer, r, ins.pipeline), self.recvs, "send"
            mine[chan].append((r, i))
            waits.append((theirs, chan, len(mine[chan]) - 1))
            self.watchers[chan].add(r)
            woken |= self.watchers[chan]
            i += 1
        self.batch_end[r] = i
        self.waits[r] = waits
        return woken

    def batch_done(self, r: int) -> bool:
        for theirs, chan, k in self.waits[r]:
            other = self.recvs if theirs == "recv" else self.sends
            if len(other[chan]) <= k:
                return False
            send_at = self.sends[chan][k]
            recv_at = self.recvs[chan][k]
            send = self.streams[send_at[0]][send_at[1]]
            recv = self.streams[recv_at[0]][recv_at[1]]
            if not matches(send, recv):
                if self.repair:
                    raise _Reorder(recv_at[0], recv_at[1], send)
                section, idx = self.locate(*recv_at)
                raise self.fail(*send_at, f"send/receive mismatch: {send.label()} meets "
                                f"{recv.label()} on rank {recv_at[0]} ({section} {idx})")
        return True

    def allreduce_ready(self, r: int, ins: Instr) -> tuple[int, ...] | None:
        group = tuple(ins.group or ())
        if r not in group:
            raise self.fail(r, self.pc[r], "ALLREDUCE group does not contain this rank")
        for g in group:
            if self.pc[g] >= len(self.streams[g]):
                return None
            other = self.streams[g][self.pc[g]]
            if other.op != "ALLREDUCE":
                return None
            if other.stage != ins.stage or tuple(other.group or ()) != group:
                return None  # that rank is in another collective first; may resolve
        return group

    def report_stuck(self) -> None:
        stuck = [r for r in range(len(self.streams)) if self.pc[r] < len(self.streams[r])]
        if not stuck:
            return
        parts = []
        for r in stuck:
            section, idx = self.locate(r, self.pc[r])
            parts.append(f"rank {r} at {section} {idx} ({self.streams[r][self.pc[r]].label()})")
        raise self.fail(stuck[0], self.pc[stuck[0]], "deadlock: " + "; ".join(parts))


def check_deadlock_free(streams: Sequence[Sequence[Instr]], locate: Locate) -> None:
    """Raise VerifyError naming a mismatch, or every rank's blocked instruction."""
    _Checker(streams, locate).run()


def place_receives(streams: list[list[Instr]]) -> None:
    """Make lowered streams deadlock-free by posting receives earlier, in place.

    Runs the check; wherever ranks would wait on each other's sends, the
    receive the oldest waiting send needs joins its receiver's current batch.
    Raises VerifyError if that cannot untie the wait.
    """
    locate = lambda r, i: ("stream", i)  # noqa: E731
    while True:
        try:
            _Checker(streams, locate, repair=True).run()
            return
        except _Reorder as move:
            _receive_first(streams, move, locate)


def _receive_first(streams: list[list[Instr]], move: _Reorder, locate: Locate) -> None:
    """Two message kinds share a channel (a rank holding stages s and s+2 of one
    pipeline sends both activations and gradients to the same neighbour): the
    receiver takes them in the order they are sent, by moving the matching
    receive in front of the one it expected. The sender has already posted that
    message, so the receiver only waits for data that is on its way."""
    seq = streams[move.rank]
    for j in range(move.index + 1, len(seq)):
        if seq[j].op in ("RECV_ACT", "RECV_GRAD") and matches(move.send, seq[j]):
            seq.insert(move.index, seq.pop(j))
            return
    raise VerifyError(f"send/receive mismatch: {move.send.label()} is never received",
                      rank=move.rank, index=move.index, section="stream",
                      instr=seq[move.index].label())
