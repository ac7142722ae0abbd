"""Lower: turn each rank's order of operations into explicit instructions.

Communication goes next to the compute that needs it (a receive right before
its consumer, a send right after its producer); every weight gradient is
followed by an ACC; a step becomes ALLREDUCE (replicated stages), STASH (when a
later op reads the outgoing version), STEP and LOOKAHEAD; a compute op whose
version differs from the weights its stage points at is preceded by a SWAP,
and a stash slot is RELEASEd after its last reader.

Versions are a static property of the order: the version a replica is at is
the number of steps before the op in its rank's order.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from schedc.graph import Problem
from schedc.instructions import AROUND, READS_LOOKAHEAD, TABLE
from schedc.ops import STEP_KIND, Op
from schedc.order import UNIT_COST
from schedc.program import Instr

Replica = tuple[int, int]  # (pipeline, stage)


@dataclass
class VersionPlan:
    """Versions read by every compute op, and each stage's look-ahead alpha."""

    reads: dict[Op, int] = field(default_factory=dict)
    alpha: dict[int, float] = field(default_factory=dict)


def plan_versions(problem: Problem, orders: Sequence[Sequence[Op]]) -> VersionPlan:
    spec, plan = problem.spec, VersionPlan()
    reads, delay, stashes, m = plan.reads, spec.fixed_delay, spec.stashes, problem.m
    for seq in orders:
        current: dict[Replica, int] = defaultdict(int)
        for op in seq:
            kind, p, s, mb = op
            if kind == STEP_KIND:
                for rep in _replicas_here(problem, op, seq):
                    current[rep] += 1
                continue
            source = _VERSION_OF[kind]  # the table's version_of: B, I, W read F's
            if not source:
                if delay is not None:
                    reads[op] = max(0, mb // m - delay)  # the batch of mb, less the delay
                else:
                    reads[op] = current[(p, s)]
            elif stashes:
                reads[op] = reads[(source, p, s, mb)]  # an Op is a tuple: equal, same hash
            else:
                reads[op] = current[(p, s)]
    if spec.lookahead is not None:
        plan.alpha = _lookahead_alpha(problem, plan)
    return plan


_VERSION_OF = {op: row.version_of for op, row in TABLE.items()}


def _replicas_here(problem: Problem, step: Op, seq: Sequence[Op]) -> list[Replica]:
    rank = _rank_of_seq(problem, seq)
    return [(p, step.stage) for p, m in enumerate(problem.maps) if m[step.stage] == rank]


def _rank_of_seq(problem: Problem, seq: Sequence[Op]) -> int:
    for op in seq:
        if op.kind != STEP_KIND:
            return problem.rank_of(op)
    raise ValueError("a rank's order holds only steps")


def _lookahead_alpha(problem: Problem, plan: VersionPlan) -> dict[int, float]:
    """alpha_s = the largest delay at stage s ("auto"), or the Spec's constant."""
    if problem.spec.lookahead != "auto":
        return {s: float(problem.spec.lookahead) for s in range(problem.stages)}
    worst: dict[int, int] = defaultdict(int)
    for op, v in plan.reads.items():
        if op.kind in READS_LOOKAHEAD:
            worst[op.stage] = max(worst[op.stage], problem.batch_of(op.mb) - v)
    return {s: float(worst[s]) for s in range(problem.stages)}


def lower(problem: Problem, orders: Sequence[Sequence[Op]],
          times: Mapping[Op, int] | None = None) -> list[list[Instr]]:
    """Instructions of every rank. With `times` (a constructed schedule's
    planned start of every op, each rank's order sorted by it), a receive is
    posted in the batch before the receiver's first op planned at or after the
    moment its message is sent, rather than right before its consumer: the
    receiver is then never waited for by the sender, nor waits itself, and the
    batches are deadlock-free by construction (each batch waits only on batches
    planned no later than itself)."""
    plan = plan_versions(problem, orders)
    return [_RankLowering(problem, r, seq, plan, times).run() for r, seq in enumerate(orders)]


class _RankLowering:
    def __init__(self, problem: Problem, rank: int, seq: Sequence[Op], plan: VersionPlan,
                 times: Mapping[Op, int] | None = None):
        self.problem, self.rank, self.seq, self.plan = problem, rank, seq, plan
        self.messages: dict[tuple[str, int, int], _Messages] = {}
        self.early = _early_receives(seq, times, self._messages_of) if times else {}
        # the seq indices of the ops whose receives are posted early
        self.posted = {j for ops in self.early.values() for _, _, j in ops}
        self.out: list[Instr] = []
        self.current: dict[Replica, int] = defaultdict(int)
        self.active: dict[Replica, tuple[int, bool]] = defaultdict(lambda: (0, False))
        self.stashed: dict[Replica, set[int]] = defaultdict(set)
        self.last_reader = self._last_readers()

    def _last_readers(self) -> dict[tuple[Replica, int], int]:
        """Index in seq of the last op reading each (replica, version)."""
        last: dict[tuple[Replica, int], int] = {}
        reads = self.plan.reads
        for i, op in enumerate(self.seq):
            kind, p, s, _ = op
            if kind != STEP_KIND:
                last[((p, s), reads[op])] = i
        return last

    def run(self) -> list[Instr]:
        # The sends after one compute op and the receives before the next form
        # one batch (as Megatron's send_forward_recv_backward): two neighbours
        # that exchange in both directions then meet in the same batch. One
        # loop with the per-op work inline: a large run lowers millions of ops.
        out, reads, early, posted = self.out, self.plan.reads, self.early, self.posted
        append = out.append
        active, stashed, last_reader = self.active, self.stashed, self.last_reader
        looks_ahead = bool(self.plan.alpha)
        shapes: dict[tuple[str, int, int], tuple] = {}  # _Messages' rows and the replica
        sends: list[Instr] = []  # the sends after the previous compute op
        local: list[Instr] = []  # and its ops on this rank (ACC)
        for i, op in enumerate(self.seq):
            kind, p, s, mb = op
            if kind == STEP_KIND:
                # the sends of the last op and the receives posted here form one
                # batch; then the last op's local followers, then the step
                out += sends
                if i in early:
                    self._post_early(i)
                out += local
                sends, local = [], []
                self._step(i, op)
                continue
            version = reads[op]
            shape = shapes.get((kind, p, s))
            if shape is None:
                m = self._messages_of(op)
                shape = shapes[(kind, p, s)] = (m.receives, m.sends, m.local, (p, s))
            receives, send_rows, local_names, rep = shape
            out += sends
            if i in early:
                self._post_early(i)
            if receives and i not in posted:
                for recv, peer in receives:  # loops, not comprehensions: no frame each
                    append(Instr(recv, s, mb, p, None, peer))
            out += local
            lookahead = looks_ahead and self._lookahead(op, version)
            if active[rep] != (version, lookahead):
                self._swap(rep, version, lookahead)
            append(Instr(kind, s, mb, p, version, lookahead=True) if lookahead
                   else Instr(kind, s, mb, p, version))
            # kept for after the op: they go out with the next op's receives
            sends, local = [], []
            for send, peer in send_rows:
                sends.append(Instr(send, s, mb, p, None, peer))
            for name in local_names:
                local.append(Instr(name, s, mb, p))
            held = stashed.get(rep)  # a stash slot released after its last reader
            if held and version in held and last_reader[(rep, version)] == i:
                held.discard(version)
                self._emit("RELEASE", stage=s, pipeline=p, version=version)
        out += sends
        out += local
        return out

    # ---- compute and communication ---------------------------------------------
    def _post_early(self, i: int) -> None:
        """The receives posted in the batch before op i (a constructed
        schedule's, by the planned times)."""
        append, messages = self.out.append, self.messages
        for consumer, _, _ in self.early.get(i, ()):
            kind, p, s, mb = consumer
            found = messages.get((kind, p, s)) or self._messages_of(consumer)
            for recv, peer in found.receives:
                append(Instr(recv, s, mb, p, None, peer))

    def _messages_of(self, op: Op) -> _Messages:
        """The messages around `op`'s kind on its stage replica, with peers."""
        key = (op.kind, op.pipeline, op.stage)
        found = self.messages.get(key)
        if found is None:
            found = self.messages[key] = _messages(self.problem, self.rank, *key)
        return found

    def _lookahead(self, op: Op, version: int) -> bool:
        """Whether `op` reads extrapolated weights (it reads the stage's
        current version and the stage looks ahead)."""
        alpha = self.plan.alpha.get(op.stage, 0.0)
        lookahead = op.kind in READS_LOOKAHEAD and alpha != 0.0 and version >= 1
        return lookahead and version == self.current[(op.pipeline, op.stage)]

    def _swap(self, rep: Replica, version: int, lookahead: bool) -> None:
        """Point the replica's weights at the version (or look-ahead) the next op reads."""
        self._emit("SWAP", stage=rep[1], pipeline=rep[0], version=version,
                   lookahead=True if lookahead else None)
        self.active[rep] = (version, lookahead)

    # ---- weights -------------------------------------------------------------------
    def _step(self, i: int, op: Op) -> None:
        groups = sorted({m[op.stage] for m in self.problem.maps})
        for p, m in enumerate(self.problem.maps):
            if m[op.stage] != self.rank:
                continue
            rep = (p, op.stage)
            if len(groups) > 1:
                self._emit("ALLREDUCE", stage=op.stage, pipeline=p, group=tuple(groups))
            old = self.current[rep]
            if self.last_reader.get((rep, old), -1) > i:
                self._emit("STASH", stage=op.stage, pipeline=p, version=old)
                self.stashed[rep].add(old)
            self.current[rep] = old + 1
            self._emit("STEP", stage=op.stage, pipeline=p, version=old + 1, count=self.problem.m)
            self.active[rep] = (old + 1, False)
            alpha = self.plan.alpha.get(op.stage, 0.0)
            if alpha:
                self._emit("LOOKAHEAD", stage=op.stage, pipeline=p, version=old + 1, alpha=alpha)
            spec = self.problem.spec
            if spec.dp_mode == "async-sparse" and (old + 1) % spec.dp_period == 0:
                self._emit("SPARSE_SYNC", stage=op.stage, pipeline=p, version=old + 1)

    def _emit(self, op: str, **kw: object) -> None:
        self.out.append(Instr(op, **kw))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Messages:
    """The instruction table's `AROUND` for one compute kind on one stage
    replica of a rank: (receive op, peer rank) of each input from another
    rank, (send op, peer rank) of each output to another rank, the local
    followers, and (kind, stage) of the op on another rank whose output the
    first receive brings (None without receives)."""

    receives: tuple[tuple[str, int], ...]
    sends: tuple[tuple[str, int], ...]
    local: tuple[str, ...]
    producer: tuple[str, int] | None


def _messages(problem: Problem, rank: int, kind: str, pipeline: int, stage: int) -> _Messages:
    m, stages, around = problem.maps[pipeline], problem.stages, AROUND[kind]

    def remote(rows: Sequence[tuple]) -> list[tuple]:
        return [row for row in rows
                if 0 <= stage + row[1] < stages and m[stage + row[1]] != rank]

    receives, sends = remote(around.receives), remote(around.sends)
    return _Messages(tuple((row[0], m[stage + row[1]]) for row in receives),
                     tuple((row[0], m[stage + row[1]]) for row in sends), around.local,
                     (receives[0][2], stage + receives[0][1]) if receives else None)


def _early_receives(seq: Sequence[Op], times: Mapping[Op, int],
                    messages_of: Callable[[Op], _Messages]
                    ) -> dict[int, list[tuple[Op, int, int]]]:
    """seq index -> the ops whose input is received in the batch before it
    (each with the time its message is sent and its own seq index), in the
    order the messages are sent."""
    starts = [times[op] for op in seq]
    out: dict[int, list[tuple[Op, int, int]]] = defaultdict(list)
    producers: dict[tuple[str, int, int], tuple[str, int] | None] = {}
    for j, op in enumerate(seq):
        kind, p, s, mb = op
        if kind == STEP_KIND:
            continue
        if (kind, p, s) in producers:
            producer = producers[(kind, p, s)]
        else:
            producer = producers[(kind, p, s)] = messages_of(op).producer
        if producer is None:
            continue
        source, stage = producer
        # times' keys are Ops, and an Op is a tuple: an equal plain tuple finds it
        sent = times[(source, p, stage, mb)] + UNIT_COST[source]  # type: ignore[index]
        out[bisect.bisect_left(starts, sent)].append((op, sent, j))
    for ops in out.values():
        ops.sort(key=itemgetter(1))
    return out
