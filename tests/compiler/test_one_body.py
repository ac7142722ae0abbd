"""The run a body shorter: split from one repetition of its body
(split_run's one_body), proven by the verifier, and taken by the compiler
only then. Where proven, its programs are those of the run that shows the
body twice; where refused, the compiler lowers that run, as before."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_periodic import _made_up
from tiers import NIGHTLY

from schedc import compiler
from schedc.compiler import (
    _periodic_programs,
    _proven_split,
    _split_programs,
    choose_policy,
    compile_spec,
)
from schedc.errors import VerifyError
from schedc.order import OrderError
from schedc.periodic import _best_start, _Columns, _partial_start, split_run
from schedc.presets import preset_spec
from schedc.program import Period
from schedc.spec import SpecError

# (name, p, m, overrides, the batches the compile lowers): list-scheduled runs
# whose step holds more micro-batches than are in flight (one warm-up step, a
# fixed delay adding one), with look-ahead, periodic DP, a fixed delay of 2,
# split backward and a tight in-flight bound; AMDP's modulo runs.
GRID = [
    ("paci", 2, 4, {}, [2]), ("paci", 3, 7, {}, [2]), ("paci", 4, 13, {}, [2]),
    ("pipedream-2bw", 3, 6, {}, [3]), ("pipedream-2bw", 4, 11, {}, [3]),
    ("paci", 3, 6, {"dp_mode": "async-sparse", "dp_period": 2}, [4]),
    ("paci", 3, 6, {"order": "zero-bubble", "split_backward": True,
                    "max_inconsistency": None}, [2]),
    ("paci", 5, 10, {"max_inflight": ((0, 2),)}, [2]),
    ("amdp", 4, 8, {}, [2]), ("amdp", 6, 12, {}, [2]), ("amdp", 16, 64, {}, [2]),
    # refused (the split finds no body, or the verifier refuses it): the run of
    # two bodies follows, and whatever followed it before (the long run, the repair)
    ("pipedream", 4, 9, {}, [2, 3]),
    ("pipedream-2bw", 3, 6, {"fixed_delay": 2, "versions": 3, "max_delay": None}, [4, 5]),
    ("paci", 4, 9, {"lookahead": "auto"}, [2, 3, 8, 3, 8]),
    ("pipedream", 3, 7, {"lookahead": 0.5}, [2, 3, 8, 3, 8]),
    ("amdp", 8, 16, {}, [2, 3]),
]
# CI's budget; the nightly tier raises it (tests/tiers.py)
EXAMPLES = int(os.environ.get("SCHEDC_HYPOTHESIS_EXAMPLES", "300" if NIGHTLY else "25"))
IDS = [f"{n}-p{p}-m{m}-{'-'.join(map(str, kw.values())) or 'preset'}"
       for n, p, m, kw, _ in GRID]


def _spec(name, p, m, kw):
    return preset_spec(name, stages=p, microbatches=m, **kw).validate()


@pytest.mark.parametrize("name,p,m,kw,lowered", GRID, ids=IDS)
def test_a_proven_one_body_split_is_the_two_body_runs(name, p, m, kw, lowered):
    spec = _spec(name, p, m, kw)
    policy = choose_policy(spec)
    try:
        one = _split_programs(spec, policy, repair=False, one_body=True)
    except VerifyError:
        one = None
    proven = None if one is None else _proven_split(spec, *one)
    assert (proven is not None) == (len(lowered) == 1)
    if proven is not None:
        assert one[0] == _periodic_programs(spec, policy)[0]
        assert one[1:3] == _periodic_programs(spec, policy)[1:]
        assert one[3] == 1  # the run lowered holds one body


@pytest.mark.parametrize("name,p,m,kw,lowered", GRID, ids=IDS)
def test_the_compile_lowers_the_one_body_run_first(name, p, m, kw, lowered, monkeypatch):
    spec = _spec(name, p, m, kw)
    seen = []
    lower = compiler._lowered
    monkeypatch.setattr(compiler, "_lowered",
                        lambda s, batches, *a, **k: seen.append(batches) or lower(s, batches,
                                                                                  *a, **k))
    compile_spec(spec)
    assert seen == lowered


@pytest.mark.parametrize("name,p,m", [("amdp", 8, 16), ("amdp", 6, 12), ("pipedream", 4, 9),
                                      ("pipedream-2bw", 4, 11), ("paci", 4, 13)])
def test_the_programs_are_those_compiled_without_the_one_body_run(name, p, m, monkeypatch):
    spec = _spec(name, p, m, {})
    before = compile_spec(spec)

    def no_one_body(*args, **kw):
        if kw.get("one_body"):
            raise VerifyError("off")
        return split(*args, **kw)

    split = compiler.split_run
    monkeypatch.setattr(compiler, "split_run", no_one_body)
    after = compile_spec(spec)
    assert before.programs == after.programs
    assert before.manifest == after.manifest


# ---- periodic._partial_start ----------------------------------------------------
@pytest.mark.parametrize("pattern", ["xx" + "FSFST" * 4 + "FF", "xFSFST" * 4, "FF", "xxxxx",
                                     "xx" + "FSFST" + "FSFx"])
def test_partial_start_is_best_start_where_a_whole_body_repeats(pattern):
    seq = _made_up(pattern)
    period = Period(microbatches=2, steps=1)
    columns = _Columns(seq, period)
    for length in range(1, len(seq) + 2):
        found = _partial_start(columns, length)
        same = columns.repeats(length)
        if found is None:
            assert b"\x01" not in same
            continue
        start, reps, stretch = found
        assert stretch == max(map(len, same.split(b"\x00")))
        if reps > 1:
            assert (start, reps) == _best_start(seq, length, period, columns)
        else:  # where the longest stretch of repeating instructions starts
            assert same[start:start + stretch] == b"\x01" * stretch
            assert b"\x01" * stretch not in same[:start + stretch - 1]


def test_one_body_split_starts_the_body_where_the_run_starts_repeating():
    # a prologue, one body and a drain whose first three repeat the body's
    seq = _made_up("xx" + "FSFST" + "FSFx")
    period = Period(microbatches=2, steps=1)
    (blind,), _ = split_run([seq], 2, period)
    assert blind.prologue == ()  # no whole repetition to see: no place to start
    (program,), extra = split_run([seq], 2, period, one_body=True)
    assert [i.op for i in program.prologue] == ["ALLREDUCE", "ALLREDUCE"]
    assert program.body == tuple(seq[2:7])
    assert extra == 1
    assert program.epilogue == tuple(seq[7:])


# ---- property: any proven one-body split is the two-body run's ------------------------
@st.composite
def short_run_specs(draw):
    """Asynchronous presets with extra bounds, at sizes where a step may hold
    more micro-batches than are in flight (the short runs)."""
    name = draw(st.sampled_from(["paci", "pipedream", "pipedream-2bw", "amdp"]))
    p = draw(st.integers(2, 8))
    m = draw(st.integers(p, 6 * p))
    extra = draw(st.sampled_from([{}, {}, {"lookahead": 0.5}, {"lookahead": "auto"},
                                  {"max_inflight": ((0, 2),)},
                                  {"max_inflight": ((0, 2),), "lookahead": "auto"},
                                  {"split_backward": True, "order": "zero-bubble",
                                   "max_inconsistency": None},
                                  {"dp_mode": "async-sparse", "dp_period": 2},
                                  {"fixed_delay": 2, "versions": 3, "max_delay": None},
                                  {"max_inconsistency": None, "max_delay": None}]))
    try:
        return preset_spec(name, stages=p, microbatches=m, **extra).validate()
    except SpecError:
        assume(False)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(short_run_specs())
def test_any_proven_one_body_split_is_the_two_body_runs(spec):
    policy = choose_policy(spec)
    try:
        one = _split_programs(spec, policy, repair=False, one_body=True)
    except (VerifyError, OrderError):
        assume(False)
    assume(_proven_split(spec, *one) is not None)
    two = _split_programs(spec, policy, repair=False)
    assert (one[0], one[1]) == (two[0], two[1])
