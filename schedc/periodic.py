"""Split unrolled asynchronous streams into prologue, body and epilogue.

Given each rank's stream for B batches and the number of instructions L_r one
more batch adds, the body on rank r is the earliest window of L_r instructions
from which the stream repeats itself, each repetition shifted by one period
(micro-batches + m, versions + 1), for as long as possible. Ranks then agree on
a common number n of bodies (surplus repetitions move into the prologue), so
that prologue + body x N + epilogue is the run of N + (B - n) batches. The
caller proves that claim on longer runs (`check_periodic`).
"""

from __future__ import annotations

from collections.abc import Sequence

from schedc.errors import VerifyError
from schedc.program import Instr, Period, RankProgram


def _repeat_runs(seq: Sequence[Instr], length: int, period: Period) -> list[int]:
    """runs[i]: how many consecutive j >= i have seq[j + L] == seq[j] shifted once."""
    n = len(seq)
    runs = [0] * (n + 1)
    for i in range(n - length - 1, -1, -1):
        same = seq[i + length] == seq[i].shifted(period.microbatches, period.steps)
        runs[i] = runs[i + 1] + 1 if same else 0
    return runs


def _best_start(seq: Sequence[Instr], length: int, period: Period) -> tuple[int, int]:
    """(start, repetitions) with the most repetitions, earliest start."""
    runs = _repeat_runs(seq, length, period)
    best = (0, 0)
    for x in range(0, len(seq) - length + 1):
        reps = 1 + runs[x] // length
        if reps > best[1]:
            best = (x, reps)
    return best


def split_periodic(
    short: Sequence[Sequence[Instr]], longer: Sequence[Sequence[Instr]], batches: int,
    period: Period,
) -> tuple[list[RankProgram], int]:
    """Programs from streams of `batches` and `batches + 1` batches.

    Returns the programs and c, the batches a run has beyond its body
    repetitions: N repetitions run N + c batches.
    """
    lengths = [len(b) - len(a) for a, b in zip(short, longer, strict=True)]
    if any(n <= 0 for n in lengths):
        raise VerifyError("one more step adds no instructions on some rank: not periodic")
    starts = [_best_start(seq, n, period) for seq, n in zip(short, lengths, strict=True)]
    bodies = min(reps for _, reps in starts)
    if bodies < 1:
        raise VerifyError("no repeating body found")
    programs = []
    for r, (seq, length, (start, reps)) in enumerate(zip(short, lengths, starts, strict=True)):
        start += (reps - bodies) * length
        body = tuple(seq[start:start + length])
        back = -(bodies - 1)
        tail = seq[start + bodies * length:]
        epilogue = tuple(i.shifted(back * period.microbatches, back * period.steps) for i in tail)
        programs.append(RankProgram(r, tuple(seq[:start]), body, epilogue))
    return programs, batches - bodies


def check_periodic(programs: Sequence[RankProgram], streams: Sequence[Sequence[Instr]],
                   repeats: int, period: Period) -> None:
    """The programs unrolled `repeats` times must equal the directly built streams."""
    for prog, expected in zip(programs, streams, strict=True):
        got = prog.unrolled(repeats, period)
        if got != list(expected):
            i = next((k for k, (a, b) in enumerate(zip(got, expected, strict=False))
                      if a != b),
                     min(len(got), len(expected)))
            raise VerifyError(
                f"the body does not repeat: with {repeats} repetitions the program "
                f"differs from the schedule at instruction {i}", rank=prog.rank, index=i,
                section="unrolled stream")
