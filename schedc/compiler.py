"""The compiler driver: Spec -> graph -> order -> lower -> verify -> programs.

`compile_spec` is the whole flow; every compile runs the verifier, so a
returned `Compiled` holds programs that are proven complete, dependency-
respecting, deadlock-free and within the Spec's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from schedc import __version__
from schedc.analysis import analyse
from schedc.deadlock import place_receives
from schedc.errors import VerifyError
from schedc.graph import Problem, add_order_edges, build_graph, check_acyclic
from schedc.lower import lower
from schedc.order import order_ops
from schedc.periodic import check_periodic, split_periodic
from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.spec import Spec
from schedc.verify import verify


@dataclass(frozen=True)
class Compiled:
    spec: Spec
    manifest: Manifest
    programs: tuple[RankProgram, ...]


@dataclass(frozen=True)
class Lowered:
    problem: Problem
    graph: nx.DiGraph
    streams: list[list[Instr]]


def lower_batches(spec: Spec, batches: int, check_order: bool = True) -> Lowered:
    """Build, order and lower the schedule for `batches` optimizer steps."""
    problem = Problem.of(spec, batches)
    graph = build_graph(problem)
    orders = order_ops(problem, graph)
    if check_order:
        add_order_edges(graph, orders)
        cycle = check_acyclic(graph)
        if cycle:
            raise VerifyError("the order contradicts the dependencies: cycle "
                              + " -> ".join(op.label() for op in cycle[:8]))
    streams = lower(problem, orders)
    place_receives(streams)
    return Lowered(problem, graph, streams)


def warmup_batches(spec: Spec) -> int:
    """Batches enough for an asynchronous schedule to reach its steady state."""
    in_flight = 2 * (spec.stages + 1) * max(1, spec.num_pipelines // 2)
    return -(-in_flight // spec.microbatches) + 3


def compile_spec(spec: Spec) -> Compiled:
    spec.validate()
    if spec.flush:
        k = _sync_period(spec)
        period = Period(microbatches=k * spec.microbatches, steps=k)
        programs = [RankProgram(r, body=tuple(s))
                    for r, s in enumerate(lower_batches(spec, k).streams)]
    else:
        programs, period = _periodic_programs(spec)
    manifest = _manifest(spec, programs, period)
    table = verify(manifest, programs)
    manifest = Manifest(**{**manifest.__dict__, "analysis": analyse(manifest, programs, table)})
    return Compiled(spec, manifest, tuple(programs))


def _sync_period(spec: Spec) -> int:
    """Steps after which instructions that recur every few steps line up."""
    return spec.dp_period if spec.dp_mode == "async-sparse" else 1


def _periodic_programs(spec: Spec) -> tuple[list[RankProgram], Period]:
    """The shortest period (in steps) whose body repeats exactly.

    One step is the usual period; when micro-batches do not divide evenly over
    the pipelines (or the order alternates), the pattern repeats only every
    k steps, and the body then holds k steps.
    """
    base = warmup_batches(spec)
    error: VerifyError | None = None
    for k in (_sync_period(spec) * j for j in (1, 2, 3, 4)):
        period = Period(microbatches=k * spec.microbatches, steps=k)
        b = base + (-base % k)
        runs = {n: lower_batches(spec, n, check_order=(n == b)).streams
                for n in (b, b + k, b + 2 * k)}
        try:
            programs, extra = split_periodic(runs[b], runs[b + k], b // k, period)
            for n in (b + k, b + 2 * k):
                check_periodic(programs, runs[n], n // k - extra, period)
            return programs, period
        except VerifyError as exc:
            error = exc
    assert error is not None
    raise error


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
