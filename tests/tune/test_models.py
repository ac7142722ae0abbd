"""The built-in estimate (`--model NAME --hardware NAME`): the formulas of
schedc/tune/models.py, exact values."""

from __future__ import annotations

import pytest

from schedc.tune import Query, estimate, tune
from schedc.tune.models import HARDWARE, MODELS


def test_gpt_1b_on_h100_per_layer_costs() -> None:
    p = estimate("gpt-1b", "h100", ranks=8)
    s, h, V = 2048, 2048, 50257
    rate = 989e12 * 0.5
    layer = 24 * s * h * h + 4 * s * s * h
    t = p.base.stage_times
    assert len(t) == 24 and p.max_stages == 24 and p.mb_size == 1
    assert t[5]["F"] == pytest.approx(layer / rate, rel=1e-12)
    assert t[5]["B"] == pytest.approx(2 * layer / rate, rel=1e-12)
    assert t[5]["I"] == t[5]["W"] == t[5]["F"]
    assert t[23]["F"] == pytest.approx((layer + 2 * s * h * V) / rate, rel=1e-12)
    params = 12 * h * h + 13 * h
    assert p.base.weight_bytes[5] == 2 * params
    assert p.base.weight_bytes[0] == 2 * (params + V * h + s * h)
    assert t[5]["STEP"] == pytest.approx(32 * params / 3.35e12, rel=1e-12)
    assert p.base.stored_activation_bytes[5] == 34 * s * h
    assert p.base.activation_bytes[5] == 2 * s * h and p.base.activation_bytes[23] == 0
    assert p.static_bytes[5] == 14 * params
    assert (p.base.latency, p.base.bandwidth) == (5e-6, 450e9)  # inside one node
    assert p.memory_bytes == 80e9 and p.kind == "estimate" and p.unit == "s"


def test_links_leave_the_node_past_eight_gpus() -> None:
    assert estimate("gpt-7b", "a100", ranks=16).base.bandwidth == 25e9
    assert estimate("gpt-7b", "a100", ranks=8, dp=2).dp_link == (10e-6, 25e9)
    assert estimate("gpt-7b", "a100", ranks=4, dp=2).dp_link == (5e-6, 300e9)


def test_an_estimate_stage_is_its_layers() -> None:
    p = estimate("gpt-125m", "h100", ranks=4)
    c = p.costs(4, 2)  # 3 layers per stage, 2 samples per micro-batch
    layer = p.base.stage_times[1]["F"]
    assert c.stage_times[1]["F"] == pytest.approx(3 * 2 * layer, rel=1e-12)
    assert p.static_of(4)[1] == pytest.approx(3 * p.static_bytes[1])


def test_a_tune_without_a_run() -> None:
    p = estimate("gpt-350m", "h200", ranks=4)
    result = tune(Query(ranks=4, batch=16, memory=p.memory_bytes), p, ["1f1b", "zb-h1"],
                  max_microbatches=8)
    best = result.best
    assert best.candidate.label() == "zb-h1 m8"
    assert 0 < best.peak_memory < 141e9
    assert set(MODELS) >= {"gpt-1b", "gpt-7b"} and set(HARDWARE) == {"a100", "h100", "h200"}
