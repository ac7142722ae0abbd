"""The asynchronous programs built from the shortest run, the settled steady
state, the scheduler's dependency lists and the receives put in send order:
each equals what the longer way computes, and the figures are pinned."""

from __future__ import annotations

import pytest

import schedc.deadlock as deadlock
from schedc import compiler
from schedc.analysis import ANALYSIS_REPEATS, _settled_period, steady_state_bubble
from schedc.compiler import _lowered, _manifest, _periodic_programs, choose_policy, compile_spec
from schedc.graph import Problem, build_graph
from schedc.modulo import modulo_plan
from schedc.order import Dependencies
from schedc.presets import preset_spec
from schedc.replay import Replay
from schedc.timing import unit_timing
from schedc.unroll import Unrolled

# Asynchronous single-pipeline specs whose step holds more micro-batches than
# are in flight (the short run's case), with look-ahead, periodic DP, a fixed
# delay of 2, split backward and a tight in-flight bound; and AMDP's modulo
# schedules (two periods past the warm-up).
GRID = [
    ("paci", 2, 4, {}), ("paci", 3, 7, {}), ("paci", 4, 8, {}), ("paci", 4, 13, {}),
    ("pipedream", 3, 6, {}), ("pipedream", 4, 9, {}), ("pipedream-2bw", 3, 6, {}),
    ("pipedream-2bw", 4, 11, {}), ("paci", 4, 9, {"lookahead": "auto"}),
    ("paci", 3, 6, {"dp_mode": "async-sparse", "dp_period": 2}),
    ("pipedream", 3, 7, {"lookahead": 0.5}),
    ("pipedream-2bw", 3, 6, {"fixed_delay": 2, "versions": 3, "max_delay": None}),
    ("paci", 3, 6, {"order": "zero-bubble", "split_backward": True,
                    "max_inconsistency": None}),
    ("paci", 5, 10, {"max_inflight": ((0, 2),)}),
    ("amdp", 4, 8, {}), ("amdp", 4, 5, {}), ("amdp", 8, 16, {}),
]
IDS = [f"{n}-p{p}-m{m}-{'-'.join(map(str, kw.values())) or 'preset'}" for n, p, m, kw in GRID]


def _spec(name, p, m, kw):
    return preset_spec(name, stages=p, microbatches=m, **kw)


@pytest.mark.parametrize("name,p,m,kw", GRID, ids=IDS)
def test_short_run_splits_into_the_long_runs_programs(name, p, m, kw):
    spec = _spec(name, p, m, kw).validate()
    policy = choose_policy(spec)
    assert _periodic_programs(spec, policy) == _periodic_programs(spec, policy, long_run=True)


@pytest.mark.parametrize("name,p,m,kw", GRID, ids=IDS)
def test_settled_period_gives_the_long_timings_steady_state(name, p, m, kw):
    spec = _spec(name, p, m, kw).validate()
    programs, period, _ = _periodic_programs(spec, choose_policy(spec))
    manifest = _manifest(spec, programs, period)
    timing = unit_timing(Unrolled.of(programs, period, ANALYSIS_REPEATS).streams)
    settled = _settled_period(programs, timing, ANALYSIS_REPEATS)
    assert settled is not None  # every grid spec settles by the second repetition
    assert steady_state_bubble(manifest, programs, settled) == \
        steady_state_bubble(manifest, programs)


# Figures of the programs as the long run built them (exact values).
PINNED = [
    ("paci", 4, 8, {}, (129.0, 0.06976744186046513, 0.0, 1, 1),
     [{"0": 23, "1": 9}, {"0": 26, "1": 6}, {"0": 29, "1": 3}, {"0": 32}]),
    ("pipedream", 4, 8, {}, (129.0, 0.06976744186046513, 0.0, 0, 1),
     [{"0": 23, "1": 9}, {"0": 26, "1": 6}, {"0": 29, "1": 3}, {"0": 32}]),
    ("pipedream-2bw", 4, 8, {}, (153.0, 0.05882352941176472, 0.0, 0, 1),
     [{"0": 8, "1": 32}] * 4),
    ("paci", 4, 9, {"lookahead": "auto"}, (171.0, 0.052631578947368474, 0.0, 1, 1),
     [{"0": 33, "1": 12}, {"0": 37, "1": 8}, {"0": 41, "1": 4}, {"0": 45}]),
    ("paci", 3, 6, {"dp_mode": "async-sparse", "dp_period": 2},
     (186.0, 0.032258064516129004, 0.0, 1, 1), [{"0": 34, "1": 14}, {"0": 41, "1": 7}, {"0": 48}]),
    ("paci", 5, 10, {"max_inflight": ((0, 2),)}, (378.0, 0.6031746031746033, 0.6, 1, 1),
     [{"0": 37, "1": 3}] + [{"0": 40}] * 4),
    ("pipedream", 3, 7, {"lookahead": 0.5}, (132.0, 0.045454545454545414, 0.0, 0, 1),
     [{"0": 27, "1": 8}, {"0": 31, "1": 4}, {"0": 35}]),
    ("pipedream", 4, 1, {}, (39.0, 0.23076923076923073, 0.0, 0, 3),
     [{"0": 1, "1": 1, "2": 1, "3": 6}, {"0": 1, "1": 1, "2": 7}, {"0": 1, "1": 8}, {"0": 9}]),
    ("paci", 4, 2, {}, (45.0, 0.19999999999999996, 0.0, 2, 2),
     [{"0": 2, "1": 5, "2": 3}, {"0": 2, "1": 8}, {"0": 6, "1": 4}, {"0": 10}]),
]


