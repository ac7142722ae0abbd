"""AMDP's automatic stage -> rank maps."""

from __future__ import annotations

import pytest

from schedc.directions import auto_directions, resolve_directions


def test_p4_is_down_and_up():
    assert auto_directions(4) == ((0, 1, 2, 3), (3, 2, 1, 0))


def test_p8_is_the_reference_choice():
    ref = [
        tuple(r for r in range(8)),
        tuple((11 - r) % 8 for r in range(8)),
        tuple((r + 4) % 8 for r in range(8)),
        tuple(7 - r for r in range(8)),
    ]
    assert auto_directions(8) == tuple(sorted(ref, key=lambda m: m[0]))
    assert auto_directions(8) == tuple(ref)


@pytest.mark.parametrize("p", range(2, 33))
def test_maps_are_permutations_with_distinct_stage0(p):
    maps = auto_directions(p)
    assert len(maps) == max(2, -(-p // 2))
    assert all(sorted(m) == list(range(p)) for m in maps)
    for s in range(p):  # the replicas of a stage sit on different ranks
        assert len({m[s] for m in maps}) == len(maps)
    firsts = [m[0] for m in maps]
    assert len(set(firsts)) == len(maps)
    assert len(set(maps)) == len(maps)


@pytest.mark.parametrize("p", [5, 6, 7, 9, 10, 12, 16, 31, 32])
def test_other_depths_are_rotations_by_minus_2k(p):
    maps = auto_directions(p)
    assert maps == tuple(tuple((s - 2 * k) % p for s in range(p)) for k in range(len(maps)))
    if p % 2 == 0:  # a rank holds the stages of one parity
        for r in range(p):
            assert {s % 2 for m in maps for s in range(p) if m[s] == r} == {r % 2}


def test_auto_needs_two_ranks_and_one_stage_per_rank():
    with pytest.raises(ValueError):
        auto_directions(1)
    with pytest.raises(ValueError):
        resolve_directions("auto", 8, 4)


def test_named_and_explicit_maps_repeat_over_chunks():
    assert resolve_directions(("down", "up"), 4, 2) == ((0, 1, 0, 1), (1, 0, 1, 0))
    assert resolve_directions(((1, 0, 2),), 6, 3) == ((1, 0, 2, 1, 0, 2),)
    with pytest.raises(ValueError):
        resolve_directions(((0, 0, 1),), 3, 3)
    with pytest.raises(ValueError):
        resolve_directions(("down", (0, 1)), 2, 2)


def test_v_shape_goes_down_then_back_up():
    assert resolve_directions("v", 8, 4) == ((0, 1, 2, 3, 3, 2, 1, 0),)
    with pytest.raises(ValueError, match="stages must be 2 x ranks"):
        resolve_directions(("v",), 12, 4)


def test_v_shape_needs_zero_bubble_and_flush():
    from schedc.spec import Spec, SpecError

    base = dict(stages=8, ranks=4, directions="v", microbatches=8, split_backward=True)
    Spec(order="zero-bubble", **base).validate()
    with pytest.raises(SpecError, match="direction v"):
        Spec(order="1f1b", **base).validate()
    with pytest.raises(SpecError, match="direction v"):
        Spec(order="zero-bubble", flush=False, **base).validate()
