"""The search space: exactly which candidates exist, and the Spec each compiles."""

from __future__ import annotations

import pytest

from schedc.presets import PRESETS
from schedc.tune.space import Candidate, check_families, divisors, enumerate_space


def labels(**kw) -> list[str]:
    args = {"families": list(PRESETS), "ranks": 2, "batch": 4, "max_microbatches": 4}
    args.update(kw)
    return [c.label() for c in enumerate_space(**args)]


def test_every_family_two_ranks_batch_four_exactly() -> None:
    la_split = [f"{f} m{m}{la}{sp}" for f in ("pipedream", "pipedream-2bw", "paci")
                for m in (1, 2, 4) for la in ("", " lookahead") for sp in ("", " split")]
    expected = [
        *(f"{f} m{m}{sp}" for f in ("gpipe", "1f1b") for m in (1, 2, 4) for sp in ("", " split")),
        "interleaved-1f1b m2 v2", "interleaved-1f1b m2 v4",
        "interleaved-1f1b m4 v2", "interleaved-1f1b m4 v4",
        "zb-h1 m1", "zb-h1 m2", "zb-h1 m4",
        "zbv m1 v2", "zbv m2 v2", "zbv m4 v2",
        *(f"chimera m{m}{sp}" for m in (1, 2, 4) for sp in ("", " split")),
        *la_split,
        # at 2 ranks AMDP's auto directions are down,up: one of the two is kept
        *(f"amdp m{m}{la}" for m in (1, 2, 4) for la in ("", " lookahead")),
    ]
    assert labels() == expected
    assert len(expected) == 70


def test_micro_batches_divide_the_batch_and_respect_the_cap() -> None:
    got = {c.microbatches for c in enumerate_space(["1f1b"], 4, 24, 8)}
    assert got == {1, 2, 3, 4, 6, 8}
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


def test_max_stages_leaves_out_deeper_candidates() -> None:
    got = labels(families=["interleaved-1f1b", "zbv", "1f1b"], max_stages=2)
    assert got == ["1f1b m1", "1f1b m1 split", "1f1b m2", "1f1b m2 split", "1f1b m4",
                   "1f1b m4 split"]
    assert labels(families=["interleaved-1f1b"], chunk_choices=(3,)) == [
        "interleaved-1f1b m2 v3", "interleaved-1f1b m4 v3"]


def test_amdp_keeps_both_directions_where_they_differ() -> None:
    got = labels(families=["amdp"], ranks=8, batch=8, max_microbatches=8)
    assert got[-4:] == ["amdp m8", "amdp m8 lookahead", "amdp m8 dirs=down,up",
                        "amdp m8 dirs=down,up lookahead"]


def test_candidate_specs() -> None:
    spec = Candidate("interleaved-1f1b", 8, chunks=2).spec(4)
    assert (spec.stages, spec.num_ranks, spec.microbatches, spec.order) == (8, 4, 8,
                                                                            "interleaved")
    spec = Candidate("zbv", 4, chunks=2).spec(4)
    assert (spec.stages, spec.num_ranks, spec.v_shaped) == (8, 4, True)
    spec = Candidate("amdp", 8, directions="down,up", lookahead=True).spec(8)
    assert spec.directions == ("down", "up") and spec.lookahead == "auto" and not spec.flush
    assert Candidate("paci", 4, split=True).spec(4).split_backward
    assert Candidate("paci", 4).spec(4).name == "paci-m4"


def test_families_checked_by_name() -> None:
    assert check_families(["paci", "1f1b", "paci"]) == ["paci", "1f1b"]
    with pytest.raises(ValueError, match="unknown family 'pacy'.*did you mean 'paci'"):
        check_families(["pacy"])
