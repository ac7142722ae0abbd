"""The dependency graph of a schedule: one node per operation, one edge per
dependency (networkx).

Edges, with their `kind` attribute:
- `data`: each compute op's inputs, as the instruction table's `needs` says
  (schedc/instructions.py: F(s-1) before F(s); F and the backward (B or I) of
  s+1 before the backward of s; I before W).
- `weights`: a micro-batch's weight gradient (B or W) before the step of its
  batch; steps of a stage in order; with flush, a step before the next batch's
  forwards; with a fixed delay d, the step producing version b-d before the
  forwards of batch b; a step before the next batch's weight gradients.
- `order`: consecutive operations of one rank's program (added once ordered).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from schedc.dot import DotEdge, DotNode, write_dot
from schedc.instructions import (
    COMPUTE_OPS,
    VERSION_SOURCE,
    concrete,
    resolve_needs,
    schedule_compute_ops,
)
from schedc.ops import Op, step_op
from schedc.spec import Spec

# An Op made without NamedTuple's Python-level __new__ (millions in a large compile).
_op = partial(tuple.__new__, Op)

# networkx is imported by the functions that build a graph, not here: a compile
# that builds none skips its import (a fifth of a small compile's time).
if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Problem:
    """A Spec made concrete for `batches` optimizer steps."""

    spec: Spec
    batches: int
    maps: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(spec: Spec, batches: int) -> Problem:
        return Problem(spec, batches, spec.resolved_directions())

    @property
    def stages(self) -> int:
        return self.spec.stages

    @property
    def ranks(self) -> int:
        return self.spec.num_ranks

    @property
    def m(self) -> int:
        return self.spec.microbatches

    @property
    def num_pipelines(self) -> int:
        return len(self.maps)

    @property
    def num_mbs(self) -> int:
        return self.batches * self.m

    def pipeline_of(self, mb: int) -> int:
        return mb % self.num_pipelines

    def batch_of(self, mb: int) -> int:
        return mb // self.m

    def rank_of(self, op: Op) -> int:
        return self.maps[op.pipeline][op.stage]

    def compute_kinds(self) -> tuple[str, ...]:
        """F and the backward ops of each (micro-batch, stage)."""
        return schedule_compute_ops(self.spec.split_backward)

    def backward_kinds(self) -> tuple[str, ...]:
        return self.compute_kinds()[1:]

    def grad_kind(self) -> str:
        """The op that produces the input gradient sent to the previous stage."""
        return concrete("grad", self.spec.split_backward)

    def weight_grad_kind(self) -> str:
        """The op that produces the weight gradient."""
        return concrete("wgrad", self.spec.split_backward)

    def compute_ops(self) -> Iterator[Op]:
        kinds, stages, pipelines = self.compute_kinds(), range(self.stages), len(self.maps)
        for mb in range(self.num_mbs):
            p = mb % pipelines  # pipeline_of
            for s in stages:
                for kind in kinds:
                    yield _op((kind, p, s, mb))


def inputs(op: Op, split_backward: bool) -> list[Op]:
    """The ops whose results compute op `op` reads: the instruction table's
    `needs`, for its pipeline and micro-batch (stages outside the pipeline
    included: the caller drops what does not exist)."""
    return [Op(kind, op.pipeline, op.stage + offset, op.mb)
            for kind, offset in resolve_needs(op.kind, split_backward)]


def split_backward_in(kinds: set[str]) -> bool:
    """Whether ops of these kinds come from a schedule whose backward is split
    (they hold the split schedule's input-gradient op, I)."""
    return concrete("grad", True) in kinds


def data_edges(problem: Problem, mb: int) -> Iterator[tuple[Op, Op]]:
    """(input, consumer) for every compute op of micro-batch `mb`."""
    p, split = problem.pipeline_of(mb), problem.spec.split_backward
    for s in range(problem.stages):
        for kind in problem.compute_kinds():
            op = Op(kind, p, s, mb)
            for src in inputs(op, split):
                if 0 <= src.stage < problem.stages:
                    yield src, op


def weight_edges(problem: Problem) -> Iterator[tuple[Op, Op]]:
    spec, wkind = problem.spec, problem.weight_grad_kind()
    stages = range(problem.stages)
    steps = [[step_op(s, b) for s in stages] for b in range(problem.batches)]
    for mb in range(problem.num_mbs):
        p, b = problem.pipeline_of(mb), problem.batch_of(mb)
        gate = _forward_gate(spec, b)
        for s in stages:
            grad = _op((wkind, p, s, mb))
            yield grad, steps[b][s]
            if b > 0:
                # The accumulator holds one batch: the next batch's weight
                # gradients wait for this batch's step on every replica.
                yield steps[b - 1][s], grad
            if gate is not None:
                yield steps[gate][s], _op((VERSION_SOURCE, p, s, mb))
    for s in stages:
        for b in range(1, problem.batches):
            yield steps[b - 1][s], steps[b][s]


def _forward_gate(spec: Spec, batch: int) -> int | None:
    """The step that must precede the forwards of `batch`, if any."""
    if spec.flush:
        gate = batch - 1
    elif spec.fixed_delay is not None:
        gate = batch - spec.fixed_delay - 1
    else:
        return None
    return gate if gate >= 0 else None


def build_graph(problem: Problem) -> nx.DiGraph:
    """The data and weight-version dependencies of `problem` (no order edges)."""
    import networkx as nx
    g = nx.DiGraph()
    for op in problem.compute_ops():
        g.add_node(op, rank=problem.rank_of(op))
    for s in range(problem.stages):
        for b in range(problem.batches):
            g.add_node(step_op(s, b), rank=-1)
    for mb in range(problem.num_mbs):
        g.add_edges_from(data_edges(problem, mb), kind="data")
    g.add_edges_from(weight_edges(problem), kind="weights")
    return g


def add_order_edges(g: nx.DiGraph, orders: Sequence[Sequence[Op]]) -> None:
    """Chain each rank's compute ops in program order.

    Steps are left out: a replicated stage's step is one node but several
    ranks' ALLREDUCEs, which the verifier checks as the collective it is.
    """
    for seq in orders:
        ops = [op for op in seq if op.kind != "S"]
        g.add_edges_from(zip(ops, ops[1:], strict=False), kind="order")


def check_acyclic(g: nx.DiGraph) -> list[Op] | None:
    """A dependency cycle (program order contradicting data), or None."""
    import networkx as nx
    try:
        return [u for u, _ in nx.find_cycle(g)]
    except nx.NetworkXNoCycle:
        return None


def program_graph(manifest, programs, repeats: int = 1) -> nx.DiGraph:
    """The dependency graph of compiled programs (compute ops only).

    Nodes are `Op`s with attributes rank, version and index (position in the
    rank's unrolled stream); edges are `data` (as in `build_graph`) and `order`
    (consecutive compute ops of a rank).
    """
    import networkx as nx

    from schedc.unroll import Unrolled

    un = Unrolled.of(programs, manifest.period, repeats)
    g = nx.DiGraph()
    for r, stream in enumerate(un.streams):
        prev = None
        for i, ins in enumerate(stream):
            if ins.op not in COMPUTE_OPS:
                continue
            op = Op(ins.op, ins.pipeline, ins.stage, ins.mb)
            g.add_node(op, rank=r, version=ins.version, index=i)
            if prev is not None:
                g.add_edge(prev, op, kind="order")
            prev = op
    split = split_backward_in({op.kind for op in g.nodes})
    for op in list(g.nodes):
        for src in inputs(op, split):
            if src in g:
                g.add_edge(src, op, kind="data")
    return g


def to_dot(g: nx.DiGraph, highlight: set | None = None) -> str:
    """Graphviz text: one cluster per rank, data edges solid, order dashed."""
    highlight = highlight or set()
    nodes = []
    for op, data in g.nodes(data=True):
        ver = data.get("version")
        nodes.append(DotNode(op.label(), data.get("rank", -1),
                             op.label() + (f" v{ver}" if ver is not None else ""), op.kind,
                             op in highlight))
    edges = [DotEdge(u.label(), v.label(), data.get("kind") == "order",
                     u in highlight and v in highlight) for u, v, data in g.edges(data=True)]
    return write_dot("schedule", nodes, edges)
