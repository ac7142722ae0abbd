"""Runs of one body more (Unrolled.longer), the replay's encoding carried over
(Replay.encode_from) and the version check carried over (VersionReplays): each
equals what a run built and checked from scratch gives."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
from compiling import compiled

from schedc.compiler import COMPILE_GC_THRESHOLDS, few_collections
from schedc.errors import VerifyError
from schedc.replay import Replay
from schedc.unroll import Unrolled
from schedc.versions import VersionReplays, VersionTable, replay_versions

CASES = [("paci", 4, 8), ("pipedream-2bw", 3, 6), ("amdp", 4, 8), ("pipedream", 3, 1)]
FIELDS = VersionTable._DICTS


@pytest.mark.parametrize("name,p,m", CASES)
def test_longer_is_the_run_of_one_body_more(name, p, m):
    c = compiled(name, p, m)
    un = Unrolled.of(c.programs, c.manifest.period, 1)
    for n in (2, 3, 4):
        un = un.longer()
        fresh = Unrolled.of(c.programs, c.manifest.period, n)
        assert un.repeats == n
        assert un.streams == fresh.streams
        for r in range(p):
            prog = c.programs[r]
            assert un.epilogue_start(r) == len(prog.prologue) + n * len(prog.body)


@pytest.mark.parametrize("name,p,m", CASES)
def test_encoding_from_a_shorter_run_is_the_encoding(name, p, m):
    c = compiled(name, p, m)
    short = Unrolled.of(c.programs, c.manifest.period, 1)
    code = Replay(short.streams).code
    for _ in range(3):
        long = short.longer()
        reused = Replay(long.streams, reuse=[(code[r], short.epilogue_start(r))
                                             for r in range(p)]).code
        assert reused == Replay(long.streams).code
        short, code = long, reused


@pytest.mark.parametrize("name,p,m", CASES)
def test_carried_version_check_gives_each_runs_table(name, p, m):
    c = compiled(name, p, m)
    replays = VersionReplays(c.manifest)
    un = Unrolled.of(c.programs, c.manifest.period, 1)
    for n in (1, 2, 3):
        if n > 1:
            un = un.longer()
        carried, fresh = replays.replay(un), replay_versions(c.manifest, un)
        for name_ in FIELDS:
            assert getattr(carried, name_) == getattr(fresh, name_), name_
        assert carried.activation_peaks == fresh.activation_peaks
    # the analysis figures come from the 3-body table either way
    assert carried.worst_inconsistency() == fresh.worst_inconsistency()


def test_error_in_the_epilogue_is_the_fresh_checks_error():
    """A forward of the epilogue that reads a version one too high: the carried
    check names the same rank, section, index and reason as a fresh one."""
    c = compiled("paci", 4, 8)
    progs = list(c.programs)
    r = next(r for r, p in enumerate(progs) if any(i.op == "F" for i in p.epilogue))
    i = next(i for i, ins in enumerate(progs[r].epilogue) if ins.op == "F")
    epi = list(progs[r].epilogue)
    epi[i] = replace(epi[i], version=epi[i].version + 1)
    progs[r] = replace(progs[r], epilogue=tuple(epi))
    replays = VersionReplays(c.manifest)
    un = Unrolled.of(progs, c.manifest.period, 1)
    with pytest.raises(VerifyError) as carried:
        replays.replay(un)
    with pytest.raises(VerifyError) as fresh:
        replay_versions(c.manifest, un)
    where = [(e.value.rank, e.value.section, e.value.index, str(e.value))
             for e in (carried, fresh)]
    assert where[0] == where[1]
    assert where[0][:3] == (r, "epilogue", i)


def test_few_collections_restores_the_thresholds():
    before = gc.get_threshold()
    with few_collections():
        assert gc.get_threshold() == COMPILE_GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_few_collections_pause_stops_the_collector_and_restores_it():
    assert gc.isenabled()
    with few_collections(pause=True):
        assert not gc.isenabled()
    assert gc.isenabled()
