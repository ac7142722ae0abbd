"""Ranking and caps on the hand-written profile (conftest.HAND), exact values.

On paper, with F(b) = b / 2 ms per stage for micro-batches of b = 8 / m samples
and 2 ranks: 1F1B and GPipe take (m + 1) x 3 F(b) = 12 (m + 1) / m ms per step;
ZB-H1 (I = W = F) (3m + 1) F(b) = 4 (3m + 1) / m ms for m >= 2.
"""

from __future__ import annotations

import pytest

from schedc.tune import Candidate, Query, load_measured, tune
from schedc.tune.evaluate import evaluate

SYNC = ["gpipe", "1f1b", "zb-h1"]


def ranked(result) -> list[tuple[str, float]]:
    return [(r.candidate.label(), r.step_time) for r in result.ranked]


def test_ranking_is_the_one_worked_out(hand_profile: str) -> None:
    result = tune(Query(ranks=2, batch=8), load_measured(hand_profile, None, 2), SYNC)
    assert [label for label, _ in ranked(result)] == [
        "zb-h1 m8", "1f1b m8 split", "zb-h1 m4", "gpipe m8 split", "1f1b m8", "gpipe m8",
        "1f1b m4 split", "gpipe m4 split", "zb-h1 m2", "1f1b m4", "gpipe m4",
        "1f1b m2 split", "gpipe m2 split", "1f1b m2", "gpipe m2",
        "gpipe m1 split", "gpipe m1"]
    # at m = 1, 1F1B is GPipe and ZB-H1 is GPipe split: listed once
    assert {r.candidate.label(): r.reason for r in result.rows if r.status == "duplicate"} == {
        "1f1b m1": "the same programs as gpipe m1",
        "1f1b m1 split": "the same programs as gpipe m1 split",
        "zb-h1 m1": "the same programs as gpipe m1 split"}
    times = {r.candidate.label(): r.step_time for r in result.rows}
    for m in (1, 2, 4, 8):
        assert times[f"1f1b m{m}"] == pytest.approx(12 * (m + 1) / m, rel=1e-12)
        assert times[f"gpipe m{m}"] == pytest.approx(12 * (m + 1) / m, rel=1e-12)
        if m > 1:
            assert times[f"zb-h1 m{m}"] == pytest.approx(4 * (3 * m + 1) / m, rel=1e-12)
    # one micro-batch: F, F, I, I then the last W, one after another: 5 F(8) = 20 ms
    assert times["zb-h1 m1"] == 20.0
    best = result.best
    assert best.throughput == pytest.approx(8 / 12.5)  # samples per ms
    assert best.bubble == pytest.approx(1 - 24 / 25)
    assert best.mb_size == 1 and best.stages == 2
    # rank 0 holds 2 micro-batches of 1 MB each plus its 1 MB of weights
    assert best.memory == [3_000_000.0, 2_000_000.0]
    gpipe = next(r for r in result.ranked if r.candidate.label() == "gpipe m4")
    assert gpipe.memory == [9_000_000.0, 9_000_000.0]  # every micro-batch alive


def test_memory_cap_drops_exactly_those_over_it(hand_profile: str) -> None:
    result = tune(Query(ranks=2, batch=8, memory=3e6), load_measured(hand_profile, None, 2),
                  SYNC)
    assert [r.candidate.label() for r in result.ranked] == ["zb-h1 m8", "1f1b m8 split",
                                                            "1f1b m8"]
    dropped = [r for r in result.rows if not r.ok]
    assert len(dropped) == 17 and {r.status for r in dropped} == {"over memory"}
    assert all(r.peak_memory > 3e6 for r in dropped)
    assert result.counts == {"ok": 3, "over memory": 17}


def test_staleness_caps_drop_before_simulating(hand_profile: str) -> None:
    profile = load_measured(hand_profile, None, 2)
    families = ["1f1b", "pipedream-2bw", "paci"]
    result = tune(Query(ranks=2, batch=4, max_delay=0), profile, families)
    assert {r.candidate.family for r in result.ranked} == {"1f1b"}
    over = [r for r in result.rows if r.status == "over max delay"]
    assert len(over) == 2 * 12  # every asynchronous candidate: delay 1 at 2 ranks
    assert all(r.max_delay == 1 and r.step_time is None for r in over)
    result = tune(Query(ranks=2, batch=4, max_inconsistency=0), profile, families)
    assert {r.candidate.family for r in result.ranked} == {"1f1b", "pipedream-2bw"}
    assert {r.candidate.family for r in result.rows if r.status == "over max inconsistency"} \
        == {"paci"}


def test_refusals_stay_in_the_table_with_the_compilers_reason(hand_profile: str) -> None:
    row = evaluate(Candidate("1f1b", 4, chunks=2), Query(ranks=2, batch=8),
                   load_measured(hand_profile, None, 2))
    assert (row.status, row.reason) == ("refused", "order: order 1f1b needs one stage per "
                                                   "rank (stages == ranks)")
    assert row.step_time is None and row.to_dict()["status"] == "refused"


def test_workers_and_the_disk_cache_give_the_same_table(hand_profile: str, tmp_path) -> None:
    from schedc.tune.cache import CompileCache

    profile = load_measured(hand_profile, None, 2)
    one = tune(Query(ranks=2, batch=4), profile, ["1f1b", "paci"])
    two = tune(Query(ranks=2, batch=4), profile, ["1f1b", "paci"], jobs=2,
               cache=CompileCache(tmp_path / "cache"))
    assert [r.to_dict() for r in two.rows] == [r.to_dict() for r in one.rows]
    assert two.compiled == len(two.rows)
    # without a cache directory the workers share a temporary one, and the best
    # candidate's programs come back to the caller's cache (written without a compile)
    cache = CompileCache()
    three = tune(Query(ranks=2, batch=4), profile, ["1f1b", "paci"], jobs=2, cache=cache)
    assert [r.to_dict() for r in three.rows] == [r.to_dict() for r in one.rows]
    assert list(cache.memory) == [cache.key(three.best.candidate.spec(2))]
    again = tune(Query(ranks=2, batch=4), profile, ["1f1b", "paci"],
                 cache=CompileCache(tmp_path / "cache"))
    assert (again.compiled, again.cached) == (0, len(again.rows))
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in one.rows]


def test_data_parallel_replicas_split_the_batch(hand_profile: str) -> None:
    profile = load_measured(hand_profile, None, 2)
    one = tune(Query(ranks=2, batch=8), profile, ["1f1b"])
    two = tune(Query(ranks=2, batch=16, dp=2), profile, ["1f1b"])
    # no link costs in the profile: the all-reduce is free, each replica runs 8 samples
    assert [(r.candidate.label(), r.mb_size, r.step_time) for r in two.ranked] == \
        [(r.candidate.label(), r.mb_size, r.step_time) for r in one.ranked]
    assert [r.throughput for r in two.ranked] == [2 * r.throughput for r in one.ranked]
