"""One replay for every run (schedc.runs): each run of 1, 2, 3 bodies proven
from the shared replay of the longest run (stopped before its epilogue, then
forked) gives what a replay of that run alone gives: the same streams, the
same encoding, the same version table, the same error, the same timing."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from compiling import compiled
from mutate import with_body

import schedc.runs as runs_module
import schedc.versions_periodic as versions_periodic
from schedc.clock import Clock, UnitCosts
from schedc.errors import VerifyError
from schedc.overlap import Overlap
from schedc.replay import Replay
from schedc.runs import Runs, replay_versions
from schedc.unroll import Unrolled
from schedc.verify import verify
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
    carried = [runs.prove(n, last=n == 3) for n in (1, 2, 3)]  # run 3 folds (Runs._fold)
    fresh = [replay_versions(manifest, _fresh(c, n)) for n in (1, 2, 3)]
    for n, (table, alone) in enumerate(zip(carried, fresh, strict=True), 1):
        if table is None:  # not checked: its bounds follow from the next run's
            assert n < 3
            _assert_bounded_by(alone, fresh[n])
        else:
            _assert_same_table(table, alone)


def _assert_bounded_by(table: VersionTable, later: VersionTable) -> None:
    """Every figure a bound is checked on is in `table` no worse than in `later`."""
    assert table.worst_inconsistency()[0] <= later.worst_inconsistency()[0]
    assert table.worst_delay()[0] <= later.worst_delay()[0]
    for name in ("backward", "applied"):
        assert min(table.differences(name)) >= min(later.differences(name))
    for name in ("inflight_peaks", "version_peaks", "copy_peaks"):
        peaks, more = getattr(table, name), getattr(later, name)
        assert all(peak[0] <= more[key][0] for key, peak in peaks.items())
    assert all(a[0] <= b[0] for a, b in zip(table.activation_peaks, later.activation_peaks,
                                            strict=True))


@pytest.mark.parametrize("name,p,m", CASES)
@pytest.mark.parametrize("fold", [None, "shared", "fork"])
def test_the_longest_runs_timing_is_a_fresh_timing(name, p, m, fold, monkeypatch):
    """Replayed to its end, or (`fold`) from run 2's timing with its last
    body's times repeated a body's time apart, where runs 1 and 2 stop alike,
    clocks included (every case here); then run 2's epilogue's times, which
    the shared replay goes on to, or run 1's epilogue's, from its clocked
    fork, a body's time later."""
    c = compiled(name, p, m)
    if fold is None:
        monkeypatch.setattr(runs_module, "_time_shift", lambda *args: None)
    if fold == "shared":  # run 1's epilogue forked without a clock
        fork = Runs._fork
        monkeypatch.setattr(Runs, "_fork",
                            lambda self, un, ends, timed: fork(self, un, ends, False))
    runs = Runs(c.manifest, c.programs, 4, timed=True)
    for n in (1, 2, 3):
        runs.prove(n, last=n == 3)
    assert (runs.folded[0] if runs.folded else None) == (2 if fold else None)
    if fold:
        assert (runs.folded[3] is not None) == (fold == "fork")
        assert runs.ended == (fold == "shared")  # the shared replay stops before run 2's epilogue
    _assert_fresh_timing(runs, c, Overlap())


@pytest.mark.parametrize("name,p,m", CASES)
@pytest.mark.parametrize("rule", [Overlap(posted_batches=2),
                                  Overlap(posted_batches=2, early_receives=True)])
def test_the_timing_under_an_overlap_rule_is_a_fresh_timing(name, p, m, rule):
    """Under early receives the stops post them later than the run does: the
    longest run is clocked again, unstopped."""
    c = compiled(name, p, m)
    runs = Runs(replace(c.manifest, overlap=rule.to_dict()), c.programs, 4, timed=True)
    for n in (1, 2, 3):
        runs.prove(n, last=n == 3)
    _assert_fresh_timing(runs, c, rule)


