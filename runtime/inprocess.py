"""The in-process transport: every rank's program in one process.

Messages are handed over by reference through one queue per channel (sender,
receiver, pipeline), matched in order exactly as the distributed transport's
one-communicator-per-pipeline point-to-point (and the verifier's replay core,
`schedc.replay`) match them: the k-th receive on a channel takes the k-th
send, and a receive meeting a message it does not expect is an error. A send
never blocks. Receives posted ahead (`prepost`, programs proven with early
receives) take their messages as soon as those are on the channel, still in
order: every earlier receive on the channel has been waited for. The driver
interleaves the ranks cooperatively: it runs one rank's interpreter until it
blocks on a receive (or a reduction) whose counterpart has not run yet, then
switches to the next rank. A full round in which no rank advances is a
deadlock, reported with every rank's blocked instruction -- the verifier makes
that impossible for compiled programs.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Generator

import torch

from schedc.instructions import message_key
from schedc.program import SEND_OPS, Instr, Manifest

from .transport import ordered_sum

_PENDING = object()


def _what(instr: Instr) -> tuple:
    return message_key(instr.op, instr.stage, instr.mb, instr.pipeline or 0)


class _Reduction:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.parts: dict[tuple[int, int], torch.Tensor] = {}
        self.done = False
        self.acked = 0


class Hub:
    """State shared by the ranks of one in-process run."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        # (sender, receiver, pipeline) -> queue of (what, tensor), in send order
        self.channels: dict[tuple[int, int, int], deque] = defaultdict(deque)
        self.reductions: dict[tuple, _Reduction] = {}
        self.votes: dict[int, dict[int, bool]] = {}  # step agreement: epoch -> rank -> flag
        self.voted: dict[int, set[int]] = {}

    def replicas_in(self, stage: int, group: tuple[int, ...]) -> int:
        return sum(1 for _, r in self.manifest.ranks_of_stage(stage) if r in group)


class LocalTransport:
    """One rank's view of the hub."""

    def __init__(self, hub: Hub, rank: int) -> None:
        self.hub = hub
        self.rank = rank
        self._count: dict[tuple, int] = defaultdict(int)
        self._waiting: dict[tuple[int, int], tuple] = {}  # (stage, pipeline) -> reduction key
        self._ahead: list | None = None  # the coming batch's handle, its receives posted

    def post(self, batch: list[Instr], tensors: list[torch.Tensor | None]) -> list:
        """Sends join their channel at once; the handle collects the receives
        (from `prepost`'s handle, where it posted them ahead)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[-1] != batch:
            raise RuntimeError(f"rank {self.rank}: receives were posted ahead for another batch")
        for ins, t in zip(batch, tensors, strict=True):
            if ins.op in SEND_OPS:
                self.hub.channels[(self.rank, ins.peer, ins.pipeline or 0)].append((_what(ins), t))
        return ahead or [None if ins.op in SEND_OPS else _PENDING for ins in batch] + [batch]

    def prepost(self, batch: list[Instr]) -> None:
        """Post the receives of the coming batch: they take what has arrived."""
        self._ahead = [None if ins.op in SEND_OPS else _PENDING for ins in batch] + [batch]
        self._take(self._ahead)

    def wait(self, handle: list) -> list[torch.Tensor | None] | None:
        """The batch's received tensors, or None while one has not been sent yet."""
        return self._take(handle)

    def _take(self, handle: list) -> list[torch.Tensor | None] | None:
        *got, batch = handle
        for i, ins in enumerate(batch):
            if got[i] is _PENDING:
                queue = self.hub.channels[(ins.peer, self.rank, ins.pipeline or 0)]
                if not queue:
                    continue
                what, tensor = queue.popleft()
                if what != _what(ins):
                    raise RuntimeError(f"rank {self.rank}: {ins.label()} meets a message "
                                       f"for {what} from rank {ins.peer}")
                handle[i] = got[i] = tensor
        return None if any(g is _PENDING for g in got) else got

    def pending(self, handle: list) -> int:
        """Position in the batch of the first receive still waiting (for reports)."""
        return next((i for i, g in enumerate(handle[:-1]) if g is _PENDING), 0)

    def agree(self, epoch: int, flag: bool) -> bool | None:
        """OR of `flag` over every rank once all have voted; None until then."""
        votes = self.hub.votes.setdefault(epoch, {})
        votes.setdefault(self.rank, flag)
        if len(votes) < self.hub.manifest.world_size:
            return None
        result = any(votes.values())
        self.hub.voted.setdefault(epoch, set()).add(self.rank)
        if len(self.hub.voted[epoch]) == self.hub.manifest.world_size:
            del self.hub.votes[epoch], self.hub.voted[epoch]
        return result

    def allreduce(self, instr: Instr, tensor: torch.Tensor) -> bool:
        me = (instr.stage, instr.pipeline or 0)
        key = self._waiting.get(me)
        if key is None:  # first call for this instruction: contribute
            group = tuple(instr.group)
            occurrence = (instr.stage, group)
            key = (*occurrence, self._count[occurrence, me])
            self._count[occurrence, me] += 1
            red = self.hub.reductions.setdefault(
                key, _Reduction(self.hub.replicas_in(instr.stage, group))
            )
            red.parts[(self.rank, me[1])] = tensor
            if len(red.parts) == red.expected:
                parts = [red.parts[k] for k in sorted(red.parts)]
                total = torch.empty_like(tensor)
                ordered_sum(parts, total)
                for p in parts:
                    p.copy_(total)
                red.done = True
            self._waiting[me] = key
        red = self.hub.reductions[key]
        if not red.done:
            return False
        del self._waiting[me]
        red.acked += 1
        if red.acked == red.expected:
            del self.hub.reductions[key]
        return True

    def dp_allreduce(self, tensor: torch.Tensor) -> None:
        return None  # one pipeline replica in-process

    def drain(self) -> None:
        return None


def run_cooperatively(runs: dict[int, Generator[Instr, None, None]], progress) -> None:
    """Drive every rank's interpreter generator to completion.

    `progress(rank)` is a counter that grows as the rank executes
    instructions; a round in which no counter moves and no rank finishes
    is a deadlock.
    """
    live = dict(runs)
    blocked: dict[int, Instr] = {}
    while live:
        moved = False
        for rank in sorted(live):
            before = progress(rank)
            try:
                blocked[rank] = next(live[rank])
            except StopIteration:
                del live[rank]
                blocked.pop(rank, None)
                moved = True
                continue
            moved = moved or progress(rank) != before
        if not moved:
            waits = "; ".join(f"rank {r} waits at {i.label()}" for r, i in sorted(blocked.items()))
            raise RuntimeError(f"in-process run deadlocked: {waits}")
