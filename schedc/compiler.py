"""The compiler driver: Spec -> graph -> order -> lower -> verify -> programs.

`compile_spec` is the whole flow; every compile runs the verifier, so a
returned `Compiled` holds programs that are proven complete, dependency-
respecting, deadlock-free and within the Spec's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import networkx as nx

from schedc import __version__
from schedc.analysis import analyse
from schedc.deadlock import check_deadlock_free, place_receives
from schedc.errors import UserError, VerifyError
from schedc.graph import Problem, add_order_edges, build_graph, check_acyclic
from schedc.lower import lower
from schedc.order import DEFAULT_POLICY, Policy, order_ops, shortlist
from schedc.periodic import check_periodic, split_periodic
from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.spec import Spec
from schedc.unroll import Unrolled
from schedc.verify import verify


@dataclass(frozen=True)
class Compiled:
    spec: Spec
    manifest: Manifest
    programs: tuple[RankProgram, ...]
    policy: Policy = DEFAULT_POLICY  # the ordering policy these programs used


@dataclass(frozen=True)
class Lowered:
    problem: Problem
    graph: nx.DiGraph
    streams: list[list[Instr]]


def lower_batches(spec: Spec, batches: int, check_order: bool = False,
                  policy: Policy | None = None) -> Lowered:
    """Build, order and lower the schedule for `batches` optimizer steps.

    check_order runs a cycle search over the graph with order edges (a quick
    diagnostic naming the cycle). It is off by default: the verifier's replay
    proves the same property of the final programs (every op runs after its
    inputs in an execution that completes), and the search costs about a
    quarter of a large compile."""
    problem = Problem.of(spec, batches)
    graph = build_graph(problem)
    if policy is None:
        policy = candidate_policies(spec)[0]
    orders = order_ops(problem, graph, policy)
    if check_order:
        add_order_edges(graph, orders)
        cycle = check_acyclic(graph)
        if cycle:
            raise VerifyError("the order contradicts the dependencies: cycle "
                              + " -> ".join(op.label() for op in cycle[:8]))
    streams = lower(problem, orders)
    place_receives(streams)
    return Lowered(problem, graph, streams)


def candidate_policies(spec: Spec) -> list[Policy]:
    """Ordering policies worth compiling in full (see order.shortlist)."""
    if spec.num_pipelines == 1:
        return [DEFAULT_POLICY]
    batches = _sync_period(spec) if spec.flush else 3 * warmup_batches(spec)
    problem = Problem.of(spec, batches)
    return shortlist(problem, build_graph(problem))


def warmup_batches(spec: Spec) -> int:
    """Batches enough for an asynchronous schedule to reach its steady state."""
    in_flight = 2 * (spec.stages + 1) * max(1, spec.num_pipelines // 2)
    return -(-in_flight // spec.microbatches) + 3


def compile_spec(spec: Spec) -> Compiled:
    """Compile and verify `spec`. Where several ordering policies are in the
    running (several pipelines), each is compiled and verified and the one
    with the least (steady-state) bubble, then memory, is kept."""
    spec.validate()
    best: tuple[tuple[float, int, int], Compiled] | None = None
    first_error: UserError | None = None
    for i, policy in enumerate(candidate_policies(spec)):
        try:
            compiled = compile_with(spec, policy)
        except UserError as exc:
            first_error = first_error or exc
            continue
        a = compiled.manifest.analysis
        memory = max(r["peak_activations"] for r in a["ranks"])
        score = (round(a["steady_state_bubble_ratio"], 12), memory, i)
        if best is None or score < best[0]:
            best = (score, compiled)
    if best is None:
        assert first_error is not None
        raise first_error
    return best[1]


def compile_with(spec: Spec, policy: Policy) -> Compiled:
    if spec.flush:
        k = _sync_period(spec)
        period = Period(microbatches=k * spec.microbatches, steps=k)
        programs = [RankProgram(r, body=tuple(s))
                    for r, s in enumerate(lower_batches(spec, k, policy=policy).streams)]
    else:
        programs, period = _periodic_programs(spec, policy)
    manifest = _manifest(spec, programs, period)
    table = verify(manifest, programs)
    analysis = analyse(manifest, programs, table)
    analysis["order_policy"] = {"priority": policy[0], "inflight_scale": policy[1],
                                "steps": "first" if policy[2] else "when idle"}
    manifest = replace(manifest, analysis=analysis)
    return Compiled(spec, manifest, tuple(programs), policy)


def _sync_period(spec: Spec) -> int:
    """Steps after which instructions that recur every few steps line up."""
    return spec.dp_period if spec.dp_mode == "async-sparse" else 1


def _periodic_programs(spec: Spec, policy: Policy) -> tuple[list[RankProgram], Period]:
    """The shortest period (in steps) whose body repeats exactly.

    One step is the usual period; when micro-batches do not divide evenly over
    the pipelines (or the order alternates), the pattern repeats only every
    k steps, and the body then holds k steps. Schedules whose fill takes longer
    to settle are unrolled further (2x, 4x the estimated warm-up).
    """
    error: VerifyError | None = None
    for base in (warmup_batches(spec) * f for f in (1, 2, 4)):
        for k in (_sync_period(spec) * j for j in (1, 2, 3, 4)):
            try:
                return _split_with_period(spec, base + (-base % k), k, policy)
            except VerifyError as exc:
                error = exc
    assert error is not None
    raise error


def _split_with_period(spec: Spec, b: int, k: int, policy: Policy
                       ) -> tuple[list[RankProgram], Period]:
    period = Period(microbatches=k * spec.microbatches, steps=k)
    runs = {n: lower_batches(spec, n, policy=policy).streams
            for n in (b, b + k, b + 2 * k)}
    programs, extra = split_periodic(runs[b], runs[b + k], b // k, period)
    for n in (b, b + k, b + 2 * k):
        check_periodic(programs, runs[n], n // k - extra, period)
    return _fold_short_runs(programs, period, b // k - extra), period


def _fold_short_runs(programs: list[RankProgram], period: Period, validated: int
                     ) -> list[RankProgram]:
    """Runs shorter than the ones lowered directly were never scheduled as such:
    when one of them would not complete (a receive placed for a longer run), move
    whole bodies into the prologue until the shortest run is sound."""
    for _ in range(validated):
        try:
            for n in (1, 2, 3):
                un = Unrolled.of(programs, period, n)
                check_deadlock_free(un.streams, un.locate)
            return programs
        except VerifyError:
            programs = [_fold_one(p, period) for p in programs]
    return programs


def _fold_one(prog: RankProgram, period: Period) -> RankProgram:
    """The same runs, with body repetition 0 moved into the prologue."""
    shift = (period.microbatches, period.steps)
    return RankProgram(prog.rank, prog.prologue + prog.body,
                       tuple(i.shifted(*shift) for i in prog.body),
                       tuple(i.shifted(*shift) for i in prog.epilogue))


def _manifest(spec: Spec, programs: list[RankProgram], period: Period) -> Manifest:
    return Manifest(
        spec=spec.to_dict(),
        spec_hash=spec.hash(),
        world_size=spec.num_ranks,
        num_stages=spec.stages,
        num_pipelines=spec.num_pipelines,
        stage_to_rank=spec.resolved_directions(),
        period=period,
        synchronous=spec.flush,
        analysis={"compiler": f"schedc {__version__}"},
    )
