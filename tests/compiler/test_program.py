"""Instr built by its own __init__ (slots set directly) behaves as the frozen dataclass."""

import dataclasses

import pytest

from schedc.program import Instr, shift_all


def test_instr_fields_defaults_equality_and_hash():
    a = Instr("F", 1, 2, 0, 3)
    b = Instr(op="F", stage=1, mb=2, pipeline=0, version=3)
    assert a == b and hash(a) == hash(b)
    assert (a.peer, a.group, a.count, a.alpha, a.lookahead) == (None,) * 5
    assert [f.name for f in dataclasses.fields(Instr)] == [
        "op", "stage", "mb", "pipeline", "version", "peer", "group", "count", "alpha",
        "lookahead"]


def test_instr_is_frozen_and_replace_builds_a_new_one():
    a = Instr("STEP", stage=1, pipeline=0, version=2, count=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.version = 3  # type: ignore[misc]
    assert dataclasses.replace(a, version=3) == Instr("STEP", 1, None, 0, 3, count=8)


def test_shift_all_copies_every_field():
    a = Instr("SWAP", stage=1, pipeline=0, version=2, lookahead=True)
    b = Instr("ALLREDUCE", stage=1, pipeline=0, group=(0, 3))
    assert shift_all([a, b], 8, 1) == [Instr("SWAP", 1, None, 0, 3, lookahead=True), b]
