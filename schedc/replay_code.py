"""The replay core's encoding of a rank's stream (schedc.replay).

Per instruction: its kind (local, message, collective); the end of the run
of its kind it stands in (a batch of messages, a stretch of local ops; a
collective stands alone); its channel (sender, receiver, pipeline), or a
collective's group; whether it sends; and a message's key as one integer
(a collective's stage is read from its instruction: they are few),
the micro-batch times KEY_SHIFT plus an id of (message, producer stage,
pipeline) (`instructions.message_key`'s parts). Parallel arrays, not a tuple
per instruction: about 22 bytes an instruction instead of about 180, for the
millions a large compile replays. A section of a RunStream (a program's
prologue, body or epilogue) is encoded once and copied for each repetition,
its keys shifted by the repetition's micro-batches.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

from schedc.instructions import COLLECTIVE, MESSAGE, TABLE
from schedc.program import Instr

LOCAL, MSG, COLL = 0, 1, 2
# The table's rows as the encoding reads them: op -> (kind, is send, message, hop).
_ROWS = {op: (MSG if row.kind == MESSAGE else COLL if row.kind == COLLECTIVE else LOCAL,
              row.send, row.message, row.hop) for op, row in TABLE.items()}
KEY_SHIFT = 1 << 24  # ids of (message, producer stage, pipeline) stay below it
_NO_MB = -(1 << 62)  # a message without a micro-batch (refused by the field check)

Fail = Callable[[int, str], Exception]  # (index in the stream, reason) -> the error


class Keys:
    """What a replay and its forks share: the integer ids of (message,
    producer stage, pipeline) (their keys are compared), each channel's one
    tuple, and each section's encoding (per rank and section)."""

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {}
        self.channels: dict[tuple, tuple] = {}
        self.sections: dict[tuple[int, int], tuple[Sequence[Instr], RankCode]] = {}

    def of(self, message: str, stage: int, pipeline: int | None) -> int:
        part = (message, stage, pipeline)
        i = self.ids.get(part)
        if i is None:
            i = self.ids[part] = len(self.ids)
            assert i < KEY_SHIFT, "more message kinds, stages and pipelines than keys"
        return i

    def decode(self, key: int) -> tuple:
        """A message key's parts: (message, producer stage, mb, pipeline), as
        `instructions.message_key` gives them (the ids depend on the order the
        replay met them; the parts do not)."""
        mb, ident = divmod(key - _NO_MB, KEY_SHIFT) if key < 0 else divmod(key, KEY_SHIFT)
        if not hasattr(self, "_parts") or len(self._parts) != len(self.ids):
            self._parts = {i: part for part, i in self.ids.items()}
        message, stage, pipeline = self._parts[ident]
        return message, stage, None if key < 0 else mb, pipeline