@pytest.mark.parametrize("name,p,m,kw,figures,delays", PINNED,
                         ids=[f"{n}-p{p}-m{m}" + "".join(f"-{v}" for v in kw.values())
                              for n, p, m, kw, _, _ in PINNED])
def test_constructed_figures_are_pinned(name, p, m, kw, figures, delays):
    a = compile_spec(_spec(name, p, m, kw)).manifest.analysis
    assert (a["makespan"], a["bubble_ratio"], a["steady_state_bubble_ratio"],
            a["max_inconsistency"], a["max_delay"]) == figures
    assert [row["delay_histogram"] for row in a["stages"][0]] == delays


@pytest.mark.parametrize("name,kw", [("pipedream-2bw", {}), ("zb-h1", {}), ("chimera", {}),
                                     ("amdp", {}), ("paci", {"order": "zero-bubble",
                                                             "split_backward": True})])
def test_dependency_lists_equal_the_networkx_graph(name, kw):
    problem = Problem.of(preset_spec(name, stages=4, microbatches=8, **kw), 3)
    graph, deps = build_graph(problem), Dependencies(problem)
    assert list(deps.nodes) == list(graph.nodes)
    for op in graph.nodes:
        assert set(deps.successors(op)) == set(graph.successors(op))
        assert deps.in_degree(op) == graph.in_degree(op)


@pytest.mark.parametrize("stages,m", [(4, 3), (8, 8), (8, 13), (12, 24)])
def test_receives_in_send_order_equal_the_replays_repairs(stages, m, monkeypatch):
    """ZB-V's ranks send activations and gradients on one channel: the pass
    before the replay makes the very moves the replay's repairs made, one
    restart each."""
    spec = preset_spec("zbv", stages=stages, microbatches=m)
    fast = _lowered(spec, 1)
    monkeypatch.setattr(deadlock, "_receives_in_send_order", lambda streams: None)
    assert fast == _lowered(spec, 1)


def _replayed(name: str, p: int, m: int, monkeypatch) -> tuple[int, int]:
    """(instructions replayed, instructions written) of one compile."""
    seen = [0]
    init = Replay.__init__

    def counting(self, streams, *args, **kw):
        seen[0] += sum(len(s) for s in streams)
        init(self, streams, *args, **kw)

    monkeypatch.setattr(Replay, "__init__", counting)
    c = compiler.compile_spec(preset_spec(name, stages=p, microbatches=m))
    written = sum(len(s) for prog in c.programs for s in prog.sections().values())
    return seen[0], written


@pytest.mark.parametrize("name", ["1f1b", "paci", "pipedream-2bw", "zbv"])
def test_compile_work_is_linear_in_size(name, monkeypatch):
    """Doubling the micro-batches at most doubles the instructions replayed
    (lowering, verification and analysis together), and a compile replays a
    bounded multiple of what it writes: no quadratic repair, no long runs."""
    p = 8 if name == "zbv" else 4
    small = _replayed(name, p, 4 * p, monkeypatch)
    large = _replayed(name, p, 8 * p, monkeypatch)
    assert large[0] <= 2.05 * small[0]
    assert large[0] <= 12 * large[1]


def test_modulo_runs_start_with_the_shortest_that_can_show_two_bodies():
    # AMDP's warm-up bound is a period above what it needs at these sizes: the
    # three-period run is lowered first, the longer ones only where it fails.
    plan = modulo_plan(_spec("amdp", 8, 16, {}).validate())
    assert (plan.warmup_batches, plan.period_steps) == (2, 1)
    assert compiler._modulo_runs(plan) == [3, 4, 6]
    assert compiler._modulo_runs(plan, long_run=True) == [6]


def test_a_modulo_run_too_short_to_settle_gives_way_to_the_next():
    # No bounds: a warm-up of six batches; three do not settle (split_run refuses)
    spec = _spec("amdp", 2, 2, {"max_inflight": (), "max_inconsistency": None,
                                "max_delay": None}).validate()
    assert compiler._modulo_runs(modulo_plan(spec)) == [3, 8, 10]
    policy = choose_policy(spec)
    assert _periodic_programs(spec, policy) == _periodic_programs(spec, policy, long_run=True)


# AMDP's constructed schedules: small and tabled shapes (N not dividing m),
# deeper pipelines and a tighter stage-0 bound.
MODULO = [(2, 2, {}), (3, 3, {}), (3, 7, {}), (4, 5, {}), (4, 8, {}), (5, 8, {}),
          (6, 12, {}), (7, 9, {}), (8, 16, {}), (12, 24, {}),
          (6, 12, {"max_inflight": ((0, 2),)})]


@pytest.mark.parametrize("p,m,kw", MODULO)
def test_constructed_runs_need_no_receive_repair(p, m, kw):
    """lower posts a constructed schedule's receives by the planned times, so
    _lowered skips place_receives for it: on every run the split may lower,
    place_receives would leave the streams as they are."""
    spec = _spec("amdp", p, m, kw).validate()
    plan = modulo_plan(spec)
    assert plan is not None
    for batches in sorted({*compiler._modulo_runs(plan), *compiler._modulo_runs(plan, True)}):
        streams = _lowered(spec, batches)
        repaired = [list(seq) for seq in streams]
        deadlock.place_receives(repaired)
        assert repaired == streams
