"""Fuzzing the program loader and verifier: random JSON edits, dropped,
duplicated and reordered instructions, wrong types, truncated and missing
files. Every mutant loads and verifies, or fails with a located UserError --
never a traceback, never a hang. Inputs that once failed live in corpus/."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from program_fuzzing import CORPUS, check_directory, mutate, snapshot, write
from reliability_testing import compile_preset

from schedc.errors import ProgramFileError
from schedc.files import load_programs

BASES = {
    "1f1b": dict(stages=2, microbatches=3),
    "zb-h1": dict(stages=2, microbatches=2),
    "paci": dict(stages=2, microbatches=2),
    "chimera": dict(stages=2, microbatches=2),
    "interleaved-1f1b": dict(stages=4, ranks=2, microbatches=2),
}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {n: snapshot(compile_preset(root / n, n, **kw)) for n, kw in BASES.items()}


OPS = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 50), st.integers(0, 10**6),
                         st.integers(0, 100)), min_size=1, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(BASES)), ops=OPS)
def test_mutated_program_directories(bases, tmp_path_factory, name, ops):
    d = write(tmp_path_factory.mktemp("m", numbered=True), mutate(bases[name], ops))
    check_directory(d)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(BASES)), ops=OPS)
def test_any_edit_breaks_the_hashes(bases, tmp_path_factory, name, ops):
    files = mutate(bases[name], ops)
    if files == bases[name]:
        return
    d = write(tmp_path_factory.mktemp("h", numbered=True), files)
    same = all(json.loads(files.get(n, "null") or "null") == json.loads(t)
               for n, t in bases[name].items()) if all(_parses(t) for t in files.values()) \
        else False
    if same:
        return  # re-serialised identically in meaning: not an edit
    with pytest.raises(ProgramFileError):
        load_programs(d)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("entry", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_corpus(entry, tmp_path):
    """Inputs the fuzzer once broke the loader or verifier with (and their outcome)."""
    case = json.loads(entry.read_text())
    outcome = check_directory(write(tmp_path / "d", case["files"]))
    assert outcome == case["expect"], (outcome, case.get("note"))
