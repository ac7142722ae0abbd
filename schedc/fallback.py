"""The fallback for asynchronous schedules of several pipelines that the
modulo construction (schedc.modulo) does not express: custom multi-direction
Specs outside AMDP's shape (split backward, several stages per rank, a fixed
delay, periodic data parallelism, in-flight bounds beyond stage 0, another
order). AMDP itself (directions auto, or any maps with one stage of every
pipeline per rank) is always constructed.

It is the search of earlier versions, kept only for these: a few ordering
policies (order.distinct_orders), each with a few period guesses, each split
from three lowered runs of different lengths and checked against them; the
first whose programs the verifier proves is kept. Every other schedule is
constructed and proven once (compiler.compile_with).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schedc.errors import VerifyError
from schedc.graph import Problem, build_graph
from schedc.order import DEFAULT_POLICY, Policy, distinct_orders
from schedc.periodic import _best_start
from schedc.program import Instr, Period, RankProgram
from schedc.spec import Spec

BASES = (1, 2, 4)  # multiples of the warm-up estimate
PERIODS = (1, 2, 3, 4)  # multiples of the synchronisation period
KEEP = 3  # policies tried


def candidate_policies(spec: Spec, problem_spec: Spec, batches: int) -> list[Policy]:
    problem = Problem.of(problem_spec, batches)
    ranked = [policy for _, policy, _ in distinct_orders(problem, build_graph(problem))]
    return ranked[:KEEP] or [DEFAULT_POLICY]


def search_programs(spec: Spec, policies: Sequence[Policy], warm: int, sync: int,
                    lower_run: Callable[[int, Policy], list[list[Instr]]],
                    prove: Callable[[list[RankProgram], Period], None],
                    ) -> tuple[list[RankProgram], Period, Policy]:
    """The first (policy, period) whose programs repeat and are proven."""
    error: VerifyError | None = None  # the first body that did not repeat
    refused: VerifyError | None = None  # the first repeating body the proof refused
    for policy in policies:
        for base in (warm * f for f in BASES):
            for k in (sync * j for j in PERIODS):
                b = base + (-base % k)
                period = Period(microbatches=k * spec.microbatches, steps=k)
                try:
                    runs = {n: lower_run(n, policy) for n in (b, b + k, b + 2 * k)}
                    programs, extra = _split(runs[b], runs[b + k], b // k, period)
                    for n in (b, b + k, b + 2 * k):
                        _check(programs, runs[n], n // k - extra, period)
                except VerifyError as exc:
                    error = error or exc
                    continue
                try:
                    prove(programs, period)
                    return programs, period, policy
                except VerifyError as exc:  # e.g. a declared bound: the user's to change
                    refused = refused or exc
    assert refused is not None or error is not None
    raise refused or error


def _split(short: Sequence[Sequence[Instr]], longer: Sequence[Sequence[Instr]], batches: int,
           period: Period) -> tuple[list[RankProgram], int]:
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
        back = -(bodies - 1)
        tail = seq[start + bodies * length:]
        epilogue = tuple(i.shifted(back * period.microbatches, back * period.steps) for i in tail)
        programs.append(RankProgram(r, tuple(seq[:start]), tuple(seq[start:start + length]),
                                    epilogue))
    return programs, batches - bodies


def _check(programs: Sequence[RankProgram], streams: Sequence[Sequence[Instr]], repeats: int,
           period: Period) -> None:
    for prog, expected in zip(programs, streams, strict=True):
        if prog.unrolled(repeats, period) != list(expected):
            raise VerifyError(f"the body does not repeat with {repeats} repetitions",
                              rank=prog.rank)
