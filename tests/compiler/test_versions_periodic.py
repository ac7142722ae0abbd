"""Where the version check repeats itself a body later (schedc.versions_periodic):
run 2's epilogue is not checked, and run 3's table follows from run 1's and
the lines' own. Each derived table is the table a fresh check of that run
alone gives, entry for entry and peak for peak."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from compiling import compiled

import schedc.versions_periodic as periodic
from schedc.compiler import compile_spec
from schedc.dsl import parse_file
from schedc.presets import preset_spec
from schedc.program import Period
from schedc.runs import Runs, replay_versions
from schedc.spec import Spec
from schedc.unroll import Unrolled
from schedc.version_table import VersionTable

ROOT = Path(__file__).resolve().parents[2]
CASES = [("paci", 4, 8), ("pipedream-2bw", 3, 6), ("amdp", 4, 8), ("pipedream", 3, 1),
         ("pipedream", 4, 16), ("amdp", 3, 6)]


def _lookahead():
    return compile_spec(parse_file(ROOT / "examples" / "async_lookahead4.sched"))


def _sparse(dp_period: int):
    return compile_spec(preset_spec("paci", stages=4, microbatches=8, ranks=4,
                                    dp_mode="async-sparse", dp_period=dp_period).validate())


def _assert_same_table(table: VersionTable, fresh: VersionTable) -> None:
    for name in VersionTable._DICTS:
        assert getattr(table, name) == getattr(fresh, name), name
    assert table.activation_peaks == fresh.activation_peaks


def _proven(c, n: int = 3) -> tuple[Runs, list]:
    runs = Runs(c.manifest, c.programs, n)
    tables = [runs.prove(k, last=k == n) for k in range(1, n + 1)]
    return runs, tables


@pytest.mark.parametrize("name,p,m", CASES)
def test_run_3s_table_follows_from_run_1s(name, p, m):
    c = compiled(name, p, m)
    runs, tables = _proven(c)
    assert tables[1] is None  # run 2's epilogue: not checked
    assert runs.versions.lines == []  # and run 3's table made without its lines
    fresh = replay_versions(c.manifest, Unrolled.of(c.programs, c.manifest.period, 3))
    _assert_same_table(tables[2], fresh)


@pytest.mark.parametrize("make", [_lookahead, lambda: _sparse(1), lambda: _sparse(2)],
                         ids=["lookahead", "sparse", "sparse-every-2"])
def test_look_ahead_and_sparse_synchronisation_follow_too(make):
    c = make()
    _, tables = _proven(c)
    assert tables[1] is None
    fresh = replay_versions(c.manifest, Unrolled.of(c.programs, c.manifest.period, 3))
    _assert_same_table(tables[2], fresh)
    if c.manifest.spec.get("dp_mode") == "async-sparse":
        assert tables[2].sparse_syncs  # counted over three bodies, not copied


@pytest.mark.parametrize("name,p,m", CASES[:3])
def test_each_step_of_the_derivation_is_a_fresh_run(name, p, m):
    """next_table once: run 2's table (never checked itself); twice: run 3's."""
    c = compiled(name, p, m)
    runs, progs = Runs(c.manifest, c.programs, 3), c.programs
    check = runs.versions
    first = runs.prove(1)
    assert runs.prove(2) is None
    period = c.manifest.period
    back = period.microbatches
    windows = [(lo, hi) for lo, hi in check.windows]
    windows = [(lo + back, hi + back) for lo, hi in windows]
    syncs: dict = {}
    table = first
    for k in (1, 2):
        epilogues = [len(prog.prologue) + k * len(prog.body) for prog in progs]
        table = periodic.next_table(table, [x.table for x in check.lines], windows, epilogues,
                                    [len(prog.body) for prog in progs], period, syncs)
        fresh = replay_versions(c.manifest, Unrolled.of(progs, period, k + 1))
        _assert_same_table(table, fresh)


def test_a_table_that_does_not_line_up_is_checked_instead(monkeypatch):
    """Where next_table cannot shift a replica's slots, run 3 is checked by
    its lines as before: the same table."""
    c = compiled("paci", 4, 8)
    monkeypatch.setattr(periodic, "next_table", lambda *args: None)
    runs, tables = _proven(c)
    assert tables[1] is None
    fresh = replay_versions(c.manifest, Unrolled.of(c.programs, c.manifest.period, 3))
    _assert_same_table(tables[2], fresh)


def test_rules_that_do_not_shift_with_the_period_compare_nothing():
    """A sparse synchronisation every 2 steps is not the same a one-step body
    later (the compiler's period is then 2 steps); nor is a step's rule where
    a period is not whole steps of m micro-batches."""
    sparse = _sparse(2)
    spec = Spec.from_dict(sparse.manifest.spec)
    assert sparse.manifest.period.steps == 2 and periodic.comparable(sparse.manifest, spec)
    one_step = replace(sparse.manifest, period=Period(microbatches=8, steps=1))
    assert not periodic.comparable(one_step, spec)
    c = compiled("paci", 4, 8)
    odd = replace(c.manifest, period=Period(microbatches=2 * c.manifest.period.microbatches + 1,
                                            steps=2))
    assert not periodic.comparable(odd, Spec.from_dict(c.manifest.spec))


def test_the_window_holds_what_the_rest_of_runs_1_and_2_reads():
    c = compiled("pipedream-2bw", 3, 6)
    period = c.manifest.period
    for prog in c.programs:
        lo, hi = periodic.window(prog, period)
        for seq, shift in ((prog.epilogue, 0), (prog.body, period.microbatches),
                           (prog.epilogue, period.microbatches)):
            mbs = [ins.mb + shift for ins in seq if ins.mb is not None]
            assert all(lo <= mb < hi for mb in mbs)
        ends = [min(ins.mb for ins in prog.epilogue if ins.mb is not None),
                max(ins.mb for ins in prog.body if ins.mb is not None) + period.microbatches]
        assert lo <= ends[0] and hi == max(hi, ends[1] + 1)
