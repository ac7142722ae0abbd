"""Deadlock freedom: the replay core (`schedc.replay`) run without an observer,
and the repair the lowering uses to post receives early enough.

The blocking and matching rules are the replay core's (docs/programs.md,
"Execution rules"): batches of consecutive sends and receives, messages
matched in order per (sender, receiver, pipeline) channel, collectives in one
order per group. The check is linear in the number of instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress
from operator import attrgetter, sub

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
        for chan, (_, keys) in _by_channel(seq, r, True).items():
            sent[chan] = keys
    for q, seq in enumerate(streams):
        received = _by_channel(seq, q, False)
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
# own stage, receives the producer's (their stage less the hop). The pipeline,
# the key's last part, is the channel's: left out of the keys compared per channel.
_SENDS, _RECEIVES = frozenset(SEND_OPS), frozenset(RECV_OPS)
_MESSAGE = {op: TABLE[op].message for op in (*SEND_OPS, *RECV_OPS)}
_HOP = {**dict.fromkeys(SEND_OPS, 0), **{op: TABLE[op].hop for op in RECV_OPS}}
_OP, _PEER_PIPELINE = attrgetter("op"), attrgetter("peer", "pipeline")
_STAGE, _MB = attrgetter("stage"), attrgetter("mb")


def _by_channel(seq: list[Instr], rank: int, sends: bool
                ) -> dict[tuple, tuple[list[int], list[tuple]]]:
    """Per channel (in order of its first message), the stream index and the
    message key (message, producer stage, mb) of each of `rank`'s sends (or
    receives), in stream order; made a column at a time (C loops: millions of
    messages in a large run)."""
    ops = list(map(_OP, seq))
    where = list(compress(range(len(seq)), map((_SENDS if sends else _RECEIVES).__contains__, ops)))
    mine = list(map(seq.__getitem__, where))
    ends = list(map(_PEER_PIPELINE, mine))  # (peer, pipeline) of each message
    out = {}
    for peer, pipeline in dict.fromkeys(ends):
        on = list(map((peer, pipeline).__eq__, ends))
        these = list(compress(mine, on))
        kinds = list(map(_OP, these))
        stages = list(map(_STAGE, these))
        if not sends:  # the producer's stage
            stages = list(map(sub, stages, map(_HOP.__getitem__, kinds)))
        keys = list(zip(map(_MESSAGE.__getitem__, kinds), stages, map(_MB, these),
                        strict=True))
        chan = (rank, peer, pipeline) if sends else (peer, rank, pipeline)
        out[chan] = (list(compress(where, on)), keys)
    return out


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
