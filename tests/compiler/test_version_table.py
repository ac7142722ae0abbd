"""versions.VersionTable's reporting: per-key differences in bulk, the worst
key (the least among equals), and merging rank tables."""

from __future__ import annotations

from dataclasses import replace

from schedc.version_table import VersionTable


def _table(rows: dict[tuple[int, int, int], tuple[int, int, int]]) -> VersionTable:
    """(pipeline, stage, mb) -> (forward, backward, applied); where = (stage, mb)."""
    t = VersionTable()
    for key, (f, b, a) in rows.items():
        t.forward[key], t.backward[key], t.applied[key] = f, b, a
        t.where[key] = (key[1], key[2])
    return t


ROWS = {(0, 1, 5): (2, 3, 4), (0, 0, 7): (1, 3, 2), (0, 0, 2): (0, 2, 1), (1, 0, 1): (0, 0, 2)}


def test_differences_follow_forward_order():
    t = _table(ROWS)
    assert t.inconsistencies() == [1, 2, 2, 0]
    assert t.delays() == [2, 1, 1, 2]
    assert t.inconsistencies() == [t.inconsistency(k) for k in t.forward]
    assert t.delays() == [t.delay(k) for k in t.forward]


def test_worst_is_the_least_key_among_equals():
    t = _table(ROWS)
    assert t.worst_inconsistency() == (2, (0, 0, 2), (0, 2))
    assert t.worst_delay() == (2, (0, 1, 5), (1, 5))
    assert VersionTable().worst_inconsistency() is None
    assert VersionTable().worst_delay() is None
    assert VersionTable().inconsistencies() == []


def test_merging_forgets_the_differences_made():
    total = _table({(0, 0, 0): (0, 1, 0)})
    assert total.worst_inconsistency() == (1, (0, 0, 0), (0, 0))
    _table({(0, 1, 0): (0, 4, 1)}).merge_into(total)
    assert total.inconsistencies() == [1, 4]
    assert total.worst_inconsistency() == (4, (0, 1, 0), (1, 0))
    assert total.worst_delay() == (1, (0, 1, 0), (1, 0))


def test_differences_where_the_later_table_has_another_order():
    """Backward versions recorded in another order than the forwards (or
    for other keys) are looked up by key: the same differences."""
    t = _table(ROWS)
    t.backward = dict(reversed(t.backward.items()))
    t.applied = {**t.applied, (2, 0, 0): 9}
    assert t.inconsistencies() == [1, 2, 2, 0]
    assert t.delays() == [2, 1, 1, 2]


def test_a_key_added_after_the_differences_makes_them_again():
    t = _table({(0, 0, 0): (0, 1, 0)})
    assert t.inconsistencies() == [1]
    t.forward[(0, 0, 1)], t.backward[(0, 0, 1)], t.where[(0, 0, 1)] = 1, 4, (0, 1)
    assert t.inconsistencies() == [1, 3]
    assert t.worst_inconsistency() == (3, (0, 0, 1), (0, 1))
    copy = replace(t)  # a copy makes its own
    assert copy.inconsistencies() == [1, 3] and copy._differences is not t._differences
