"""compiler._proven_unrepaired: list-scheduled asynchronous programs lowered
without place_receives' repairing replay are used only once the verifier
proves them, and are then the programs the repair gives."""

from __future__ import annotations

import pytest

import schedc.compiler as compiler
from schedc.compiler import _proven_unrepaired, _split_programs, choose_policy, compile_spec
from schedc.errors import VerifyError
from schedc.presets import preset_spec

SIZES = [("paci", 4, 8), ("paci", 3, 12), ("pipedream", 4, 8), ("pipedream-2bw", 3, 6),
         ("pipedream", 3, 1), ("paci", 8, 16)]


@pytest.mark.parametrize("name,p,m", SIZES)
def test_proven_programs_are_the_repaired_ones(name, p, m):
    spec = preset_spec(name, stages=p, microbatches=m)
    policy = choose_policy(spec)
    proven = _proven_unrepaired(spec, policy)
    repaired, period, _, _ = _split_programs(spec, policy)
    if proven is not None:
        programs, manifest, _, _ = proven
        assert programs == repaired
        assert manifest.period == period


def test_the_short_runs_take_the_shortcut():
    spec = preset_spec("paci", stages=4, microbatches=8)
    assert _proven_unrepaired(spec, choose_policy(spec)) is not None


def test_a_modulo_schedule_takes_only_its_one_body_run():
    # never repaired, a modulo run is tried here only a body short (test_one_body.py)
    spec = preset_spec("amdp", stages=4, microbatches=8)
    policy = choose_policy(spec)
    programs, _, _, construction = _proven_unrepaired(spec, policy)
    assert construction == "modulo"
    assert programs == _split_programs(spec, policy)[0]
    refused = preset_spec("amdp", stages=8, microbatches=16)
    assert _proven_unrepaired(refused, choose_policy(refused)) is None


def test_a_refusal_falls_back_to_the_repair(monkeypatch):
    spec = preset_spec("paci", stages=4, microbatches=8)
    expected = compile_spec(spec)
    real, calls = compiler.verify, []

    def first_refused(*args, **kwargs):  # the shortcut's proof refused, the repair's not
        calls.append(args)
        if len(calls) == 1:
            raise VerifyError("refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(compiler, "verify", first_refused)
    assert compile_spec(spec).programs == expected.programs
    assert len(calls) == 2