def _assert_fresh_timing(runs: Runs, c, rule: Overlap) -> None:
    un, timing = runs.timing()
    fresh = _fresh(c, 4)
    clock = Clock(fresh.streams, UnitCosts(), overlap=rule.overlapped, keep_messages=False)
    Replay(fresh.streams, clock, rule=rule).run()
    assert un.repeats == 4
    assert [list(s) for s in un.streams] == [list(s) for s in fresh.streams]
    assert [list(s) for s in timing.start] == [list(s) for s in clock.starts]
    assert [list(s) for s in timing.end] == [list(s) for s in clock.ends]


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
        at = min(n, runs.settled or n)  # no run past a settled one is replayed
        assert all(len(s) == runs.run(at).epilogue_start(r) for r, s in enumerate(runs.streams))
        assert _entries(runs.replay) == _entries(Replay([list(s) for s in runs.streams]))


@pytest.mark.parametrize("name,p,m", CASES[:4])
def test_the_epilogues_of_runs_2_and_3_follow_from_run_1s(name, p, m):
    """Stopped before their epilogues, runs 1, 2 and 3 stand in the same
    state, a body apart: only run 1's epilogue is replayed, and run 2's is
    not checked for versions (its table is None: its bounds follow from run
    3's)."""
    c = compiled(name, p, m)
    runs = Runs(c.manifest, c.programs, 4)
    tables = [runs.prove(n, last=n == 3) for n in (1, 2, 3)]
    assert [t is None for t in tables] == [False, True, False]
    assert runs.stopped[1] is not None
    assert runs.stopped[1] == runs.stopped[2]
    assert runs.forks == 1
    assert runs.settled == 2  # run 3 is not replayed


def _verdict(manifest, programs, timed: int | None = None) -> tuple | None:
    try:
        verify(manifest, programs, timed)
    except VerifyError as exc:
        return type(exc).__name__, exc.rank, exc.section, exc.index, str(exc), exc.repeats
    return None


def _mutants(c, count: int, seed: int):
    """Programs with one instruction of one rank's body dropped, doubled or
    moved; then with the body's end moved into the epilogue or the
    epilogue's start into the body (run 1 the same, later runs not)."""
    rng = random.Random(seed)
    for _ in range(count):
        r = rng.randrange(len(c.programs))
        body = list(c.programs[r].body)
        i, j = rng.randrange(len(body)), rng.randrange(len(body))
        how = rng.choice(("drop", "double", "move"))
        if how == "drop":
            del body[i]
        elif how == "double":
            body.insert(j, body[i])
        else:
            body.insert(j, body.pop(i))
        yield with_body(c, r, body)
    for r, prog in enumerate(c.programs):
        for t in (1, 2):
            run = list(prog.body) + list(prog.epilogue)
            for cut in (len(prog.body) + t, len(prog.body) - t):
                if 0 < cut < len(run):
                    programs = list(c.programs)
                    programs[r] = replace(prog, body=tuple(run[:cut]),
                                          epilogue=tuple(run[cut:]))
                    yield programs


@pytest.mark.parametrize("name,p,m", CASES[:4])
def test_replaying_only_run_1s_epilogue_changes_no_verdict(name, p, m, monkeypatch):
    """On mutated bodies (a state that drifts from body to body among them),
    verify says what it says when every run's epilogue is replayed, and
    (timed: the compiler's) when run 3 is not folded into the timed run."""
    c = compiled(name, p, m)
    mutants = list(_mutants(c, 40, seed=p * m))
    skipping = [_verdict(c.manifest, progs, timed) for progs in mutants for timed in (None, 4)]
    monkeypatch.setattr(runs_module, "_stopped_state", lambda *args: None)
    monkeypatch.setattr(versions_periodic, "shifted", lambda *args: False)
    assert skipping == [_verdict(c.manifest, progs, timed) for progs in mutants
                        for timed in (None, 4)]
    assert {v[5] for v in skipping if v is not None} >= {1, 2}  # runs 1 and 2 fail
