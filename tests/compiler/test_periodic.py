"""periodic.split_run's search for the repeating body, column by column,
against the plain definition (instruction i + L equals instruction i shifted
once), on lowered runs and on made-up streams that exercise the edges."""

from __future__ import annotations

import pytest

from schedc.compiler import _lowered, choose_policy
from schedc.periodic import _best_start, _Columns, body_lengths, split_run
from schedc.presets import preset_spec
from schedc.program import COMPUTE_OPS, Instr, Period


def _plain_best_start(seq: list[Instr], length: int, period: Period) -> tuple[int, int]:
    """(start, repetitions): the longest stretch of equal-after-shift pairs,
    cut to whole bodies, and the earliest start of a stretch that long."""
    n = len(seq)
    if length > n:
        return 0, 0
    runs = [0] * (n + 1)
    for i in range(n - length - 1, -1, -1):
        same = seq[i + length] == seq[i].shifted(period.microbatches, period.steps)
        runs[i] = runs[i + 1] + 1 if same else 0
    runs = runs[:n - length + 1]
    more = max(runs) // length
    return next(x for x, run in enumerate(runs) if run >= more * length), 1 + more


def _plain_body_lengths(seq: list[Instr], period: Period) -> list[int]:
    where = {ins: i for i, ins in enumerate(seq) if ins.op in COMPUTE_OPS}
    out: list[int] = []
    for frac in (0.35, 0.5, 0.65):
        for i in range(int(frac * len(seq)), len(seq)):
            if seq[i].op in COMPUTE_OPS:
                j = where.get(seq[i].shifted(period.microbatches, period.steps))
                if j is not None and j > i and j - i not in out:
                    out.append(j - i)
                break
    return out


CASES = [("paci", 3, 6, 1), ("pipedream-2bw", 4, 9, 1), ("amdp", 4, 8, 1),
         ("paci", 3, 7, 3)]


@pytest.mark.parametrize("name,p,m,batches", CASES)
def test_body_search_equals_the_plain_definition_on_lowered_runs(name, p, m, batches):
    spec = preset_spec(name, stages=p, microbatches=m).validate()
    period = Period(microbatches=m, steps=1)
    streams = _lowered(spec, batches + 4, choose_policy(spec))
    for seq in streams:
        columns = _Columns(seq, period)
        lengths = body_lengths(seq, period, columns)
        assert lengths == _plain_body_lengths(seq, period)
        assert lengths  # the run repeats: the search has something to compare
        for length in [*lengths, 1, 2, len(seq) - 1, len(seq), len(seq) + 3]:
            assert _best_start(seq, length, period, columns) == \
                _plain_best_start(seq, length, period)


def _made_up(pattern: str) -> list[Instr]:
    """A stream from letters: F (mb, version), S (a send: mb, no version),
    T (a step: version, no mb), x (an ALLREDUCE: neither)."""
    out, mb, version = [], 0, 0
    for c in pattern:
        if c == "F":
            out.append(Instr("F", 0, mb, 0, version))
            mb += 1
        elif c == "S":
            out.append(Instr("SEND_ACT", 0, mb - 1, 0, None, 1))
        elif c == "T":
            version += 1
            out.append(Instr("STEP", 0, None, 0, version, count=2))
        else:
            out.append(Instr("ALLREDUCE", 0, None, 0, group=(0, 1)))
    return out


@pytest.mark.parametrize("pattern", ["", "F", "FF", "xFSFST" * 4, "xx" + "FSFSTx" * 5 + "FF",
                                     "FSFST" * 3 + "xx" + "FSFST" * 3, "TTTT", "xxxxx"])
def test_body_search_equals_the_plain_definition_on_made_up_streams(pattern):
    seq = _made_up(pattern)
    period = Period(microbatches=2, steps=1)
    columns = _Columns(seq, period)
    assert body_lengths(seq, period, columns) == _plain_body_lengths(seq, period)
    for length in range(1, len(seq) + 3):
        assert _best_start(seq, length, period, columns) == \
            _plain_best_start(seq, length, period)


def test_split_run_finds_prologue_body_and_epilogue():
    seq = _made_up("xx" + "FSFST" * 4 + "FF")
    (program,), extra = split_run([seq], 5, Period(microbatches=2, steps=1))
    assert [i.op for i in program.prologue] == ["ALLREDUCE", "ALLREDUCE"]
    assert program.body == tuple(seq[2:7])
    assert extra == 1  # four bodies in a run of five periods
    assert program.epilogue == tuple(i.shifted(-6, -3) for i in seq[22:])


@pytest.mark.parametrize("name,p,m,batches", [("paci", 3, 6, 3), ("pipedream-2bw", 4, 9, 4),
                                              ("paci", 3, 7, 6)])
def test_epilogue_is_the_tail_shifted_back_and_shares_what_repeats(name, p, m, batches):
    spec = preset_spec(name, stages=p, microbatches=m).validate()
    period = Period(microbatches=m, steps=1)
    streams = _lowered(spec, batches, choose_policy(spec))
    programs, extra = split_run(streams, batches, period)
    bodies = batches - extra
    assert bodies >= 2
    shared = 0
    for seq, prog in zip(streams, programs, strict=True):
        lo = len(prog.prologue) + bodies * len(prog.body)
        back = bodies - 1
        assert prog.epilogue == tuple(ins.shifted(-back * m, -back) for ins in seq[lo:])
        earlier = {id(ins) for ins in seq[:lo]}
        shared += sum(id(ins) in earlier for ins in prog.epilogue)
    # most of the drain repeats the body before it: those instructions are not copied
    assert shared > sum(len(prog.epilogue) for prog in programs) // 2
