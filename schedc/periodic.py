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

from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter

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


# Every field of an instruction, as a tuple: equal tuples, equal instructions.
_FIELDS = tuple(f.name for f in fields(Instr))
_key = attrgetter(*_FIELDS)
_MB, _VERSION = _FIELDS.index(MB_SHIFTED), _FIELDS.index(VERSION_SHIFTED)


def _repeat_runs(seq: Sequence[Instr], length: int, period: Period,
                 keys: tuple[list[tuple], list[tuple]] | None = None) -> list[int]:
    """runs[i]: how many consecutive j >= i have seq[j + L] == seq[j] shifted once.
    keys: _keys(seq, period), when already made."""
    n = len(seq)
    own, later = keys or _keys(seq, period)
    runs = [0] * (n + 1)
    for i in range(n - length - 1, -1, -1):
        runs[i] = runs[i + 1] + 1 if own[i + length] == later[i] else 0
    return runs


def _keys(seq: Sequence[Instr], period: Period) -> tuple[list[tuple], list[tuple]]:
    """_key of every instruction, and of each one period later (Instr.shifted,
    on tuples), made column by column."""
    own = list(map(_key, seq))
    columns = list(zip(*own, strict=True)) or [()] * len(_FIELDS)
    dm, dv = period.microbatches, period.steps
    columns[_MB] = [None if mb is None else mb + dm for mb in columns[_MB]]
    columns[_VERSION] = [None if v is None else v + dv for v in columns[_VERSION]]
    return own, list(zip(*columns, strict=True))


def _best_start(seq: Sequence[Instr], length: int, period: Period,
                keys: tuple[list[tuple], list[tuple]] | None = None) -> tuple[int, int]:
    """(start, repetitions) with the most repetitions, earliest start."""
    runs = _repeat_runs(seq, length, period, keys)[:max(0, len(seq) - length + 1)]
    if not runs:
        return 0, 0
    more = max(runs) // length  # repetitions after the first
    return next(x for x, run in enumerate(runs) if run >= more * length), 1 + more


def body_lengths(seq: Sequence[Instr], period: Period,
                 keys: tuple[list[tuple], list[tuple]] | None = None) -> list[int]:
    """Candidate body lengths: from compute instructions at a few points of the
    run to their copies one period later. keys: _keys(seq, period), when
    already made."""
    own, later = keys or _keys(seq, period)
    where = {own[i]: i for i, ins in enumerate(seq) if ins.op in COMPUTE_OPS}
    out: list[int] = []
    for frac in ANCHORS:
        for i in range(int(frac * len(seq)), len(seq)):
            if seq[i].op in COMPUTE_OPS:
                j = where.get(later[i])
                if j is not None and j > i and j - i not in out:
                    out.append(j - i)
                break
    return out


def split_run(streams: Sequence[Sequence[Instr]], batches: int, period: Period
              ) -> tuple[list[RankProgram], int]:
    """Programs from one run of `batches` periods.

    Returns the programs and c, the periods a run has beyond its body
    repetitions: n repetitions run n + c periods.
    """
    starts = []
    for r, seq in enumerate(streams):
        best = (0, 0, 0)  # (repetitions, -start, length)
        keys = _keys(seq, period)  # once per rank, for every candidate length
        for length in body_lengths(seq, period, keys):
            start, reps = _best_start(seq, length, period, keys)
            best = max(best, (reps, -start, length))
        if best[0] < 1:
            raise VerifyError(f"the schedule does not settle into a repeating body within "
                              f"{batches} periods", rank=r)
        starts.append((-best[1], best[0], best[2]))
    bodies = min(reps for _, reps, _ in starts)
    programs = []
    for r, (seq, (start, reps, length)) in enumerate(zip(streams, starts, strict=True)):
        start += (reps - bodies) * length
        body = tuple(seq[start:start + length])
        back = -(bodies - 1)
        tail = seq[start + bodies * length:]
        epilogue = tuple(shift_all(tail, back * period.microbatches, back * period.steps))
        programs.append(RankProgram(r, tuple(seq[:start]), body, epilogue))
    return programs, batches - bodies
