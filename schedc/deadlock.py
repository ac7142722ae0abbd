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
from schedc.instructions import RECV_OPS, SEND_OPS, TABLE, message_key
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
            code = self.code[r]
            for i in range(self.pc[r], self.batch_end[r]):
                chan = code.chan[i]
                # only the oldest unmatched send of the channel: the next receive meets it
                waiting = self.sends.get(chan)
                if code.send[i] and waiting and waiting[0] == i:
                    moved |= self._hoist(chan, code.key[i], r)
        return moved

    def _hoist(self, chan: tuple, what: int, sender: int) -> bool:
        q = chan[1]
        seq, code = self.streams[q], self.code[q]
        posted = self.batch_end[q] >= 0
        start = self.batch_end[q] if posted else self.pc[q]
        kinds, sent, chans, keys = code.kind, code.send, code.chan, code.key
        for j in range(start, len(seq)):
            if kinds[j] == MSG and not sent[j] and chans[j] == chan and keys[j] == what:
                break
        else:
            return False
        if start < len(code) and kinds[start] == COLL:
            self.gathering.get(chans[start], {}).pop(q, None)
        seq.insert(start, seq.pop(j))
        code.move(j, start)  # its entry moved, and the shifted entries' ends made again
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


def place_receives(streams: list[list[Instr]], repair: bool = True) -> None:
    """Make lowered streams deadlock-free by posting receives earlier, in place.
    (`repair=False`: the receives in send order only, no replay: the caller
    proves the result some other way, compiler._proven_unrepaired.)

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
    while repair:
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
            message = _SENT.get(ins.op)
            if message is not None:
                chan = (r, ins.peer, ins.pipeline)
                keys = sent.get(chan)
                if keys is None:
                    keys = sent[chan] = []
                keys.append((message, ins.stage, ins.mb, ins.pipeline))
    for q, seq in enumerate(streams):
        # per channel: the stream index and the message key of each receive
        received: dict[tuple, tuple[list[int], list[tuple]]] = {}
        for i, ins in enumerate(seq):
            row = _RECEIVED.get(ins.op)
            if row is not None:
                chan = (ins.peer, q, ins.pipeline)
                got = received.get(chan)
                if got is None:
                    got = received[chan] = ([], [])
                got[0].append(i)
                got[1].append((row[0], ins.stage - row[1], ins.mb, ins.pipeline))
        links: tuple[list[int], list[int]] | None = None  # prev, next per stream index
        for chan, (order, keys) in received.items():
            want = sent.get(chan, [])
            if len(want) != len(order) or keys == want:
                continue  # in order, or the replay reports what is missing
            if links is None:
                links = list(range(-1, len(seq) - 1)), list(range(1, len(seq) + 1))
            _move_receives(order, keys, want, *links)
        if links is not None:
            seq[:] = _relink(seq, links[1], links[0].index(-1))


# The message key's parts by op (instructions.message_key): sends carry their
# own stage, receives the producer's (their stage less the hop).
_SENT = {op: TABLE[op].message for op in SEND_OPS}
_RECEIVED = {op: (TABLE[op].message, TABLE[op].hop) for op in RECV_OPS}


def _move_receives(order: list[int], keys: list[tuple], want: list[tuple],
                   prev: list[int], nxt: list[int]) -> None:
    for k, key in enumerate(want):
        if keys[k] == key:
            continue
        j = next((j for j in range(k + 1, len(order)) if keys[j] == key), None)
        if j is None:
            return  # never received: the replay names it
        x, y = order.pop(j), order[k]
        order.insert(k, x)
        keys.insert(k, keys.pop(j))
        px, nx = prev[x], nxt[x]  # unlink x, then link it in front of y
        if px >= 0:
            nxt[px] = nx
        if nx < len(nxt):
            prev[nx] = px
        py = prev[y]
        prev[x], nxt[x] = py, y
        if py >= 0:
            nxt[py] = x
        prev[y] = x


def _relink(seq: list[Instr], nxt: list[int], head: int) -> list[Instr]:
    out, i, n = [], head, len(seq)
    append = out.append
    while i < n:
        append(seq[i])
        i = nxt[i]
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
