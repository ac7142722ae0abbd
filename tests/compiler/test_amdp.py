"""AMDP constructed (schedc.modulo, schedc.modulo_search): exact figures, the
closed forms at every depth, and the docs table that states them."""

from __future__ import annotations

from pathlib import Path

import pytest
from compiling import compiled

from schedc.modulo import modulo_plan
from schedc.modulo_search import constructed
from schedc.presets import preset_spec

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"

# (p, m) -> (steady-state bubble, peak activations per rank, max inconsistency,
# max delay) under unit costs, as the compiled manifest's analysis gives them:
# m = 2N and m = p for p = 4..16 and the shapes of schedc.modulo_table
# (docs/schedules.md, the amdp table). No bubble wherever N divides m; odd p at
# m = p = 2N - 1 without a whole-period template gives each batch two whole
# iterations, one pipeline idle in the second: a bubble of 1/(2N).
FIGURES = {
    (3, 3): (1 / 19, [3, 3, 2], 1, 1),  # whole period (schedc.modulo_table; was 1/4)
    (3, 5): (1 / 31, [3, 4, 2], 1, 1),  # whole period (was 1/6)
    (3, 7): (1 / 43, [3, 4, 2], 1, 1),  # whole period (was 1/8)
    (3, 9): (1 / 55, [3, 4, 2], 1, 1),  # whole period (was 1/10)
    (4, 3): (1 / 7, [3, 3, 3, 3], 1, 1),  # whole period (was 1/4)
    (4, 4): (0.0, [3, 4, 4, 3], 1, 1),
    (4, 5): (1 / 16, [3, 4, 4, 3], 1, 1),  # whole period (was 1/6)
    (4, 7): (1 / 15, [3, 4, 4, 3], 1, 1),  # whole period (was 1/8)
    (4, 9): (1 / 19, [3, 4, 4, 3], 1, 1),  # whole period (was 1/10)
    (4, 11): (1 / 23, [3, 4, 4, 3], 1, 1),  # whole period (was 1/12)
    (5, 5): (4 / 49, [5, 5, 4, 5, 4], 1, 1),  # whole period (was 1/6)
    (5, 6): (0.0, [5, 5, 4, 5, 4], 1, 1),
    (5, 7): (1 / 22, [5, 5, 4, 5, 4], 1, 1),  # whole period (was 2/9)
    (5, 8): (1 / 19, [5, 5, 4, 5, 4], 1, 1),  # whole period (was 1/9)
    (6, 4): (11 / 47, [4, 3, 4, 4, 4, 4], 1, 1),  # whole period (was 1/3)
    (6, 5): (1 / 10, [5, 4, 5, 4, 5, 4], 1, 1),  # whole period (was 1/6)
    (6, 6): (0.0, [5, 4, 5, 4, 5, 4], 1, 1),
    (7, 7): (2 / 23, [7, 7, 6, 7, 6, 7, 6], 1, 1),  # whole period (was 1/8)
    (7, 8): (0.0, [7, 7, 6, 7, 6, 7, 6], 1, 1),
    (7, 9): (5 / 41, [7, 7, 6, 7, 6, 7, 6], 1, 1),  # whole period (was 0.2340)
    (8, 8): (0.0, [7, 8, 8, 7, 7, 8, 8, 7], 1, 1),
    (9, 9): (1 / 10, [8, 8, 7, 8, 7, 8, 7, 8, 7], 1, 1),
    (9, 10): (0.0, [8, 8, 7, 8, 7, 8, 7, 8, 7], 1, 1),
    (10, 10): (0.0, [8, 7, 8, 7, 8, 7, 8, 7, 8, 7], 1, 1),
    (11, 11): (1 / 12, [10, 10, 9, 10, 9, 10, 9, 10, 9, 10, 9], 1, 1),
    (11, 12): (0.0, [10, 10, 9, 10, 9, 10, 9, 10, 9, 10, 9], 1, 1),
    (12, 12): (0.0, [10, 9, 10, 9, 10, 9, 10, 9, 10, 9, 10, 9], 1, 1),
    (13, 13): (1 / 14, [11, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10], 1, 1),
    (13, 14): (0.0, [11, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10], 1, 1),
    (14, 14): (0.0, [11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10], 1, 1),
    (15, 15): (1 / 16, [13, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12], 1, 1),
    (15, 16): (0.0, [13, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12], 1, 1),
    (16, 16): (0.0, [13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12], 1, 1),
}


