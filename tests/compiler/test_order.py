"""Canonical per-rank compute orders (FAMILIES.md), read from the programs."""

from __future__ import annotations

import pytest
from compiling import compiled, compute_seq

from schedc.compiler import compile_spec
from schedc.graph import Problem, build_graph
from schedc.order import PORTFOLIO, Dependencies, ListScheduler, OrderError
from schedc.presets import preset_spec


def _gpipe_expected(r: int, m: int) -> list[tuple[str, int, int]]:
    return [("F", r, j) for j in range(m)] + [("B", r, j) for j in range(m)]


def _1f1b_expected(p: int, r: int, m: int) -> list[tuple[str, int, int]]:
    warm = min(p - 1 - r, m)
    seq = [("F", r, j) for j in range(warm)]
    for i in range(m - warm):
        seq += [("F", r, warm + i), ("B", r, i)]
    return seq + [("B", r, j) for j in range(m - warm, m)]


GRID = [(p, m) for p in range(1, 9) for m in range(1, 13)]


def test_gpipe_all_forwards_then_all_backwards():
    for p, m in GRID:
        progs = compiled("gpipe", p, m).programs
        assert [compute_seq(g) for g in progs] == [_gpipe_expected(r, m) for r in range(p)]


def test_1f1b_warmup_alternation_drain():
    for p, m in GRID:
        progs = compiled("1f1b", p, m).programs
        assert [compute_seq(g) for g in progs] == [_1f1b_expected(p, r, m) for r in range(p)]


def test_1f1b_last_rank_alternates_from_the_start():
    # PyTorch's 1F1B IR gets this rank wrong (DESIGN.md): F0 B0 F1 B1 ...
    seq = compute_seq(compiled("1f1b", 4, 4).programs[3])
    assert seq == [(k, 3, j) for j in range(4) for k in ("F", "B")]


def test_zb_h1_splits_backward_and_keeps_1f1b_forwards():
    p, m = 4, 8
    for r, prog in enumerate(compiled("zb-h1", p, m).programs):
        seq = compute_seq(prog)
        kinds = [k for k, _, _ in seq]
        assert kinds.count("F") == kinds.count("I") == kinds.count("W") == m
        # warm-up identical to 1F1B; each W after its I
        assert kinds[: p - 1 - r] == ["F"] * (p - 1 - r) and kinds[p - 1 - r] == "F"
        pos = {(k, j): i for i, (k, _, j) in enumerate(seq)}
        assert all(pos[("I", j)] < pos[("W", j)] for j in range(m))


def _held_until_w(seq: list[tuple[str, int, int]]) -> int:
    """Most micro-batches between their F and their W at once."""
    held = peak = 0
    for kind, _, _ in seq:
        held += {"F": 1, "W": -1}.get(kind, 0)
        peak = max(peak, held)
    return peak


def test_zb_h1_holds_at_most_2p_minus_1_minus_rank_until_w():
    """max_deferred_w = p - 1: W trails I by at most p - 1, so rank r holds at most
    2p - 1 - r micro-batches' state until W, whatever m (all m before the bound)."""
    for p, m in GRID + [(4, 32), (8, 40)]:
        progs = compiled("zb-h1", p, m).programs
        held = [_held_until_w(compute_seq(g)) for g in progs]
        assert held == [min(2 * p - 1 - r, m) for r in range(p)], (p, m)


def test_unbounded_deferral_holds_every_microbatch():
    spec = preset_spec("zb-h1", stages=4, microbatches=12).with_(max_deferred_w=None)
    progs = compile_spec(spec).programs
    assert [_held_until_w(compute_seq(g)) for g in progs] == [12] * 4


@pytest.mark.parametrize("p,v", [(2, 2), (4, 2), (4, 3)])
def test_interleaved_depth_first_chunks(p, v):
    m = 2 * p
    progs = compiled("interleaved-1f1b", v * p, m, ranks=p).programs
    for r, prog in enumerate(progs):
        fwd = [(s, j) for k, s, j in compute_seq(prog) if k == "F"]
        # Megatron: forward k runs chunk (k // p) % v of micro-batch (k // (p v)) * p + k % p
        want = [(((k // p) % v) * p + r, (k // (p * v)) * p + k % p) for k in range(v * m)]
        assert fwd == want
        warm = min((p - r - 1) * 2 + (v - 1) * p, v * m)
        kinds = [k for k, _, _ in compute_seq(prog)]
        assert kinds[:warm] == ["F"] * warm


@pytest.mark.parametrize("name,p,m,batches", [
    ("1f1b", 4, 8, 1), ("zbv", 8, 8, 1), ("zb-h1", 4, 6, 3), ("chimera", 4, 8, 2),
    ("pipedream-2bw", 4, 4, 4), ("paci", 3, 5, 4),
])
def test_dependencies_are_the_graphs_edges_in_its_order(name, p, m, batches):
    problem = Problem.of(preset_spec(name, stages=p, microbatches=m), batches)
    graph, deps = build_graph(problem), Dependencies(problem)
    assert list(deps.succ) == list(graph.nodes)
    assert all(deps.succ[op] == list(graph.successors(op)) for op in graph.nodes)
    assert all(deps.indeg[op] == graph.in_degree(op) for op in graph.nodes)


@pytest.mark.parametrize("name,p,m,batches", [
    ("1f1b", 4, 8, 1), ("zb-h1", 4, 6, 3), ("chimera", 4, 8, 2), ("pipedream-2bw", 4, 4, 4),
    ("paci", 3, 5, 4),
])
def test_the_scheduler_orders_alike_from_either_graph(name, p, m, batches):
    """The list scheduler reads nodes by index: from networkx (made into index
    lists) and from Dependencies (index lists already) every policy of the
    portfolio gives the same order and makespan."""
    problem = Problem.of(preset_spec(name, stages=p, microbatches=m), batches)
    graph, deps = build_graph(problem), Dependencies(problem)
    for policy in PORTFOLIO:
        try:
            one = ListScheduler(problem, graph, policy)
            orders = one.run()
        except OrderError:
            with pytest.raises(OrderError):
                ListScheduler(problem, deps, policy).run()
            continue
        other = ListScheduler(problem, deps, policy)
        assert other.run() == orders
        assert (other.makespan, other.peak_inflight) == (one.makespan, one.peak_inflight)
