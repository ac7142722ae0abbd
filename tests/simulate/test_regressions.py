"""The two bugs of issue 13, each reproduced as it was reported."""

from __future__ import annotations

import pytest

from schedc.compiler import compile_spec
from schedc.presets import preset_spec
from schedc.simulate import figures, simulate


def test_chimera_p4_m16_simulates_as_verified() -> None:
    """Was: 'send/receive mismatch: rank 1 instruction 56 (SEND_GRAD s1 mb0 ->0) meets
    rank 0 instruction 45 (RECV_ACT s3 p1 mb13 <-1)': the simulator matched messages
    per (src, dst), the verifier per (src, dst, pipeline)."""
    c = compile_spec(preset_spec("chimera", stages=4, microbatches=16))
    fig = figures(simulate(c.manifest, list(c.programs)))
    assert fig.makespan == c.manifest.analysis["makespan"] == 58.0
    assert fig.bubble_ratio == pytest.approx(c.manifest.analysis["bubble_ratio"], abs=1e-12)


@pytest.mark.parametrize("name,kw", [
    ("paci", {"stages": 4, "microbatches": 8, "dp_mode": "async-sparse", "dp_period": 2}),
    ("amdp", {"stages": 4, "microbatches": 5}),
])
def test_delays_use_microbatches_per_step(name: str, kw: dict) -> None:
    """Was: metrics took period.microbatches as one step's micro-batches; with a
    period of several steps (dp_period 2, AMDP at m = 5) delays went down to -9."""
    c = compile_spec(preset_spec(name, **kw))
    a = c.manifest.analysis
    assert c.manifest.period.steps > 1
    fig = figures(simulate(c.manifest, list(c.programs), steps=a["analysed_repeats"]))
    assert min(fig.delay_histogram) == 0 and min(fig.inconsistency_histogram) == 0
    assert (fig.max_delay, fig.max_inconsistency) == (a["max_delay"], a["max_inconsistency"]) \
        == (1, 1)
