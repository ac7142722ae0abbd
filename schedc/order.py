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
from collections.abc import Callable

import networkx as nx

from schedc.errors import UserError
from schedc.graph import Problem
from schedc.ops import STEP_KIND, Op, step_op

UNIT_COST = {"F": 1, "B": 2, "I": 1, "W": 1, STEP_KIND: 0}


class OrderError(UserError):
    """The policy cannot order the graph (a bound leaves no admissible op)."""


def order_ops(problem: Problem, graph: nx.DiGraph) -> list[list[Op]]:
    if problem.spec.order == "interleaved":
        return interleaved_order(problem)
    return ListScheduler(problem, graph).run()


# ---- interleaved 1F1B (Megatron) ------------------------------------------------
def interleaved_order(problem: Problem) -> list[list[Op]]:
    """Megatron's depth-first interleaved schedule, one batch.

    Forward k on rank r runs chunk (k // p) % v of micro-batch
    (k // (p v)) * p + k % p; backwards walk the chunks in reverse. Rank r warms
    up with (p - r - 1) * 2 + (v - 1) * p forwards, then alternates.
    """
    p, v, m = problem.ranks, problem.spec.chunks, problem.m
    total = m * v
    orders = []
    for r in range(p):
        def item(kind: str, k: int, r: int = r) -> Op:
            chunk = (k // p) % v
            if kind == "B":
                chunk = v - 1 - chunk
            mb = (k // (p * v)) * p + k % p
            return Op(kind, 0, chunk * p + r, mb)

        warmup = min((p - r - 1) * 2 + (v - 1) * p, total)
        seq = [item("F", k) for k in range(warmup)]
        for i in range(total - warmup):
            seq += [item("F", warmup + i), item("B", i)]
        seq += [item("B", k) for k in range(total - warmup, total)]
        orders.append(_append_steps(seq, problem))
    return orders


def _append_steps(seq: list[Op], problem: Problem) -> list[Op]:
    """Place each stage's step right after its last backward on this rank."""
    last: dict[int, int] = {}
    for i, op in enumerate(seq):
        if op.kind == problem.weight_grad_kind():
            last[op.stage] = i
    out: list[Op] = []
    for i, op in enumerate(seq):
        out.append(op)
        out.extend(step_op(s, 0) for s, idx in sorted(last.items()) if idx == i)
    return out


# ---- list scheduling ----------------------------------------------------------
class ListScheduler:
    """Unit-cost list scheduling of `graph` under the Spec's order policy."""

    def __init__(self, problem: Problem, graph: nx.DiGraph) -> None:
        self.problem = problem
        self.graph = graph
        spec = problem.spec
        self.priority = _priorities(spec.order, spec.split_backward)
        self.limit = _inflight_limits(problem)
        self.release_kind = problem.grad_kind()
        self.replica_ranks = {
            s: sorted({m[s] for m in problem.maps}) for s in range(problem.stages)
        }
        self.waiting = {op: graph.in_degree(op) for op in graph.nodes}
        self.ready: list[list[tuple]] = [[] for _ in range(problem.ranks)]
        self.inflight: dict[tuple[int, int], int] = defaultdict(int)
        self.step_copies_left: dict[Op, int] = {}
        self.orders: list[list[Op]] = [[] for _ in range(problem.ranks)]

    def run(self) -> list[list[Op]]:
        for op, n in self.waiting.items():
            if n == 0:
                self._make_ready(op)
        events: list[tuple[int, int, Op]] = []
        busy_until = [0] * self.problem.ranks
        now, remaining = 0, sum(self._copies(op) for op in self.graph.nodes)
        while remaining:
            while events and events[0][0] <= now:
                _, _, op = heapq.heappop(events)
                self._finish(op)
            remaining -= self._start_ready(now, busy_until, events)
            if not remaining:
                break
            if not events:
                raise self._stuck_error()
            now = events[0][0]
        return self.orders

    def _start_ready(self, now: int, busy_until: list[int], events: list) -> int:
        started, progress = 0, True
        while progress:
            progress = False
            for r in range(self.problem.ranks):
                while busy_until[r] <= now:
                    op = self._pick(r)
                    if op is None:
                        break
                    self.orders[r].append(op)
                    started += 1
                    progress = True
                    if op.kind == STEP_KIND:
                        self._finish_step_copy(op, r)
                        continue
                    busy_until[r] = now + UNIT_COST[op.kind]
                    heapq.heappush(events, (busy_until[r], started, op))
        return started

    def _copies(self, op: Op) -> int:
        return len(self.replica_ranks[op.stage]) if op.kind == STEP_KIND else 1

    def _make_ready(self, op: Op) -> None:
        if op.kind == STEP_KIND:
            self.step_copies_left[op] = len(self.replica_ranks[op.stage])
            for r in self.replica_ranks[op.stage]:
                heapq.heappush(self.ready[r], (0, op.mb, op.stage, op))
        else:
            rank = self.problem.rank_of(op)
            heapq.heappush(self.ready[rank], (self.priority[op.kind], op.mb, op.stage, op))

    def _pick(self, r: int) -> Op | None:
        heap = self.ready[r]
        skipped = []
        chosen = None
        while heap:
            item = heapq.heappop(heap)
            op = item[3]
            if op.kind == "F" and self.inflight[(op.pipeline, op.stage)] >= self.limit(op):
                skipped.append(item)
                continue
            chosen = op
            break
        for item in skipped:
            heapq.heappush(heap, item)
        if chosen is not None:
            self._account(chosen)
        return chosen

    def _account(self, op: Op) -> None:
        # A micro-batch is in flight from its F to its B (or I: what W still
        # needs is its inputs' gradients, not the activations): ZB-H1 thus keeps
        # 1F1B's warm-up and memory and defers W into the bubbles.
        key = (op.pipeline, op.stage)
        if op.kind == "F":
            self.inflight[key] += 1
        elif op.kind == self.release_kind:
            self.inflight[key] -= 1

    def _finish(self, op: Op) -> None:
        for succ in self.graph.successors(op):
            self._release(succ)

    def _finish_step_copy(self, op: Op, rank: int) -> None:
        # The replica on `rank` has its new version: its gated forwards may run.
        for succ in self.graph.successors(op):
            if succ.kind == "F" and self.problem.rank_of(succ) == rank:
                self._release(succ)
        self.step_copies_left[op] -= 1
        if self.step_copies_left[op] == 0:
            for succ in self.graph.successors(op):
                if succ.kind == STEP_KIND:
                    self._release(succ)

    def _release(self, op: Op) -> None:
        self.waiting[op] -= 1
        if self.waiting[op] == 0:
            self._make_ready(op)

    def _stuck_error(self) -> OrderError:
        blocked = [
            f"rank {r}: next ready {[i[3].label() for i in sorted(h)[:2]] or 'none'}"
            for r, h in enumerate(self.ready)
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


def _inflight_limits(problem: Problem) -> Callable[[Op], int]:
    spec = problem.spec
    unbounded = problem.num_mbs

    def limit(op: Op) -> int:
        bound = spec.inflight_bound(op.stage)
        if bound is not None:
            return bound
        if spec.order == "fill-drain":
            return unbounded
        return problem.stages - op.stage

    return limit
