"""Specs at the edges (p = 1, m < p, m = 1, very large p x m) compile correctly
or are refused with a reason; what compiles runs to the end, never hangs
(PyTorch's pipelining hangs when micro-batches < ranks)."""

from __future__ import annotations

import time

import pytest
from reliability_testing import TINY, compile_preset, launch, wait_all

from schedc.compiler import compile_spec
from schedc.errors import UserError
from schedc.presets import PRESETS, preset_spec
from schedc.spec import SpecError
from schedc.verify import verify

EDGES = [dict(stages=1, microbatches=1), dict(stages=1, microbatches=4),
         dict(stages=2, microbatches=1), dict(stages=4, microbatches=1),
         dict(stages=4, microbatches=2), dict(stages=4, microbatches=3)]


def _compile(name, kw):
    """The compiled programs, or None when the Spec's validation refuses it with a
    reason. Any other error (a VerifyError above all) is a compiler failure, not
    a refusal, and fails the test."""
    try:
        spec = preset_spec(name, **kw).validate()
    except SpecError as exc:
        assert exc.field and str(exc).strip()  # refused, naming the field and why
        return None
    return compile_spec(spec)


@pytest.mark.parametrize("kw", EDGES, ids=lambda kw: f"p{kw['stages']}-m{kw['microbatches']}")
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_edges_compile_or_are_refused_with_a_reason(name, kw):
    t0 = time.monotonic()
    _compile(name, kw)
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("kw", EDGES[:5], ids=lambda kw: f"p{kw['stages']}-m{kw['microbatches']}")
@pytest.mark.parametrize("name", ["1f1b", "gpipe", "zb-h1", "chimera", "paci", "pipedream",
                                  "pipedream-2bw"])
def test_edges_that_compile_run_to_the_end(name, kw, tmp_path):
    """In-process: a hang would be reported as a deadlock; none may happen."""
    from reliability_testing import write_programs
    from schedc.runtime.session import train
    from test_numerics import _session

    compiled = _compile(name, kw)
    if compiled is None:
        pytest.skip("refused by the compiler")
    d = write_programs(tmp_path / "p", compiled.manifest, compiled.programs)
    lines = train(_session(d, "--steps", "2"))
    assert lines and all(line["loss"] == line["loss"] for line in lines)


@pytest.mark.slow
def test_fewer_microbatches_than_ranks_under_gloo(tmp_path):
    d = compile_preset(tmp_path / "p", "1f1b", stages=4, microbatches=1)
    ranks = launch(4, [str(d), *TINY, "--steps", "3", "--timeout", "60"], tmp_path / "logs")
    wait_all(ranks, 240)
    for r in ranks:
        assert r.proc.returncode == 0, r.text()


@pytest.mark.parametrize("name,kw", [("1f1b", dict(stages=32, microbatches=256)),
                                     ("gpipe", dict(stages=64, microbatches=64)),
                                     ("zb-h1", dict(stages=16, microbatches=128)),
                                     ("interleaved-1f1b", dict(stages=32, ranks=16,
                                                               microbatches=64))])
def test_large_p_times_m_compiles_quickly(name, kw):
    t0 = time.monotonic()
    compiled = compile_spec(preset_spec(name, **kw).validate())
    assert time.monotonic() - t0 < 30
    assert len(compiled.programs) == kw.get("ranks", kw["stages"])


def test_model_with_fewer_layers_than_stages_is_refused_before_running(tmp_path):
    from test_numerics import _session

    d = compile_preset(tmp_path / "p", "1f1b", stages=8, microbatches=2)
    with pytest.raises(UserError, match=r"stage 4 of model gpt-tiny without parameters"):
        _session(d)


@pytest.mark.parametrize("p,m", [(4, 1), (4, 3), (5, 5), (7, 7)])
def test_amdp_with_few_microbatches_is_constructed_and_verified(p, m):
    """Once refused by validation (m < p; odd p at m = p): the modulo
    construction now covers them, with a longer period (a bubble) where two
    steps would otherwise fall inside one micro-batch's flight."""
    c = compile_spec(preset_spec("amdp", stages=p, microbatches=m).validate())
    verify(c.manifest, c.programs)
    a = c.manifest.analysis
    assert a["order_policy"] == {"construction": "modulo"}
    assert a["max_inconsistency"] <= 1 and a["max_delay"] <= 1