@pytest.mark.parametrize("p,m", sorted(FIGURES))
def test_amdp_figures_are_exact(p, m):
    bubble, peaks, inconsistency, delay = FIGURES[p, m]
    a = compiled("amdp", p, m).manifest.analysis
    assert a["order_policy"] == {"construction": "modulo"}
    assert a["steady_state_bubble_ratio"] == pytest.approx(bubble, abs=1e-12)
    assert [r["peak_activations"] for r in a["ranks"]] == peaks
    assert (a["max_inconsistency"], a["max_delay"]) == (inconsistency, delay)


def test_docs_table_states_these_figures():
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0].isdigit():
            p, _, m, bubble, _, peaks, inc, delay = cells
            rows[int(p), int(m)] = (float(bubble), [int(x) for x in peaks.split()],
                                    int(inc), int(delay))
    assert set(rows) == set(FIGURES)
    for key, (bubble, peaks, inc, delay) in FIGURES.items():
        assert rows[key] == (round(bubble, 4), peaks, inc, delay), key


def _depths() -> list[int]:
    return [*range(2, 34), 47, 48, 63, 64]


@pytest.mark.parametrize("p", _depths())
def test_no_bubble_at_every_depth_when_n_divides_m(p):
    n = preset_spec("amdp", stages=p).num_pipelines
    for m in (2 * n, 4 * n):
        plan = modulo_plan(preset_spec("amdp", stages=p, microbatches=m))
        assert plan is not None and plan.template.ii == 3 * n, (p, m)


@pytest.mark.parametrize("p", [5, 6, 7, 9, 10, 12, 13, 16, 31, 32, 33, 64])
def test_the_template_is_a_closed_form_beyond_the_reference_depths(p):
    """Not searched: the first closed-form candidate is the template kept."""
    spec = preset_spec("amdp", stages=p, microbatches=2 * preset_spec("amdp", stages=p)
                       .num_pipelines)
    maps = spec.resolved_directions()
    ii, offsets, starts = next(constructed(maps, (0,)))
    t = modulo_plan(spec).template
    assert (t.ii, t.offsets, t.starts) == (ii, offsets, starts)


@pytest.mark.parametrize("p,m", [(6, 8), (6, 10), (10, 16), (10, 17), (14, 22), (30, 50)])
def test_steps_between_pipelines_odd_n_even_p_no_bubble(p, m):
    """N odd, N not dividing m: pipeline k enters 3k units after pipeline 0."""
    n = p // 2
    plan = modulo_plan(preset_spec("amdp", stages=p, microbatches=m))
    assert plan.template.ii == 3 * n
    assert plan.template.offsets == tuple(3 * k for k in range(n))


@pytest.mark.parametrize("p,m,per_batch", [(5, 10, 4), (7, 14, 4), (9, 9, 2), (12, 14, 3),
                                           (16, 8, 2)])
def test_steps_between_pipelines_otherwise_whole_iterations_per_batch(p, m, per_batch):
    """Each batch takes whole iterations (pipelines without one more micro-batch
    of the batch idle): the steps fall between iterations."""
    plan = modulo_plan(preset_spec("amdp", stages=p, microbatches=m))
    n = plan.admission.n
    assert (plan.template.ii, plan.admission.per_batch) == (3 * n, per_batch)


@pytest.mark.parametrize("p,m", [(6, 10), (10, 16), (9, 9), (8, 6), (4, 1)])
def test_other_shapes_compile_constructed_and_verified(p, m):
    a = compiled("amdp", p, m).manifest.analysis
    assert a["order_policy"] == {"construction": "modulo"}
    assert a["max_inconsistency"] <= 1 and a["max_delay"] <= 1
