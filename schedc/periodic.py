"""Split an asynchronous run into prologue, body and epilogue.

Given each rank's lowered stream for B batches, the body on rank r is the
earliest window from which the stream repeats itself, each repetition shifted
by one period (micro-batches + period.microbatches, versions + period.steps),
for as long as possible. Its length L_r is read off the run itself: the
distance from a steady-state compute instruction to its copy one period later.
Ranks then agree on a common number n of bodies (surplus repetitions move into
the prologue), so that prologue + body x n + epilogue is the run. The verifier
proves the programs for 1, 2 and 3 repetitions.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter, eq

from schedc.errors import VerifyError
from schedc.program import (
    COMPUTE_OPS,
    MB_SHIFTED,
    VERSION_SHIFTED,
    Instr,
    Period,
    RankProgram,
    shift_all,
)

ANCHORS = (0.35, 0.5, 0.65)  # where in the run to look for the steady state
# A run showing its body once (split_run's one_body) is split only where, on
# every rank, the drain goes on repeating the body for at least this much of
# it. A settled run's drain repeats much of its body (0.44 to 0.9 of it for
# paci, pipedream-2bw and AMDP from 4 x 8 to 32 x 256). Where the run is still
# settling, a body seen once need not be the steady state, and the stretch
# found was spurious: in the 15 of 339 random specs whose one-body split
# differed from the two-body run's, 0.033 of a body at most; with this bound,
# none of 423 differed (2026-11-29). Below it, the longer run is lowered.
ONE_BODY_EVIDENCE = 0.25

# An instruction's fields other than the two a repetition shifts: equal shapes,
# equal micro-batches and equal versions make equal instructions.
_SHAPE = attrgetter(*(f.name for f in fields(Instr)
                      if f.name not in (MB_SHIFTED, VERSION_SHIFTED)))
_MB, _VERSION, _OP = attrgetter(MB_SHIFTED), attrgetter(VERSION_SHIFTED), attrgetter("op")


class _Columns:
    """A rank's stream as columns, for comparing each instruction with the one
    a candidate body length later (made once per rank, for every candidate):
    the fields a repetition does not shift (a tuple per instruction), the
    micro-batches and versions, and both shifted by one period. Comparing
    the columns (C loops) gives Instr equality after Instr.shifted."""

    def __init__(self, seq: Sequence[Instr], period: Period) -> None:
        self.n = len(seq)
        self.shape = list(map(_SHAPE, seq))
        self.mb = list(map(_MB, seq))
        self.version = list(map(_VERSION, seq))
        dm, dv = period.microbatches, period.steps
        self.mb_later = [None if mb is None else mb + dm for mb in self.mb]
        self.version_later = [None if v is None else v + dv for v in self.version]
        self.compute = list(itertools.compress(
            range(self.n), map(COMPUTE_OPS.__contains__, map(_OP, seq))))

    def repeats(self, length: int) -> bytes:
        """Byte i is 1 where instruction i + length equals instruction i
        shifted once (i < n - length), else 0."""
        if length >= self.n:
            return b""
        same = -1  # every bit set; each column's bytes of 0 and 1 "and"-ed in
        for col, later in ((self.shape, self.shape), (self.mb, self.mb_later),
                           (self.version, self.version_later)):
            same &= int.from_bytes(bytes(map(eq, col[length:], later)), "big")
        return same.to_bytes(self.n - length, "big")

    def later_key(self, i: int) -> tuple:
        return self.shape[i], self.mb_later[i], self.version_later[i]


def _best_start(seq: Sequence[Instr], length: int, period: Period,
                columns: _Columns | None = None) -> tuple[int, int]:
    """(start, repetitions) with the most repetitions, earliest start: the
    longest stretch where every instruction equals the one `length` earlier
    shifted once, cut to whole bodies, and the first stretch that long.
    columns: _Columns(seq, period), when already made."""
    columns = columns or _Columns(seq, period)
    if length > columns.n:
        return 0, 0
    same = columns.repeats(length)
    more = max(map(len, same.split(b"\x00"))) // length  # repetitions after the first
    return (same.find(b"\x01" * (more * length)) if more else 0), 1 + more


def _partial_start(columns: _Columns, length: int) -> tuple[int, int, int] | None:
    """(start, repetitions, stretch) where a run too short to show its body
    twice may hold it once: the longest stretch of instructions equal to
    their copies `length` later (its start, the earliest of the longest), as
    _best_start has it where the stretch holds a whole body; where it holds
    less (the run ends first), one repetition from that stretch's start, the
    stretch the evidence. None: no instruction is followed by its copy."""
    same = columns.repeats(length)
    stretch = max(map(len, same.split(b"\x00")))
    if not stretch:
        return None
    more = stretch // length
    return same.find(b"\x01" * (more * length or stretch)), 1 + more, stretch


def body_lengths(seq: Sequence[Instr], period: Period,
                 columns: _Columns | None = None) -> list[int]:
    """Candidate body lengths: from compute instructions at a few points of the
    run to their copies one period later. columns: _Columns(seq, period),
    when already made."""
    c = columns or _Columns(seq, period)
    compute = c.compute
    keys = zip(map(c.shape.__getitem__, compute), map(c.mb.__getitem__, compute),
               map(c.version.__getitem__, compute), strict=True)
    where = dict(zip(keys, compute, strict=True))  # the last of equal keys, as a loop would
    out: list[int] = []
    for frac in ANCHORS:
        k = bisect.bisect_left(compute, int(frac * c.n))
        if k < len(compute):
            i = compute[k]
            j = where.get(c.later_key(i))
            if j is not None and j > i and j - i not in out:
                out.append(j - i)
    return out


def split_run(streams: Sequence[Sequence[Instr]], batches: int, period: Period,
              one_body: bool = False) -> tuple[list[RankProgram], int]:
    """Programs from one run of `batches` periods.

    Returns the programs and c, the periods a run has beyond its body
    repetitions: n repetitions run n + c periods. `one_body`: the run may
    hold its body only once (a run a period longer would show it twice), so
    a rank whose run shows no whole repetition starts its body where its
    longest stretch of repeating instructions starts (_partial_start), if
    that stretch holds ONE_BODY_EVIDENCE of a body, and among candidate
    lengths so placed the longest stretch is kept; the verifier, which
    proves the runs of 1, 2 and 3 bodies, is the check.
    """
    starts, repeats = [], []
    for r, seq in enumerate(streams):
        columns = _Columns(seq, period)  # once per rank, for every candidate length
        reps, _, back, length = _rank_body(seq, period, columns, one_body)
        if reps < 1:
            raise VerifyError(f"the schedule does not settle into a repeating body within "
                              f"{batches} periods", rank=r)
        starts.append((-back, reps, length))
        repeats.append(columns.repeats(length))
    bodies = min(reps for _, reps, _ in starts)
    programs = []
    for r, (seq, (start, reps, length)) in enumerate(zip(streams, starts, strict=True)):
        start += (reps - bodies) * length
        body = tuple(seq[start:start + length])
        epilogue = _epilogue(seq, start + bodies * length, length, bodies - 1, repeats[r],
                             period)
        programs.append(RankProgram(r, tuple(seq[:start]), body, tuple(epilogue)))
    return programs, batches - bodies


def _rank_body(seq: Sequence[Instr], period: Period, columns: _Columns, one_body: bool
               ) -> tuple[int, int, int, int]:
    """(repetitions, stretch, -start, length) of the rank's best body: the
    most repetitions, then (one_body, where no candidate repeats whole; 0
    otherwise) the longest stretch, then the earliest start and the longest
    body. A one_body candidate whose stretch is short of ONE_BODY_EVIDENCE is
    none."""
    best = (0, 0, 0, 0)
    for length in body_lengths(seq, period, columns):
        if not one_body:
            start, reps = _best_start(seq, length, period, columns)
            best = max(best, (reps, 0, -start, length))
            continue
        found = _partial_start(columns, length)
        if found is not None and found[2] >= ONE_BODY_EVIDENCE * length:
            start, reps, stretch = found
            best = max(best, (reps, 0 if reps > 1 else stretch, -start, length))
    return best


def _epilogue(seq: Sequence[Instr], lo: int, length: int, back: int, same: bytes,
              period: Period) -> list[Instr]:
    """seq[lo:] shifted `back` periods back (the epilogue is written for one
    body). Where the run went on repeating itself (`same`, _Columns.repeats of
    `length`: instruction i + length equals instruction i shifted once, back
    times over), the shifted instruction is the one `back` bodies earlier:
    shared, not copied (most of the drain, in a large run)."""
    n, step = len(seq), back * length
    if not back or lo >= n:
        return list(seq[lo:])
    reused = -1  # every bit set; the tail's byte j is 1 where seq[lo + j - step] is its copy
    for k in range(1, back + 1):
        reused &= int.from_bytes(same[lo - k * length:n - k * length], "big")
    mask = reused.to_bytes(n - lo, "big")
    out: list[Instr] = []
    j = 0
    while j < n - lo:
        if mask[j]:
            end = mask.find(b"\x00", j)
            end = n - lo if end < 0 else end
            out += seq[lo + j - step:lo + end - step]
        else:
            end = mask.find(b"\x01", j)
            end = n - lo if end < 0 else end
            out += shift_all(seq[lo + j:lo + end], -back * period.microbatches,
                             -back * period.steps)
        j = end
    return out
