"""schedc.version_table: the columns read as the per-key mappings they stand
for, in the one key order (pipeline, stage, mb); differences in bulk; the
worst key (the least among equals); merging rank tables by replica."""

from __future__ import annotations

import pytest
from compiling import compiled

from schedc.runs import replay_versions
from schedc.unroll import Unrolled
from schedc.version_table import ABSENT, Columns, VersionTable


def _table(rows: dict[tuple[int, int, int], tuple[int, int, int]]) -> VersionTable:
    """(pipeline, stage, mb) -> (forward, backward, applied); where = (stage, mb)."""
    t = VersionTable()
    for key, (f, b, a) in rows.items():
        t.record(key, forward=f, backward=b, applied=a, where=(key[1], key[2]))
    return t


ROWS = {(0, 1, 5): (2, 3, 4), (0, 0, 7): (1, 3, 2), (0, 0, 2): (0, 2, 1), (1, 0, 1): (0, 0, 2)}
ORDER = [(0, 0, 2), (0, 0, 7), (0, 1, 5), (1, 0, 1)]  # the keys' order


def test_the_views_are_mappings_in_key_order():
    t = _table(ROWS)
    assert list(t.forward) == list(t.backward) == list(t.where) == ORDER
    assert len(t.forward) == 4 and len(t.applied) == 4
    assert dict(t.forward) == {k: f for k, (f, _, _) in ROWS.items()}
    assert dict(t.backward.items()) == {k: b for k, (_, b, _) in ROWS.items()}
    assert t.applied == {k: a for k, (_, _, a) in ROWS.items()}
    assert t.where[(0, 1, 5)] == (1, 5)
    assert (0, 0, 7) in t.forward and (0, 0, 3) not in t.forward
    for missing in [(0, 0, 3), (0, 0, 99), (0, 0, -1), (5, 0, 0), (0, 0), "x"]:
        with pytest.raises(KeyError):
            t.forward[missing]
    assert t.forward.get((0, 0, 3)) is None
    assert max(mb for _, _, mb in t.forward) == 7


def test_each_field_has_its_own_keys():
    t = VersionTable()
    t.record((0, 0, 1), forward=3)
    t.record((0, 0, 4), applied=2)
    assert dict(t.forward) == {(0, 0, 1): 3}
    assert dict(t.applied) == {(0, 0, 4): 2}
    assert len(t.backward) == 0 and len(t.where) == 0
    with pytest.raises(KeyError):  # a forward without a backward
        t.inconsistencies()


def test_differences_follow_key_order():
    t = _table(ROWS)
    assert t.inconsistencies() == [2, 2, 1, 0]
    assert t.delays() == [1, 1, 2, 2]
    assert t.inconsistencies() == [t.inconsistency(k) for k in t.forward]
    assert t.delays() == [t.delay(k) for k in t.forward]
    assert t.by_replica("backward") == [((0, 0), [2, 7], [2, 2]), ((0, 1), [5], [1]),
                                        ((1, 0), [1], [0])]


def test_worst_is_the_least_key_among_equals():
    t = _table(ROWS)
    assert t.worst_inconsistency() == (2, (0, 0, 2), (0, 2))
    assert t.worst_delay() == (2, (0, 1, 5), (1, 5))
    assert VersionTable().worst_inconsistency() is None
    assert VersionTable().worst_delay() is None
    assert VersionTable().inconsistencies() == []


def test_first_negative_is_the_least_key():
    t = _table({(0, 2, 9): (3, 3, 2), (0, 1, 4): (2, 1, 2), (0, 0, 1): (2, 0, 2)})
    assert t.first_negative("backward") == (-2, (0, 0, 1), (0, 1))
    assert t.first_negative("applied") == (-1, (0, 2, 9), (2, 9))
    assert _table(ROWS).first_negative("backward") is None


def test_merging_hands_replicas_over_and_forgets_the_differences_made():
    total = _table({(0, 0, 0): (0, 1, 0)})
    assert total.worst_inconsistency() == (1, (0, 0, 0), (0, 0))
    part = _table({(0, 1, 0): (0, 4, 1)})
    part.merge_into(total)
    assert total.columns[(0, 1)] is part.columns[(0, 1)]
    assert total.inconsistencies() == [1, 4]
    assert total.worst_inconsistency() == (4, (0, 1, 0), (1, 0))
    assert total.worst_delay() == (1, (0, 1, 0), (1, 0))
    with pytest.raises(ValueError, match=r"replicas \[\(0, 1\)\] are in both tables"):
        _table({(0, 1, 3): (0, 0, 0)}).merge_into(total)


