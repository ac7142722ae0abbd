"""Moving tensors between ranks: the transport interface and the
`torch.distributed` point-to-point transport.

The interpreter hands a transport one *batch* at a time: a maximal run of
consecutive send/receive instructions, exactly the unit under which the
verifier proved the programs deadlock-free (docs/programs.md). `post` starts
every send and receive of the batch at once (`batch_isend_irecv`), `wait`
completes the whole batch -- sends included -- before the interpreter goes
on, so a rank holds at most one posted batch (K = 1, the default). Under
the overlap rule the programs were proven with (`schedc compile
--posted-batches K`, the manifest's `overlap`, `schedc/overlap.py`) with K > 1,
`wait` completes the batch's receives and leaves its sends to complete in the
background, waiting for the oldest batch's sends once more than K - 1 batches
hold sends, and for all of them at a drain point and before any collective;
with early receives, `prepost` posts the receives of the coming batch before
the instructions that precede it, and `post` of that batch then adds only its
sends (docs/programs.md, "Overlap"). Each pipeline has its own
communicator, so messages between two ranks match in order per direction and
per pipeline, as the verifier assumed. ALLREDUCEs run in program order.

`wait`, `allreduce` and `agree` may answer "not yet" (None / False) -- only
the in-process transport does, to let its cooperative driver switch ranks;
the distributed transport blocks instead, under the watchdog's deadline
(`runtime/watchdog.py`). On CUDA (NCCL) `wait` does not block the host at all:
NCCL runs the batch on its own stream, and `Work.wait()` makes the compute
stream wait for it with an event, so the host goes on enqueuing work and
communication overlaps the compute queued before it; NCCL's own timeout
(set at `init_process_group`) and the watchdog thread bound the wait.

Shapes and dtypes are agreed once at start-up (`build.probe`), so a message
carries only its data. Summation order of every reduction is fixed (sorted
ranks) so that results are bitwise reproducible and equal to the in-process
transport's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import torch
import torch.distributed as dist

from schedc.errors import UserError
from schedc.instructions import boundary
from schedc.program import SEND_OPS, Instr

from .watchdog import NullWatchdog, Watchdog

# Boundary s is the tensor between stage s and stage s + 1 (activation forward,
# its gradient backward): same shape and dtype both ways.
BoundarySpec = tuple[tuple[int, ...], torch.dtype]


def boundary_of(instr: Instr) -> int:
    """The stage boundary an instruction's message crosses (the instruction
    table's `boundary`)."""
    return boundary(instr.op, instr.stage)


def describe(instr: Instr, peer: str | None = None) -> str:
    """What a rank standing at `instr` waits for, in words."""
    peer = peer or f"rank {instr.peer}"
    what = "activation" if instr.op.endswith("ACT") else "gradient"
    b = boundary_of(instr)
    if instr.op in SEND_OPS:
        return f"{peer} to receive the {what} of micro-batch {instr.mb} (boundary {b}|{b + 1})"
    return f"the {what} of micro-batch {instr.mb} (boundary {b}|{b + 1}) from {peer}"


