"""Order: a per-rank total order of operations that respects the graph.

Most policies are list scheduling under unit costs (F = 1, B = 2, I = W = 1,
steps free, zero latency): whenever a rank is free it starts the ready
operation its policy ranks first. That one rule yields the canonical orders
(1F1B's warm-up of p-1-r forwards followed by alternation, GPipe's fill and
drain) and the asynchronous ones (PACI's "pending backward first, otherwise a
forward while fewer than p - s are in flight", AMDP's two per pipeline at stage
0). Interleaved 1F1B follows Megatron's depth-first order, written out.

Step operations (kind "S") appear in the order of every rank holding a replica
of the stage, where that rank would take the step: as soon as the backwards of
its batch are done on every replica, before anything else.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from operator import not_
from typing import TYPE_CHECKING

from schedc.errors import UserError
from schedc.graph import Problem, weight_edges
from schedc.instructions import (
    COMPUTE_OPS,
    FREES_ACTIVATION,
    STORES_ACTIVATION,
    UNIT_COSTS,
    resolve_needs,
)
from schedc.ops import STEP_KIND, Op, step_op

_WAITING = 1 << 62  # busy_until of a rank waiting in a collective step
UNIT_COST = {**{op: int(UNIT_COSTS[op]) for op in COMPUTE_OPS}, STEP_KIND: 0}


class OrderError(UserError):
    """The policy cannot order the graph (a bound leaves no admissible op)."""


@dataclass(frozen=True)
class Policy:
    """How the list scheduler ranks ready operations.

    priority: "mb" (the order's kind priority, then the oldest micro-batch),
    "critical-path" (longest unit-cost path ahead first) or "forward-first".
    inflight_scale: scales the default in-flight bound p - s of stages the
    Spec leaves unbounded (a Spec's own max_inflight is never scaled).
    steps_first: a ready step runs before anything else (else when idle).
    """

    priority: str = "mb"
    inflight_scale: float = 1.0
    steps_first: bool = True

    def describe(self) -> dict[str, object]:
        return {"priority": self.priority, "inflight_scale": self.inflight_scale,
                "steps": "first" if self.steps_first else "when idle"}


DEFAULT_POLICY = Policy()


def order_ops(problem: Problem, graph: Graph, policy: Policy = DEFAULT_POLICY
              ) -> list[list[Op]]:
    if problem.spec.order == "interleaved":
        return interleaved_order(problem)
    return ListScheduler(problem, graph, policy).run()


# Several pipelines share every rank, and no single rule orders them well for
# every p and m: for synchronous multi-pipeline schedules (Chimera) the compiler
# list-schedules a few priorities and in-flight scales on the one-step graph and
# keeps the order with the shortest unit-cost makespan (then the least memory).
# A replicated stage's step is a collective: taken as soon as it is ready, a
# rank may wait in it for a busy replica, so "when idle" is tried as well.
PORTFOLIO = tuple(Policy(mode, scale, first) for first in (True, False)
                  for mode in ("mb", "critical-path", "forward-first")
                  for scale in (1.0, 1.5, 2.0))


def distinct_orders(problem: Problem, graph: Graph
                    ) -> list[tuple[int, Policy, list[list[Op]]]]:
    """(unit-cost makespan, policy, order) of each portfolio policy whose order
    differs from the ones before it, best makespan first. The greedy's makespan
    is only a proxy (it does not see how receives are batched), so the caller
    measures the lowered finalists."""
    seen: dict[tuple, tuple[int, int, Policy, list[list[Op]]]] = {}
    for i, policy in enumerate(PORTFOLIO):
        sched = ListScheduler(problem, graph, policy)
        try:
            orders = sched.run()
        except OrderError:
            continue
        key = tuple(tuple(seq) for seq in orders)
        if key not in seen:
            seen[key] = (sched.makespan, i, policy, orders)
    return [(span, policy, orders) for span, _, policy, orders in sorted(seen.values(),
                                                                            key=lambda v: v[:2])]


# ---- interleaved 1F1B (Megatron) ------------------------------------------------
def interleaved_order(problem: Problem) -> list[list[Op]]:
    """Megatron's depth-first interleaved schedule, batch after batch.

    Forward k on rank r runs chunk (k // p) % v of micro-batch
    (k // (p v)) * p + k % p; backwards walk the chunks in reverse. Rank r warms
    up with (p - r - 1) * 2 + (v - 1) * p forwards, then alternates. Each batch
    ends with its steps (interleaved schedules flush).
    """
    orders: list[list[Op]] = [[] for _ in range(problem.ranks)]
    for b in range(problem.batches):
        for r in range(problem.ranks):
            orders[r] += _append_steps(_interleaved_batch(problem, r, b), problem, b)
    return orders


def _interleaved_batch(problem: Problem, r: int, batch: int) -> list[Op]:
    p, v, m = problem.ranks, problem.spec.chunks, problem.m
    total = m * v

    def item(kind: str, k: int) -> Op:
        chunk = (k // p) % v
        if kind == "B":
            chunk = v - 1 - chunk
        mb = batch * m + (k // (p * v)) * p + k % p
        return Op(kind, 0, chunk * p + r, mb)

    warmup = min((p - r - 1) * 2 + (v - 1) * p, total)
    seq = [item("F", k) for k in range(warmup)]
    for i in range(total - warmup):
        seq += [item("F", warmup + i), item("B", i)]
    seq += [item("B", k) for k in range(total - warmup, total)]
    return seq


def _append_steps(seq: list[Op], problem: Problem, batch: int) -> list[Op]:
    """Place each stage's step right after its last backward on this rank."""
    last: dict[int, int] = {}
    for i, op in enumerate(seq):
        if op.kind == problem.weight_grad_kind():
            last[op.stage] = i
    out: list[Op] = []
    for i, op in enumerate(seq):
        out.append(op)
        out.extend(step_op(s, batch) for s, idx in sorted(last.items()) if idx == i)
    return out


# ---- list scheduling ----------------------------------------------------------
class Dependencies:
    """The dependency graph as the list scheduler reads it (nodes, successors,
    in-degrees), from the graph's own edge rules (the instruction table's
    `needs`, as `graph.data_edges` reads them, and `graph.weight_edges`)
    without networkx: a large asynchronous run's networkx graph holds about a
    kilobyte per operation. The same nodes, successor lists and in-degrees,
    in the same order, as `graph.build_graph`: `order` lists the nodes, and
    `after` and `before` hold each one's successors (by index in `order`) and
    in-degree; `succ` and `indeg` are the same as dicts keyed by node."""

    def __init__(self, problem: Problem) -> None:
        kinds = problem.compute_kinds()
        stages, k, split = problem.stages, len(kinds), problem.spec.split_backward
        ops = list(problem.compute_ops())  # index (mb * stages + s) * k + kind
        # data_edges, read from the flat list: a micro-batch's ops are one block
        # of stages * k; each op's inputs by their place in its block
        where = {kind: i for i, kind in enumerate(kinds)}
        block, inputs = stages * k, []
        for s in range(stages):
            for kind in kinds:
                places: list[int] = []
                for need, offset in resolve_needs(kind, split):
                    place = (s + offset) * k + where[need]
                    if 0 <= s + offset < stages and place not in places:
                        places.append(place)  # one edge per pair, as in a DiGraph
                inputs.append(places)
        edges = [(place, source) for place, sources in enumerate(inputs) for source in sources]
        after: list[list[int]] = [[] for _ in ops]  # successors' indices
        for base in range(0, len(ops), block):
            for place, source in edges:
                after[base + source].append(base + place)
        before = [len(sources) for sources in inputs] * (len(ops) // block)  # in-degrees
        # the steps after the compute ops: step (s, b) at n + s * batches + b
        n, batches = len(ops), problem.batches
        nodes = ops + [step_op(s, b) for s in range(stages) for b in range(batches)]
        after += [[] for _ in range(n, len(nodes))]
        before += [0] * (len(nodes) - n)
        # Weight edges never repeat a pair (each joins a step and one op of
        # one micro-batch, or two steps): no check of a step's long list.
        # Nodes are found by index, not hash.
        for u, v in weight_edges(problem):
            iu = n + u.stage * batches + u.mb if u.kind == STEP_KIND else \
                (u.mb * stages + u.stage) * k + where[u.kind]
            iv = n + v.stage * batches + v.mb if v.kind == STEP_KIND else \
                (v.mb * stages + v.stage) * k + where[v.kind]
            after[iu].append(iv)
            before[iv] += 1
        self.order, self.after, self.before = nodes, after, before

    @cached_property
    def succ(self) -> dict[Op, list[Op]]:
        order = self.order
        return {op: [order[j] for j in js] for op, js in zip(order, self.after, strict=True)}

    @cached_property
    def indeg(self) -> dict[Op, int]:
        return dict(zip(self.order, self.before, strict=True))

    @property
    def nodes(self) -> Iterable[Op]:
        return self.order

    def successors(self, op: Op) -> list[Op]:
        return self.succ[op]

    def in_degree(self, op: Op) -> int:
        return self.indeg[op]


if TYPE_CHECKING:  # networkx is imported only where a graph is built (schedc.graph)
    import networkx as nx

    Graph = nx.DiGraph | Dependencies  # what the list scheduler reads


class ListScheduler:
    """Unit-cost list scheduling of `graph` under the Spec's order policy."""

    def __init__(self, problem: Problem, graph: Graph,
                 policy: Policy = DEFAULT_POLICY) -> None:
        self.problem = problem
        self.graph = graph
        # nodes by index, successors as index lists, in-degrees as a list: no
        # hashing of ops in the loop (a DiGraph's views are slow besides)
        if isinstance(graph, Dependencies):
            self.nodes, self.after, indeg = graph.order, graph.after, graph.before
        else:
            self.nodes = list(graph.nodes)
            index = {op: i for i, op in enumerate(self.nodes)}
            self.after = [[index[v] for v in graph.successors(op)] for op in self.nodes]
            indeg = [graph.in_degree(op) for op in self.nodes]
        spec = problem.spec
        self.maps = problem.maps
        self.priority = _priorities(spec.order, spec.split_backward)
        self.key = _ready_key(policy.priority, problem, self.priority)
        self.limit = _inflight_limits(problem, policy.inflight_scale)
        self.limits = [self.limit(Op("F", 0, s, 0)) for s in range(problem.stages)]
        self.makespan = 0
        self.peak_inflight = 0
        self.step_key = -(1 << 30) if policy.steps_first else 1 << 30
        self.in_collective: dict[Op, list[int]] = {}
        # In flight (schedc.instructions): from the op storing a micro-batch's
        # activation (F) to the one freeing it (B, or I). Without a flush nothing
        # else bounds deferred Ws: there the admission window runs to the op
        # producing the weight gradient (W) instead.
        deferred_w = spec.split_backward and not spec.flush
        self.release_kind = problem.weight_grad_kind() if deferred_w else next(
            k for k in problem.compute_kinds() if k in FREES_ACTIVATION)
        # Held: from F to W. With spec.max_deferred_w a stage admits a forward
        # only while fewer than its in-flight bound + that many are held (unset:
        # every micro-batch may be, so the bound never binds).
        deferral = problem.num_mbs if spec.max_deferred_w is None else spec.max_deferred_w
        self.held_limits = [lim + deferral for lim in self.limits]
        self.weight_kind = problem.weight_grad_kind()
        self.replica_ranks = {
            s: sorted({m[s] for m in problem.maps}) for s in range(problem.stages)
        }
        self.waiting = list(indeg)  # inputs not yet done, by node index
        self.ready: list[list[tuple]] = [[] for _ in range(problem.ranks)]
        # per stage replica, at pipeline * stages + stage: the parked forwards'
        # heap and the micro-batches in flight
        self.stages = problem.stages
        self.parked: dict[int, list[tuple]] = defaultdict(list)
        self.inflight = [0] * (len(problem.maps) * problem.stages)
        self.held = [0] * (len(problem.maps) * problem.stages)
        self.step_copies_left: dict[int, int] = {}
        self.orders: list[list[Op]] = [[] for _ in range(problem.ranks)]
        # Replicated stages' steps are collectives (ALLREDUCE): every rank takes
        # them in one global order, batch first, then later stages first (the
        # order backwards finish in), so no two ranks wait on each other.
        self.collective_steps = [
            sorted(((b, -s) for s in range(problem.stages)
                    if len(self.replica_ranks[s]) > 1 and r in self.replica_ranks[s]
                    for b in range(problem.batches)), reverse=True)
            for r in range(problem.ranks)
        ]

    def _take_collective_turn(self, r: int, op: Op) -> bool:
        """Whether `op` is rank r's next step in the global collective order
        (and, if so, consume that turn)."""
        pending = self.collective_steps[r]
        if len(self.replica_ranks[op.stage]) < 2:
            return True
        if pending and pending[-1] == (op.mb, -op.stage):
            pending.pop()
            return True
        return False

    def run(self) -> list[list[Op]]:
        for i in compress(range(len(self.waiting)), map(not_, self.waiting)):
            self._make_ready(i)
        events: list[tuple[int, int, int]] = []  # (end, start order, node index)
        busy_until = [0] * self.problem.ranks
        now, remaining = 0, self._starts()
        pop, finish = heapq.heappop, self._finish
        while remaining:
            while events and events[0][0] <= now:
                finish(pop(events)[2])
            remaining -= self._start_ready(now, busy_until, events)
            if not remaining:
                break
            if not events:
                raise self._stuck_error()
            now = events[0][0]
        self.makespan = max(busy_until)
        if self.makespan == _WAITING:
            raise self._stuck_error()
        return self.orders

    def _start_ready(self, now: int, busy_until: list[int], events: list) -> int:
        started, progress = 0, True
        pick, orders, push = self._pick, self.orders, heapq.heappush
        while progress:
            progress = False
            for r in range(self.problem.ranks):
                while busy_until[r] <= now:
                    item = pick(r)
                    if item is None:
                        break
                    op, i = item[3], item[4]
                    orders[r].append(op)
                    started += 1
                    progress = True
                    if op.kind == STEP_KIND:
                        self._enter_step(op, i, r, now, busy_until)
                        continue
                    busy_until[r] = now + UNIT_COST[op.kind]
                    push(events, (busy_until[r], started, i))
        return started

    def _enter_step(self, op: Op, i: int, r: int, now: int, busy_until: list[int]) -> None:
        """A replicated stage's step (node i) is a collective: the rank waits in
        it until every replica has entered, then all leave together."""
        group = self.replica_ranks[op.stage]
        if len(group) < 2:
            self._finish_step_copy(i, r)
            return
        entered = self.in_collective.setdefault(op, [])
        entered.append(r)
        busy_until[r] = _WAITING
        if len(entered) == len(group):
            del self.in_collective[op]
            for rank in entered:
                busy_until[rank] = now
                self._finish_step_copy(i, rank)

    def _starts(self) -> int:
        """Ops the run starts: every node once, a replicated stage's step once
        per replica (no pass over the nodes without replicated stages)."""
        if all(len(group) < 2 for group in self.replica_ranks.values()):
            return len(self.nodes)
        return sum(map(self._copies, self.nodes))

    def _copies(self, op: Op) -> int:
        return len(self.replica_ranks[op.stage]) if op.kind == STEP_KIND else 1

    def _make_ready(self, i: int) -> None:
        op = self.nodes[i]
        if op.kind == STEP_KIND:
            self.step_copies_left[i] = len(self.replica_ranks[op.stage])
            for r in self.replica_ranks[op.stage]:
                heapq.heappush(self.ready[r], (self.step_key, op.mb, op.stage, op, i))
        else:
            heapq.heappush(self.ready[self.maps[op.pipeline][op.stage]], self.key(op, i))

    def _pick(self, r: int) -> tuple | None:
        """The heap item of the op rank r starts next (the op and its node
        index last), or None."""
        heap = self.ready[r]
        skipped = None
        chosen = None
        pop, inflight, limits, stages = heapq.heappop, self.inflight, self.limits, self.stages
        held, held_limits = self.held, self.held_limits
        while heap:
            item = pop(heap)
            op = item[3]
            kind, p, s, _ = op
            key = p * stages + s
            if kind in STORES_ACTIVATION and (
                    inflight[key] >= limits[s] or held[key] >= held_limits[s]):
                # parked until its stage admits a forward (_unpark): popping
                # every blocked forward at every pick was quadratic in m
                heapq.heappush(self.parked[key], item)
                continue
            if kind == STEP_KIND and not self._take_collective_turn(r, op):
                if skipped is None:
                    skipped = []
                skipped.append(item)
                continue
            chosen = item
            break
        if skipped:
            for item in skipped:
                heapq.heappush(heap, item)
        if chosen is not None:
            self._account(chosen[3])
        return chosen

    def _account(self, op: Op) -> None:
        # A micro-batch is in flight from its F to its B (or I): ZB-H1 thus keeps
        # 1F1B's warm-up and defers W into the bubbles. What W needs stays held
        # until W, which max_deferred_w bounds (held_limits).
        kind, p, s, _ = op
        key = p * self.stages + s
        if kind in STORES_ACTIVATION:
            alive = self.inflight[key] = self.inflight[key] + 1
            if alive > self.peak_inflight:
                self.peak_inflight = alive
            self.held[key] += 1
        elif kind == self.release_kind or kind == self.weight_kind:
            if kind == self.release_kind:
                self.inflight[key] -= 1
            if kind == self.weight_kind:
                self.held[key] -= 1
        else:
            return
        self._unpark(key, p, s)

    def _unpark(self, key: int, p: int, s: int) -> None:
        """While the stage replica (p, s) admits a forward, its first parked
        forward is ready again. Forwards of one stage are ranked by micro-batch
        under every policy, so only the first can be picked before the others:
        the rest follow one at a time, each when the one before is picked."""
        parked = self.parked.get(key)
        if parked and self.inflight[key] < self.limits[s] and self.held[key] < self.held_limits[s]:
            item = heapq.heappop(parked)
            heapq.heappush(self.ready[self.maps[p][s]], item)

    def _finish(self, i: int) -> None:
        waiting, ready, maps, key, nodes = self.waiting, self.ready, self.maps, self.key, \
            self.nodes
        for j in self.after[i]:
            left = waiting[j] - 1
            waiting[j] = left
            if not left:
                succ = nodes[j]
                kind, p, s, _ = succ
                if kind == STEP_KIND:
                    self._make_ready(j)
                else:  # _make_ready of a compute op
                    heapq.heappush(ready[maps[p][s]], key(succ, j))

    def _finish_step_copy(self, i: int, rank: int) -> None:
        # The replica on `rank` has its new version: its gated ops may run.
        nodes = self.nodes
        for j in self.after[i]:
            succ = nodes[j]
            if succ.kind != STEP_KIND and self.problem.rank_of(succ) == rank:
                self._release(j)
        self.step_copies_left[i] -= 1
        if self.step_copies_left[i] == 0:
            for j in self.after[i]:
                if nodes[j].kind == STEP_KIND:
                    self._release(j)

    def _release(self, i: int) -> None:
        self.waiting[i] -= 1
        if self.waiting[i] == 0:
            self._make_ready(i)

    def _stuck_error(self) -> OrderError:
        waiting = [list(h) for h in self.ready]
        for items in self.parked.values():
            for item in items:
                waiting[self.problem.rank_of(item[3])].append(item)
        blocked = [
            f"rank {r}: next ready {[i[3].label() for i in sorted(h)[:2]] or 'none'}"
            for r, h in enumerate(waiting)
        ]
        return OrderError(
            "the order policy cannot make progress (an in-flight bound admits no forward "
            "while nothing else is ready): " + "; ".join(blocked)
        )


def _priorities(order: str, split: bool) -> dict[str, int]:
    """Lower runs first. Steps always run first (they cost nothing)."""
    if order == "fill-drain":
        return {"F": 1, "B": 2, "I": 2, "W": 3}
    if order == "zero-bubble":
        return {"I": 1, "B": 1, "F": 2, "W": 3}
    return {"B": 1, "I": 1, "W": 2, "F": 3}  # 1f1b: a finished backward's W follows it


def _inflight_limits(problem: Problem, scale: float = 1.0) -> Callable[[Op], int]:
    spec = problem.spec

    def limit(op: Op) -> int:
        bound = spec.inflight_bound(op.stage)
        if bound is not None:
            return bound
        if spec.order == "fill-drain":
            return problem.m  # one step's micro-batches: GPipe fills per step
        return max(1, int(scale * (problem.stages - op.stage)))

    return limit


def _ready_key(mode: str, problem: Problem, priority: dict[str, int]
               ) -> Callable[[Op, int], tuple[int, int, int, Op, int]]:
    """Heap item of a ready op (and its node index), the op and the index
    last (smaller runs first; the op decides ties, the index never); steps
    always come first.

    mb: the policy's kind priority, then the oldest micro-batch.
    critical-path: the longest unit-cost path still ahead of the micro-batch
    (its remaining forwards and backwards), longest first.
    forward-first: forwards before backwards, oldest first.
    """
    stages = problem.stages

    def ahead(op: Op) -> int:
        if op.kind == "F":
            return (stages - 1 - op.stage) + 2 * stages
        return 2 * (op.stage + 1)

    if mode == "critical-path":
        return lambda op, i: (-ahead(op), op.mb, op.stage, op, i)
    if mode == "forward-first":
        return lambda op, i: (0 if op.kind == "F" else 1, op.mb, op.stage, op, i)
    return lambda op, i: (priority[op.kind], op.mb, op.stage, op, i)