def test_a_key_recorded_after_the_differences_makes_them_again():
    t = _table({(0, 0, 0): (0, 1, 0)})
    assert t.inconsistencies() == [1]
    t.record((0, 0, 1), forward=1, backward=4, where=(0, 1))
    assert t.inconsistencies() == [1, 3]
    assert t.worst_inconsistency() == (3, (0, 0, 1), (0, 1))
    copy = t.copy()  # writes apart
    copy.record((0, 0, 1), backward=9)
    assert copy.inconsistencies() == [1, 8] and t.inconsistencies() == [1, 3]
    with pytest.raises(ValueError, match="stage 0 .pipeline 0. is on rank 0, not 2"):
        t.record((0, 0, 5), where=(2, 0))


def test_columns_grow_by_half_with_absent_entries():
    cols = Columns(3)
    cols.room(9)
    assert len(cols.forward) == len(cols.where) == 10
    cols.forward[9] = 0
    cols.room(10)
    assert len(cols.applied) == 16 and cols.forward[15] == ABSENT  # 11 + 10 // 2
    assert cols.slots() == [9] and cols.slots("where") == []


def test_a_pipelines_columns_hold_its_micro_batches_only():
    """Pipeline 1 of 3 runs micro-batches 1, 4, 7 ...: slot i is 1 + 3 i; a
    micro-batch off that line (a program the completeness check refuses)
    turns the columns to one slot per micro-batch, entries kept."""
    t = VersionTable()
    t.columns[(1, 0)] = cols = Columns(0, 3, 1)
    for mb, v in [(1, 5), (7, 6), (13, 8)]:
        i = cols.slot(mb)
        cols.room(i)
        cols.forward[i] = v
    assert [cols.slot(mb) for mb in (1, 7, 13)] == [0, 2, 4] and len(cols.forward) == 6
    assert dict(t.forward) == {(1, 0, 1): 5, (1, 0, 7): 6, (1, 0, 13): 8}
    assert (1, 0, 4) not in t.forward and (1, 0, 2) not in t.forward
    assert cols.slot(0) == 0 and (cols.stride, cols.phase) == (1, 0)  # below the line
    assert len(cols.forward) == 1 + 6 * 3
    assert dict(t.forward) == {(1, 0, 1): 5, (1, 0, 7): 6, (1, 0, 13): 8}
    assert cols.slot(5) == 5


@pytest.mark.parametrize("name,p,m", [("paci", 4, 8), ("amdp", 4, 8), ("pipedream-2bw", 3, 6),
                                      ("zb-h1", 4, 8), ("amdp", 6, 12)])
def test_a_runs_table_reads_as_the_replays_dicts(name, p, m):
    """On real runs: every forward has a backward, an applied step and a
    where on the rank holding its replica; the views read the columns."""
    c = compiled(name, p, m)
    un = Unrolled.of(c.programs, c.manifest.period, 1 if c.manifest.synchronous else 3)
    t = replay_versions(c.manifest, un)
    keys = list(t.forward)
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert keys == list(t.backward) == list(t.applied) == list(t.where)
    n = c.manifest.num_pipelines  # a slot per micro-batch of the replica's pipeline
    assert {(cols.stride, cols.phase) for (pipe, _), cols in t.columns.items()
            if (cols.stride, cols.phase) != (n, pipe)} == set()
    ops = {}  # per key, where its forward and its last backward-type op are
    for r, stream in enumerate(un.streams):
        for i, ins in enumerate(stream):
            if ins.op in ("F", "B", "I", "W"):
                ops.setdefault((ins.pipeline, ins.stage, ins.mb), {})[ins.op] = (r, i, ins)
    assert set(ops) == set(keys)
    for key in keys:
        later = [v for op, v in ops[key].items() if op != "F"]
        assert t.forward[key] == ops[key]["F"][2].version
        assert t.backward[key] == max(ins.version for _, _, ins in later)
        assert t.where[key] == max(later, key=lambda v: v[1])[:2]  # the last of them
        assert t.where[key][0] == c.manifest.stage_to_rank[key[0]][key[1]]
        assert t.applied[key] == key[2] // (c.manifest.period.microbatches
                                            // c.manifest.period.steps)
    assert t.differences("backward") == [t.backward[k] - t.forward[k] for k in keys]
    assert t.differences("applied") == [t.applied[k] - t.forward[k] for k in keys]
