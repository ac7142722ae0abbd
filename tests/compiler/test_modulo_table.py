"""AMDP's whole-period templates (schedc.modulo_table): each entry compiles
verified, with the bubble its period states, within the bounds and today's
peaks; a broken entry is refused, not compiled."""

from __future__ import annotations

import math

import pytest
from compiling import compiled

from schedc.modulo import modulo_plan
from schedc.modulo_table import TABLE, tabled
from schedc.presets import preset_spec

# (p, m) -> peak activations per rank of the whole-iteration batches the entry
# replaces (the compiled manifest's before the table): an entry never holds more
WHOLE_ITERATION_PEAKS: dict[tuple[int, int], list[int]] = {
    (3, 3): [3, 3, 2],
    (3, 5): [3, 4, 2],
    (3, 7): [3, 4, 2],
    (3, 9): [3, 4, 2],
    (4, 3): [3, 3, 3, 3],
    (4, 5): [3, 4, 4, 3],
    (4, 7): [3, 4, 4, 3],
    (4, 9): [3, 4, 4, 3],
    (4, 11): [3, 4, 4, 3],
    (5, 5): [5, 5, 4, 5, 4],
    (5, 7): [5, 5, 4, 5, 4],
    (5, 8): [5, 5, 4, 5, 4],
    (6, 4): [4, 4, 4, 4, 4, 4],
    (6, 5): [5, 4, 5, 4, 5, 4],
    (7, 7): [7, 7, 6, 7, 6, 7, 6],
    (7, 9): [7, 7, 6, 7, 6, 7, 6],
    (8, 9): [7, 7, 7, 7, 7, 7, 7, 7],
}


@pytest.mark.parametrize("p,m", sorted(TABLE))
def test_entry_compiles_verified_with_its_bubble(p, m):
    period, times, _ = TABLE[p, m]
    a = compiled("amdp", p, m).manifest.analysis
    assert a["order_policy"] == {"construction": "modulo"}
    # every rank works 3 units per micro-batch: the rest of the period is idle
    assert a["steady_state_bubble_ratio"] == pytest.approx(1 - 3 * len(times) / period,
                                                           abs=1e-12)
    assert a["max_inconsistency"] <= 1 and a["max_delay"] <= 1
    peaks = [r["peak_activations"] for r in a["ranks"]]
    assert all(x <= y for x, y in zip(peaks, WHOLE_ITERATION_PEAKS[p, m], strict=True)), peaks


@pytest.mark.parametrize("p,m", sorted(TABLE))
def test_the_plan_takes_the_whole_period(p, m):
    plan = modulo_plan(preset_spec("amdp", stages=p, microbatches=m))
    n = plan.admission.n
    assert plan.admission.rows == math.lcm(n, m) == len(plan.template.offsets)
    assert plan.period_steps == n // math.gcd(n, m)


@pytest.mark.parametrize("broken", ["collision", "step early", "step late", "in flight",
                                    "rows"])
def test_a_broken_entry_is_refused(monkeypatch, broken):
    p, m = 4, 5  # ten micro-batches per period: room for micro-batch 3N
    period, times, taus = TABLE[p, m]
    maps = preset_spec("amdp", stages=p, microbatches=m).resolved_directions()
    n, back = len(maps), 2 * p - 1
    assert tabled(maps, m, 3, None)
    assert tabled(maps, m, 2, None) == []  # a tighter in-flight bound than the table's
    rows = [list(r) for r in times]
    steps = [list(r) for r in taus]
    if broken == "collision":  # micro-batch N's F(0) onto micro-batch 0's (one rank)
        rows[n][0] = rows[0][0]
    elif broken == "step early":  # before batch 0's last backward of stage 0 ends
        steps[0][0] = max(r[back] for r in times[:m]) + 1
    elif broken == "step late":  # after batch 1's first backward of stage 0 starts
        steps[0][0] = min(r[back] for r in times[m:2 * m]) + 1
    elif broken == "in flight":  # micro-batch 3N enters before micro-batch 0's B(0)
        rows[3 * n] = [t - rows[3 * n][0] + rows[0][-1] for t in rows[3 * n]]
    else:
        rows = rows[:-1]
    monkeypatch.setitem(TABLE, (p, m), (period, tuple(map(tuple, rows)),
                                        tuple(map(tuple, steps))))
    assert tabled(maps, m, 3, None) == []
