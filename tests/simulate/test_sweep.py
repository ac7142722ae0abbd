"""The sweep: every compile that verifies also simulates, and under unit costs
the simulator's makespan, bubble and per-micro-batch version table equal the
compiler's analysis exactly.

The grid is every preset x p in 2..8 x m in {1, p-1, p, 2p, 4p} x dp_period
{1, 2} x look-ahead off/on (1,400 points; p counts ranks, so interleaved-1f1b
and zbv run 2p stages). CI runs a deterministic sample of
it (every point whose index is a multiple of the stride, SWEEP_STRIDE below,
so every preset is still covered; AMDP up to p = 5 only, CI_AMDP_MAX_P) plus random valid Specs from
hypothesis; the nightly tier (SCHEDC_NIGHTLY=1, tests/tiers.py) or
SCHEDC_SWEEP=all runs the whole grid, and SCHEDC_HYPOTHESIS_EXAMPLES sets the
random budget (nightly: 300).
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from tiers import NIGHTLY

from schedc.compiler import compile_spec
from schedc.errors import UserError
from schedc.presets import PRESETS, preset_spec
from schedc.runs import replay_versions
from schedc.simulate import figures, simulate
from schedc.simulate.metrics import version_rows
from schedc.spec import SpecError
from schedc.unroll import Unrolled

sys.path.insert(0, str(Path(__file__).parents[1] / "compiler"))
from test_properties import specs  # noqa: E402

FULL = NIGHTLY or os.environ.get("SCHEDC_SWEEP") == "all"
SWEEP_STRIDE = 1 if FULL else 23
# AMDP is constructed (schedc.modulo): CI's sample keeps every depth of the grid.
CI_AMDP_MAX_P = 8
EXAMPLES = int(os.environ.get("SCHEDC_HYPOTHESIS_EXAMPLES", "300" if NIGHTLY else "25"))


def _grid() -> list[tuple[str, int, int, int, bool]]:
    points = []
    for name, p in itertools.product(PRESETS, range(2, 9)):
        for m in sorted({1, p - 1, p, 2 * p, 4 * p}):
            for dp_period, lookahead in itertools.product((1, 2), (False, True)):
                points.append((name, p, m, dp_period, lookahead))
    sample = points[::SWEEP_STRIDE]
    return sample if FULL else [pt for pt in sample if pt[0] != "amdp" or pt[1] <= CI_AMDP_MAX_P]


def _spec(name: str, p: int, m: int, dp_period: int, lookahead: bool):
    two_chunks = name in ("interleaved-1f1b", "zbv")
    kw = {"stages": 2 * p, "ranks": p} if two_chunks else {"stages": p}
    if dp_period > 1:
        kw |= {"dp_mode": "async-sparse", "dp_period": dp_period, "dp_fraction": 0.5}
    if lookahead:
        kw["lookahead"] = "auto"
    return preset_spec(name, microbatches=m, **kw)


def check_simulation_matches_analysis(c) -> None:
    a = c.manifest.analysis
    repeats = a["analysed_repeats"]
    sim = simulate(c.manifest, list(c.programs), steps=repeats)
    fig = figures(sim)
    assert fig.makespan == a["makespan"]
    assert fig.bubble_ratio == pytest.approx(a["bubble_ratio"], abs=1e-12)
    assert [r.peak_activations for r in fig.ranks] == [r["peak_activations"] for r in a["ranks"]]
    table = replay_versions(c.manifest, Unrolled.of(c.programs, c.manifest.period, repeats))
    expected = {k: (table.forward[k], table.backward[k], table.applied[k])
                for k in table.forward}
    assert version_rows(sim) == expected
    assert fig.max_inconsistency == a["max_inconsistency"]
    assert fig.max_delay == a["max_delay"]
    assert min(fig.delay_histogram, default=0) >= 0
    assert min(fig.inconsistency_histogram, default=0) >= 0


def _compile(spec):
    """The compiled programs, or None when the Spec is refused with a reason."""
    try:
        spec.validate()
    except SpecError:
        return None
    return compile_spec(spec)


@pytest.mark.parametrize("point", _grid(), ids=lambda pt: "-".join(map(str, pt)))
def test_grid_point_simulates_as_analysed(point) -> None:
    c = _compile(_spec(*point))
    if c is not None:
        check_simulation_matches_analysis(c)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(specs(bounds=False))
def test_random_specs_simulate_as_analysed(spec) -> None:
    try:
        c = compile_spec(spec)
    except UserError as exc:  # only a refusal naming a bound is acceptable
        assert "bound" in str(exc) or exc.__class__.__name__ == "SpecError", exc
        return
    check_simulation_matches_analysis(c)