class BatchError(RuntimeError):
    """A batch failed; `pos` is the position of the failing instruction in it."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(reason)
        self.pos = pos


class Transport(Protocol):
    def post(self, batch: list[Instr], tensors: list[torch.Tensor | None]) -> object: ...

    def wait(self, handle: object) -> list[torch.Tensor | None] | None: ...

    def allreduce(self, instr: Instr, tensor: torch.Tensor) -> bool: ...

    def dp_allreduce(self, tensor: torch.Tensor) -> None: ...

    def agree(self, epoch: int, flag: bool) -> bool | None: ...

    def drain(self) -> None: ...


def ordered_sum(parts: list[torch.Tensor], out: torch.Tensor) -> None:
    """out = parts[0] + parts[1] + ... , left to right (a fixed order)."""
    total = parts[0].clone()
    for p in parts[1:]:
        total.add_(p)
    out.copy_(total)


def _reduce(tensor: torch.Tensor, group: dist.ProcessGroup, size: int) -> None:
    """Sum `tensor` over `group`, in place, bitwise equal on every member.

    Two members: all_reduce (a + b == b + a exactly). More: all_gather and a
    left-to-right sum in rank order, since the collective's own order is the
    library's choice and would differ from the in-process reference.
    """
    if size == 1 or tensor.numel() == 0:
        return
    if size == 2:
        dist.all_reduce(tensor, group=group)
        return
    parts = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(parts, tensor, group=group)
    ordered_sum(parts, tensor)


@dataclass
class _Posted:
    batch: list[Instr]
    works: list
    tensors: list[torch.Tensor | None] = field(default_factory=list)  # per instruction
    waiting: list[int] = field(default_factory=list)  # sends still completing (K > 1)


class DistTransport:
    """Point-to-point over torch.distributed (gloo on CPU, NCCL on GPU).

    Program rank r of data-parallel replica d is global rank d * R + r.
    `pipelines[p]`: the communicator of pipeline p (this replica's R ranks).
    `control`: a gloo group over every process, for the step agreement.
    """

    def __init__(
        self, rank: int, ranks: int, dp_index: int, dp_size: int,
        boundaries: dict[int, BoundarySpec], device: torch.device,
        groups: dict[tuple[int, ...], dist.ProcessGroup], dp_group: dist.ProcessGroup | None,
        pipelines: list[dist.ProcessGroup] | None = None,
        control: dist.ProcessGroup | None = None, watchdog: Watchdog | None = None,
        grad_boundaries: dict[int, BoundarySpec] | None = None,
        posted_batches: int = 1, early_receives: bool = False,
    ) -> None:
        self.rank = rank
        self.ranks = ranks
        self.dp_index = dp_index
        self.dp_size = dp_size
        self.boundaries = boundaries
        # A gradient message carries only the leaves that need one (runtime/boundary.py).
        self.grad_boundaries = boundaries if grad_boundaries is None else grad_boundaries
        self.device = device
        self.groups = groups
        self.dp_group = dp_group
        self.pipelines = pipelines
        self.control = control
        self.watchdog = watchdog or NullWatchdog()
        self.bytes_sent: dict[int, int] = {}  # boundary -> bytes of one message
        # K (docs/programs.md, "Overlap"): batches whose sends may still be completing.
        self.posted_batches = posted_batches
        self._sending: deque[_Posted] = deque()
        if early_receives and device.type == "cuda":
            raise UserError("receives posted ahead (programs compiled with --posted-batches "
                            f"{posted_batches}) are proven for gloo, whose sends and receives "
                            "progress independently; NCCL runs a communicator's operations "
                            "in order: compile with --posted-batches 1 for CUDA")
        self._ahead: _Posted | None = None  # the coming batch, its receives posted

    def _global(self, program_rank: int) -> int:
        return self.dp_index * self.ranks + program_rank

    def peer_name(self, instr: Instr) -> str:
        g = self._global(instr.peer)
        return f"rank {g}" if g == instr.peer else f"rank {g} (program rank {instr.peer})"

    def _group(self, instr: Instr) -> dist.ProcessGroup | None:
        if self.pipelines is None:
            return None
        return self.pipelines[instr.pipeline or 0]

    def post(self, batch: list[Instr], tensors: list[torch.Tensor | None]) -> _Posted:
        """Post the batch: all of it, or its sends where `prepost` posted its receives."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.batch != batch:
            raise BatchError(0, "receives were posted ahead for another batch")
        handle = ahead or _Posted(batch, [None] * len(batch), [None] * len(batch))
        self._issue(handle, [i for i, ins in enumerate(batch)
                             if ahead is None or ins.op in SEND_OPS], tensors)
        return handle

    def prepost(self, batch: list[Instr]) -> None:
        """Post the receives of the coming batch now (early receives); its
        `post` adds the sends."""
        handle = _Posted(batch, [None] * len(batch), [None] * len(batch))
        self._issue(handle, [i for i, ins in enumerate(batch) if ins.op not in SEND_OPS],
                    [None] * len(batch))
        self._ahead = handle

    def _issue(self, handle: _Posted, indices: list[int],
               tensors: list[torch.Tensor | None]) -> None:
        """Start the operations batch[indices], one batch_isend_irecv per
        communicator (NCCL coalesces per group)."""
        batch, ops = handle.batch, {}
        for i in indices:
            ins, t = batch[i], tensors[i]
            specs = self.grad_boundaries if ins.op.endswith("GRAD") else self.boundaries
            shape, dtype = specs[boundary_of(ins)]
            if ins.op in SEND_OPS:
                assert t is not None
                if tuple(t.shape) != shape or t.dtype != dtype:
                    raise BatchError(i, f"message of shape {tuple(t.shape)} {t.dtype}, "
                                     f"agreed {shape} {dtype} at start-up")
                buf, fn = t.contiguous(), dist.isend
            else:
                buf, fn = torch.empty(shape, dtype=dtype, device=self.device), dist.irecv
            handle.tensors[i] = buf
            ops[i] = dist.P2POp(fn, buf, self._global(ins.peer), group=self._group(ins))
        by_group: dict[int, list[int]] = {}
        for i in indices:
            by_group.setdefault(batch[i].pipeline or 0, []).append(i)
        for idx in by_group.values():
            got = dist.batch_isend_irecv([ops[i] for i in idx])
            if len(got) == len(idx):
                for i, w in zip(idx, got, strict=True):
                    handle.works[i] = w
            else:  # a coalesced work for the whole sub-batch
                for i in idx:
                    handle.works[i] = got[-1] if got else None

    def wait(self, handle: object) -> list[torch.Tensor | None]:
        """Complete the batch's receives; its sends too (K = 1), or queue the batch
        (if it holds sends) and complete the oldest queued batch's sends once more
        than K - 1 are queued: the replay core's count, whatever has completed."""
        assert isinstance(handle, _Posted)
        batch = handle.batch
        recvs = [i for i, ins in enumerate(batch) if ins.op not in SEND_OPS]
        sends = [i for i, ins in enumerate(batch) if ins.op in SEND_OPS]
        if self.posted_batches == 1:
            self._complete(handle, recvs + sends)  # receives first: reported waits
        else:
            done = self._complete(handle, recvs)
            handle.waiting = [i for i in sends if id(handle.works[i]) not in done]
            if sends:
                self._sending.append(handle)
            while len(self._sending) > self.posted_batches - 1:
                self._finish_sends(self._sending.popleft())
        return [None if ins.op in SEND_OPS else t
                for ins, t in zip(batch, handle.tensors, strict=True)]

    def _finish_sends(self, handle: _Posted) -> None:
        """Complete a queued batch's sends; an error names that batch's send."""
        try:
            self._complete(handle, handle.waiting)
        except BatchError as exc:
            raise RuntimeError(f"earlier send {handle.batch[exc.pos].label()}: {exc}") from None

    def _complete(self, handle: _Posted, indices: list[int]) -> set[int]:
        """Wait for the works of batch[indices] (a coalesced work once); their ids."""
        batch = handle.batch
        done: set[int] = set()
        for i in indices:
            work = handle.works[i]
            if work is None or id(work) in done:
                continue
            what = describe(batch[i], self.peer_name(batch[i]))
            if self.device.type == "cuda":
                # NCCL: wait() only makes the compute stream wait for the comm stream
                # (no host sync); the deadline is the watchdog's and NCCL's own.
                work.wait()
                done.add(id(work))
                continue
            with self.watchdog.waiting(what):
                try:
                    work.wait(timeout=timedelta(seconds=self.watchdog.remaining()))
                except RuntimeError as exc:
                    if "timed out" in str(exc).lower():
                        raise BatchError(i, f"timeout: waited {self.watchdog.timeout:g} s "
                                         f"for {what}") from None
                    raise BatchError(i, f"while waiting for {what}: "
                                     f"{_first_line(exc)}") from None
            done.add(id(work))
        return done

    def allreduce(self, instr: Instr, tensor: torch.Tensor) -> bool:
        self.drain()  # collectives see no point-to-point operation in flight
        group = tuple(instr.group)
        if self.rank not in group:
            raise RuntimeError(f"rank {self.rank} is not in its own ALLREDUCE group {group}")
        with self.watchdog.waiting(f"ALLREDUCE of stage {instr.stage} with ranks "
                                   f"{', '.join(str(self._global(r)) for r in group)}"):
            _reduce(tensor, self.groups[group], len(group))
        return True

    def dp_allreduce(self, tensor: torch.Tensor) -> None:
        self.drain()
        if self.dp_group is not None:
            with self.watchdog.waiting("the data-parallel gradient sum"):
                _reduce(tensor, self.dp_group, self.dp_size)

    def agree(self, epoch: int, flag: bool) -> bool:
        """OR of `flag` over every process (the NaN/Inf step agreement)."""
        self.drain()
        if self.control is None:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        with self.watchdog.waiting(f"the other ranks' NaN/Inf check of step {epoch}"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def drain(self) -> None:
        """Complete every queued send (a drain point; also before any collective)."""
        while self._sending:
            self._finish_sends(self._sending.popleft())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # gloo prefixes its source location: "[.../pair.cc:553] Connection closed by peer ..."
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line.split(". This is typically")[0][:300]  # gloo's advice and emoji
