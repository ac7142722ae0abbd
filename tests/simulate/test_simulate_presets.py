"""Under unit costs and zero latency the simulator reproduces the compiler's
analysis for every preset, and the closed-form bubble ratios."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from schedc.simulate import figures, simulate
from schedc.simulate.compute_only import programs_from_orders

sys.path.insert(0, str(Path(__file__).parent))
from orders import gpipe, one_f_one_b, zb_h1_like  # noqa: E402

from schedc import compiler  # noqa: E402
from schedc.presets import preset_spec  # noqa: E402

PRESETS = [
    ("gpipe", {}), ("1f1b", {}), ("interleaved-1f1b", {"stages": 8, "ranks": 4}),
    ("zb-h1", {}), ("chimera", {}), ("pipedream", {"microbatches": 1}),
    ("pipedream-2bw", {}), ("paci", {}), ("amdp", {}),
]


def _compile(name: str, overrides: dict):
    """A compile error fails the test: it must never turn into a skip."""
    kw = {"stages": 4, "microbatches": 8, **overrides}
    return compiler.compile_spec(preset_spec(name, **kw))


@pytest.mark.parametrize(("name", "overrides"), PRESETS, ids=[p[0] for p in PRESETS])
def test_reproduces_compiler_analysis(name: str, overrides: dict) -> None:
    c = _compile(name, overrides)
    a = c.manifest.analysis
    steps = a.get("analysed_repeats", 1)
    fig = figures(simulate(c.manifest, list(c.programs), steps=steps))
    assert fig.makespan == pytest.approx(a["makespan"])
    assert fig.bubble_ratio == pytest.approx(a["bubble_ratio"])
    assert [r.peak_activations for r in fig.ranks] == [
        r["peak_activations"] for r in a["ranks"]]
    assert [r.weight_copies for r in fig.ranks] == [r["weight_copies"] for r in a["ranks"]]
    assert fig.max_inconsistency == a.get("max_inconsistency", 0)
    assert fig.max_delay == a.get("max_delay", 0)
    steady = figures(simulate(c.manifest, list(c.programs), steps=8 if steps > 1 else 1))
    assert steady.steady_state_bubble_ratio == pytest.approx(a["steady_state_bubble_ratio"])


@pytest.mark.parametrize(("p", "m"), [(4, 8), (8, 16), (3, 5)])
def test_closed_form_from_compiled_presets(p: int, m: int) -> None:
    for name in ("gpipe", "1f1b"):
        c = _compile(name, {"stages": p, "microbatches": m})
        fig = figures(simulate(c.manifest, list(c.programs)))
        assert fig.bubble_ratio == pytest.approx((p - 1) / (m + p - 1))


def test_interleaved_closed_form() -> None:
    p, v, m = 4, 2, 8
    c = _compile("interleaved-1f1b", {"stages": p * v, "ranks": p, "microbatches": m})
    fig = figures(simulate(c.manifest, list(c.programs)))
    assert fig.bubble_ratio == pytest.approx((p - 1) / (v * m + p - 1))


@pytest.mark.parametrize("gen", [gpipe, one_f_one_b])
@pytest.mark.parametrize(("p", "m"), [(2, 2), (4, 8), (8, 32)])
def test_closed_form_hand_made_orders(gen, p: int, m: int) -> None:
    fig = figures(simulate(*programs_from_orders(gen(p, m))))
    assert fig.bubble_ratio == pytest.approx((p - 1) / (m + p - 1))
    assert fig.steady_state_throughput == pytest.approx(m / ((m + p - 1) * 3))


def test_split_backward_frees_activations_at_i() -> None:
    fig = figures(simulate(*programs_from_orders(zb_h1_like(4, 8))))
    assert [r.peak_activations for r in fig.ranks] == [4, 3, 2, 1]
