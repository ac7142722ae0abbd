"""One replay for every run (schedc.runs): each run of 1, 2, 3 bodies proven
from the shared replay of the longest run (stopped before its epilogue, then
forked) gives what a replay of that run alone gives: the same streams, the
same encoding, the same version table, the same error, the same timing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from compiling import compiled

from schedc.errors import VerifyError
from schedc.overlap import Overlap
from schedc.replay import Replay
from schedc.runs import Runs, replay_versions
from schedc.timing import unit_timing
from schedc.unroll import Unrolled
from schedc.version_table import VersionTable

CASES = [("paci", 4, 8), ("pipedream-2bw", 3, 6), ("amdp", 4, 8), ("pipedream", 3, 1),
         ("1f1b", 4, 8)]
FIELDS = VersionTable._DICTS


def _fresh(c, n: int) -> Unrolled:
    return Unrolled.of(c.programs, c.manifest.period, n)


@pytest.mark.parametrize("name,p,m", CASES)
def test_each_run_is_the_run_of_so_many_bodies(name, p, m):
    c = compiled(name, p, m)
    runs = Runs(c.manifest, c.programs, 4)
    for n in (1, 2, 3, 4):
        un = runs.run(n)
        assert un.repeats == n
        assert [list(s) for s in un.streams] == [list(s) for s in _fresh(c, n).streams]


@pytest.mark.parametrize("name,p,m", CASES)
def test_encoding_from_the_longest_run_is_the_encoding(name, p, m):
    c = compiled(name, p, m)
    runs = Runs(c.manifest, c.programs, 4)
    for n in (1, 2, 3, 4):  # the shared streams grow a body at a time
        grown = runs.run(n)
    assert _entries(runs.replay) == _entries(Replay(grown.streams)) == _entries(
        Replay([list(s) for s in grown.streams]))  # sections copied = the stream encoded
    for n in (1, 2, 3):
        un = runs.run(n)
        reused = runs.replay.fork(un.streams, [un.epilogue_start(r) for r in range(p)])
        assert _entries(reused) == _entries(Replay(un.streams)) == _entries(
            Replay([list(s) for s in un.streams]))


def _entries(replay: Replay) -> list[list[tuple]]:
    return [code.entries(replay.keys) for code in replay.code]


def _assert_same_table(carried: VersionTable, fresh: VersionTable) -> None:
    for name_ in FIELDS:
        assert getattr(carried, name_) == getattr(fresh, name_), name_
    assert carried.activation_peaks == fresh.activation_peaks
    assert carried.worst_inconsistency() == fresh.worst_inconsistency()


@pytest.mark.parametrize("name,p,m", CASES)
@pytest.mark.parametrize("rule", [Overlap(), Overlap(posted_batches=2, early_receives=True)])
def test_each_runs_table_is_a_fresh_replays(name, p, m, rule):
    c = compiled(name, p, m)
    manifest = replace(c.manifest, overlap=rule.to_dict())
    runs = Runs(manifest, c.programs, 4, timed=True)
    for n in (1, 2, 3):
        _assert_same_table(runs.prove(n), replay_versions(manifest, _fresh(c, n)))


@pytest.mark.parametrize("name,p,m", CASES)
def test_the_longest_runs_timing_is_a_fresh_timing(name, p, m):
    c = compiled(name, p, m)
    runs = Runs(c.manifest, c.programs, 4, timed=True)
    for n in (1, 2, 3):
        runs.prove(n)
    un, timing = runs.timing()
    fresh = unit_timing(_fresh(c, 4).streams)
    assert un.repeats == 4
    assert [list(s) for s in timing.start] == [list(s) for s in fresh.start]
    assert [list(s) for s in timing.end] == [list(s) for s in fresh.end]


def test_error_in_the_epilogue_is_the_fresh_checks_error():
    """A forward of the epilogue that reads a version one too high: the forked
    check names the same rank, section, index and reason as a fresh one."""
    c = compiled("paci", 4, 8)
    progs = list(c.programs)
    r = next(r for r, p in enumerate(progs) if any(i.op == "F" for i in p.epilogue))
    i = next(i for i, ins in enumerate(progs[r].epilogue) if ins.op == "F")
    epi = list(progs[r].epilogue)
    epi[i] = replace(epi[i], version=epi[i].version + 1)
    progs[r] = replace(progs[r], epilogue=tuple(epi))
    with pytest.raises(VerifyError) as carried:
        Runs(c.manifest, progs, 3).prove(1)
    with pytest.raises(VerifyError) as fresh:
        replay_versions(c.manifest, Unrolled.of(progs, c.manifest.period, 1))
    where = [(e.value.rank, e.value.section, e.value.index, str(e.value))
             for e in (carried, fresh)]
    assert where[0] == where[1]
    assert where[0][:3] == (r, "epilogue", i)



@pytest.mark.parametrize("name,p,m", CASES)
def test_a_fork_gives_the_lent_encoding_back_as_it_was(name, p, m):
    c = compiled(name, p, m)
    runs = Runs(c.manifest, c.programs, 4)
    for n in (1, 2, 3):
        runs.prove(n)  # the fork encodes the epilogue on in the shared encoding
        assert all(len(s) == runs.run(n).epilogue_start(r) for r, s in enumerate(runs.streams))
        assert _entries(runs.replay) == _entries(Replay([list(s) for s in runs.streams]))