class RankCode:
    """One rank's encoding (see the module's docstring), index by index."""

    __slots__ = ("kind", "end", "chan", "send", "key")

    def __init__(self, n: int = 0) -> None:
        self.kind = bytearray(n)
        self.end = array("i", bytes(4 * n))  # indices: 4 bytes
        self.chan: list = [None] * n
        self.send = bytearray(n)
        self.key = array("q", bytes(8 * n))

    def __len__(self) -> int:
        return len(self.kind)

    def entries(self, keys: Keys) -> list[tuple]:
        """Per instruction (kind, end, channel, is send, message key's parts or
        None), comparable across replays (tests, debugging)."""
        return [(k, self.end[i], self.chan[i], bool(self.send[i]),
                 keys.decode(self.key[i]) if k == MSG else None)
                for i, k in enumerate(self.kind)]

    def head(self, n: int) -> RankCode:
        """The encoding of the first n instructions alone: a copy of the first
        n entries, the last run ending at n."""
        new = RankCode()
        new.kind, new.end, new.chan = self.kind[:n], self.end[:n], self.chan[:n]
        new.send, new.key = self.send[:n], self.key[:n]
        ends = new.end
        i = n - 1
        while i >= 0 and ends[i] > n:
            ends[i] = n
            i -= 1
        return new

    def truncate(self, n: int) -> None:
        """Back to the encoding of the first n instructions alone (head, in place)."""
        for name in self.__slots__:
            del getattr(self, name)[n:]
        ends = self.end
        i = n - 1
        while i >= 0 and ends[i] > n:
            ends[i] = n
            i -= 1

    def grow(self, n: int) -> None:
        """n more entries, to be encoded."""
        self.kind.extend(bytes(n))
        self.end.extend(array("i", bytes(4 * n)))
        self.chan.extend([None] * n)
        self.send.extend(bytes(n))
        self.key.extend(array("q", bytes(8 * n)))

    def append_shifted(self, part: RankCode, base: int, dkey: int) -> None:
        """`part` (encoded at index 0) appended at index `base`, its keys
        shifted by dkey; then the run before `base` joined to part's first."""
        self.kind.extend(part.kind)
        self.end.extend(array("i", [e + base for e in part.end]))
        self.chan.extend(part.chan)
        self.send.extend(part.send)
        self.key.extend(array("q", [k + dkey for k in part.key]) if dkey else part.key)
        self.join(base)

    def join(self, at: int) -> None:
        """The run ending at `at` goes on into the run starting there, if it is
        of the same kind (a batch, or local ops, across a section's edge)."""
        if not 0 < at < len(self.kind):
            return
        kind, end = self.kind[at], self.end[at]
        if kind == COLL or self.kind[at - 1] != kind:
            return
        i = at - 1
        while i >= 0 and self.kind[i] == kind and self.end[i] == at:
            self.end[i] = end
            i -= 1

    def move(self, j: int, start: int) -> None:
        """Entry j moved to index start (< j), and the ends of entries
        start..j made again (those of the runs each stands in now: `encode`'s
        rule); every other field is the entry's own."""
        for name in self.__slots__:
            seq = getattr(self, name)
            value = seq.pop(j)
            seq.insert(start, value)
        kinds, ends = self.kind, self.end
        prev, end = (kinds[j + 1], ends[j + 1]) if j + 1 < len(kinds) else (-1, j + 1)
        for i in range(j, start - 1, -1):
            kind = kinds[i]
            if kind == COLL or prev != kind:
                end = i + 1
            ends[i] = end
            prev = kind


def encode(code: RankCode, r: int, ranks: int, instrs: Sequence[Instr], shifts: list | None,
           lo: int, hi: int, keys: Keys, fail: Fail) -> None:
    """Encode instructions lo..hi-1 of rank r's stream into `code` (entries
    from hi on are encoded already: a run going on past hi continues). The
    entries are new (RankCode, grow): a local op's needs its end alone.
    instrs[i - lo] is instruction i as the program holds it, shifts[i - lo]
    its micro-batch shift (None: no shift)."""
    kinds, ends, chans, sends, mkeys = code.kind, code.end, code.chan, code.send, code.key
    interned, ids, key_of = keys.channels, keys.ids, keys.of
    if hi < len(code):  # continue the run that starts at hi
        prev, end = kinds[hi], ends[hi]
    else:
        prev, end = -1, hi
    for i in range(hi - 1, lo - 1, -1):
        ins = instrs[i - lo]
        row = _ROWS.get(ins.op)
        if row is None:
            raise fail(i, f"unknown op {ins.op!r}: no row in the instruction table")
        kind, is_send, message, hop = row
        if kind == MSG:
            peer = ins.peer
            if peer is None or not 0 <= peer < ranks or peer == r:
                raise fail(i, f"invalid peer {peer}")
            if prev != MSG:
                end = i + 1
            chan = (r, peer, ins.pipeline) if is_send else (peer, r, ins.pipeline)
            chans[i] = interned.setdefault(chan, chan)
            mb = ins.mb
            part = (message, ins.stage if is_send else ins.stage - hop, ins.pipeline)
            ident = ids.get(part)
            if ident is None:
                ident = key_of(*part)
            if mb is None:
                mkeys[i] = _NO_MB + ident
            else:
                mkeys[i] = (mb + (shifts[i - lo] if shifts is not None else 0)) * KEY_SHIFT \
                    + ident
            sends[i] = is_send
            ends[i] = end
            kinds[i] = MSG
        elif kind == COLL:
            group = tuple(ins.group or ())
            if r not in group:
                raise fail(i, "ALLREDUCE group does not contain this rank")
            chans[i] = group  # its stage is read from the instruction (rare)
            ends[i] = i + 1
            kinds[i] = COLL
        else:  # the other fields as made (zero, None)
            if prev != LOCAL:
                end = i + 1
            ends[i] = end
        prev = kind
