"""Deadlock freedom: the replay core (`schedc.replay`) run without an observer,
and the repair the lowering uses to post receives early enough.

The blocking and matching rules are the replay core's (docs/programs.md,
"Execution rules"): batches of consecutive sends and receives, messages
matched in order per (sender, receiver, pipeline) channel, collectives in one
order per group. The check is linear in the number of instructions.
"""

from __future__ import annotations

from collections.abc import Sequence

from schedc.errors import VerifyError
from schedc.instructions import RECV_OPS, SEND_OPS, message_key
from schedc.overlap import DEFAULT, Overlap
from schedc.program import Instr
from schedc.replay import COLL, MSG, Locate, Replay


def matches(send: Instr, recv: Instr) -> bool:
    """Does `recv` receive what `send` sends?"""
    return (send.op in SEND_OPS and recv.op in RECV_OPS
            and message_key(send.op, send.stage, send.mb, send.pipeline)
            == message_key(recv.op, recv.stage, recv.mb, recv.pipeline))


class _Reorder(Exception):
    """Repair: the receiver must take `send`'s message before the one at index."""

    def __init__(self, rank: int, index: int, send: Instr) -> None:
        super().__init__()
        self.rank, self.index, self.send = rank, index, send


class _Repairing(Replay):
    """The replay, repairing what `place_receives` may repair instead of failing."""

    def mismatch(self, sr: int, si: int, rr: int, ri: int) -> None:
        raise _Reorder(rr, ri, self.streams[sr][si])

    def run(self) -> None:
        while True:
            self.drain()
            if not self.hoist_receives():
                break
        self.report_stuck()

    def hoist_receives(self) -> bool:
        """Move the receive each stuck send waits for into its receiver's
        current batch. The send is already posted, so the receiver only waits
        for a message that will come; per-channel order is kept because every
        earlier receive on that channel has been matched already."""
        moved = False
        for r in self.stuck():
            if self.batch_end[r] < 0:
                continue
            for i in range(self.pc[r], self.batch_end[r]):
                _, _, chan, is_send, what = self.code[r][i]
                # only the oldest unmatched send of the channel: the next receive meets it
                waiting = self.sends.get(chan)
                if is_send and waiting and waiting[0] == (r, i):
                    moved |= self._hoist(chan, what, r)
        return moved

    def _hoist(self, chan: tuple, what: tuple, sender: int) -> bool:
        q = chan[1]
        seq, code = self.streams[q], self.code[q]
        posted = self.batch_end[q] >= 0
        start = self.batch_end[q] if posted else self.pc[q]
        for j in range(start, len(seq)):
            if code[j][0] == MSG and not code[j][3] and code[j][2] == chan and \
                    code[j][4] == what:
                break
        else:
            return False
        if start < len(code) and code[start][0] == COLL:
            self.gathering.get(code[start][2], {}).pop(q, None)
        seq.insert(start, seq.pop(j))
        code.insert(start, code.pop(j))
        self.encode(q, start, j + 1, code)  # only the shifted instructions
        if posted:
            self.post(q, start, start + 1)
            self.batch_end[q] = start + 1
        self.wake(q)
        self.wake(sender)
        return True


def check_deadlock_free(streams: Sequence[Sequence[Instr]], locate: Locate,
                        rule: Overlap = DEFAULT) -> None:
    """Raise VerifyError naming a mismatch, or every rank's blocked instruction,
    under the overlap rule `rule` (schedc/overlap.py)."""
    Replay(streams, locate=locate, rule=rule).run()


def place_receives(streams: list[list[Instr]]) -> None:
    """Make lowered streams deadlock-free by posting receives earlier, in place.

    Runs the replay; wherever ranks would wait on each other's sends, the
    receive the oldest waiting send needs joins its receiver's current batch,
    and the replay goes on from there. Where two message kinds share a channel
    and arrive in another order than the receiver expects, the receive is
    moved: for every channel at once before the replay
    (_receives_in_send_order), and should a hoist still bring one out of
    order, there and then, with the replay restarted. Raises VerifyError if
    that cannot untie the wait.
    """
    _receives_in_send_order(streams)
    while True:
        try:
            _Repairing(streams).run()
            return
        except _Reorder as move:
            _receive_first(streams, move)


def _receives_in_send_order(streams: list[list[Instr]]) -> None:
    """The repair of `_receive_first`, made for every channel before the
    replay rather than one replay per repair (a rank holding two stages of a
    pipeline, as ZB-V's, would otherwise restart the replay about once per
    micro-batch): wherever the k-th receive of a channel is not what its k-th
    send carries, the receive that is moves in front of it. Each rank's stream
    is a linked list while it is repaired, so the pass is linear in the
    instructions and the moves."""
    sent: dict[tuple, list[tuple]] = {}
    for r, seq in enumerate(streams):
        for ins in seq:
            if ins.op in SEND_OPS:
                sent.setdefault((r, ins.peer, ins.pipeline), []).append(
                    message_key(ins.op, ins.stage, ins.mb, ins.pipeline))
    for q, seq in enumerate(streams):
        received: dict[tuple, list[int]] = {}
        for i, ins in enumerate(seq):
            if ins.op in RECV_OPS:
                received.setdefault((ins.peer, q, ins.pipeline), []).append(i)
        keys = {i: message_key(seq[i].op, seq[i].stage, seq[i].mb, seq[i].pipeline)
                for order in received.values() for i in order}
        links: list[list[int]] | None = None  # [prev, next] per stream index
        for chan, order in received.items():
            want = sent.get(chan, [])
            if len(want) != len(order) or all(
                    keys[i] == w for i, w in zip(order, want, strict=True)):
                continue  # in order, or the replay reports what is missing
            if links is None:
                links = [[i - 1, i + 1] for i in range(len(seq))]
            _move_receives(order, want, keys, links)
        if links is not None:
            seq[:] = _relink(seq, links)


def _move_receives(order: list[int], want: list[tuple], keys: dict[int, tuple],
                   links: list[list[int]]) -> None:
    for k, key in enumerate(want):
        if keys[order[k]] == key:
            continue
        j = next((j for j in range(k + 1, len(order)) if keys[order[j]] == key), None)
        if j is None:
            return  # never received: the replay names it
        x, y = order.pop(j), order[k]
        order.insert(k, x)
        px, nx = links[x]  # unlink x, then link it in front of y
        if px >= 0:
            links[px][1] = nx
        if nx < len(links):
            links[nx][0] = px
        py = links[y][0]
        links[x] = [py, y]
        if py >= 0:
            links[py][1] = x
        links[y][0] = x


def _relink(seq: list[Instr], links: list[list[int]]) -> list[Instr]:
    heads = [i for i, (prev, _) in enumerate(links) if prev < 0]
    out, i = [], heads[0]
    while i < len(seq):
        out.append(seq[i])
        i = links[i][1]
    return out


def _receive_first(streams: list[list[Instr]], move: _Reorder) -> None:
    """Two message kinds share a channel (a rank holding stages s and s+2 of one
    pipeline sends both activations and gradients to the same neighbour): the
    receiver takes them in the order they are sent, by moving the matching
    receive in front of the one it expected. The sender has already posted that
    message, so the receiver only waits for data that is on its way."""
    seq = streams[move.rank]
    for j in range(move.index + 1, len(seq)):
        if seq[j].op in RECV_OPS and matches(move.send, seq[j]):
            seq.insert(move.index, seq.pop(j))
            return
    raise VerifyError(f"send/receive mismatch: {move.send.label()} is never received",
                      rank=move.rank, index=move.index, section="stream",
                      instr=seq[move.index].label())
