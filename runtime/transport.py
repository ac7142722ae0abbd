"""Moving tensors between ranks: the transport interface and the
`torch.distributed` point-to-point transport.

A transport sends and receives the activation or gradient of one
instruction, and sums gradient accumulators over replicas. `recv` and
`allreduce` may answer "not yet" (None / False) -- only the in-process
transport does, to let its cooperative driver switch ranks; the distributed
transport blocks instead.

Shapes and dtypes are agreed once at start-up (`boundary_specs`), so a message
carries only its data. Sends are asynchronous (`isend`, waited for before
the next drain point); receives block. Summation order of every reduction is
fixed (sorted ranks) so that results are bitwise reproducible and equal to the
in-process transport's.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist

from schedc.program import Instr

# Boundary s is the tensor between stage s and stage s + 1 (activation forward,
# its gradient backward): same shape and dtype both ways.
BoundarySpec = tuple[tuple[int, ...], torch.dtype]


def boundary_of(instr: Instr) -> int:
    """The stage boundary an instruction's message crosses."""
    if instr.op in ("SEND_ACT", "RECV_GRAD"):
        return instr.stage
    return instr.stage - 1  # RECV_ACT, SEND_GRAD


class Transport(Protocol):
    def send(self, instr: Instr, tensor: torch.Tensor) -> None: ...

    def recv(self, instr: Instr) -> torch.Tensor | None: ...

    def allreduce(self, instr: Instr, tensor: torch.Tensor) -> bool: ...

    def dp_allreduce(self, tensor: torch.Tensor) -> None: ...

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


class DistTransport:
    """Point-to-point over torch.distributed (gloo on CPU, NCCL on GPU).

    Program rank r of data-parallel replica d is global rank d * R + r.
    """

    def __init__(
        self, rank: int, ranks: int, dp_index: int, dp_size: int,
        boundaries: dict[int, BoundarySpec], device: torch.device,
        groups: dict[tuple[int, ...], dist.ProcessGroup], dp_group: dist.ProcessGroup | None,
    ) -> None:
        self.rank = rank
        self.ranks = ranks
        self.dp_index = dp_index
        self.dp_size = dp_size
        self.boundaries = boundaries
        self.device = device
        self.groups = groups
        self.dp_group = dp_group
        self._inflight: list[tuple[dist.Work, torch.Tensor]] = []
        self.bytes_sent: dict[int, int] = {}  # boundary -> bytes of one message

    def _global(self, program_rank: int) -> int:
        return self.dp_index * self.ranks + program_rank

    def send(self, instr: Instr, tensor: torch.Tensor) -> None:
        shape, dtype = self.boundaries[boundary_of(instr)]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise RuntimeError(
                f"message of shape {tuple(tensor.shape)} {tensor.dtype}, "
                f"agreed {shape} {dtype} at start-up"
            )
        tensor = tensor.contiguous()
        work = dist.isend(tensor, dst=self._global(instr.peer))
        self._inflight.append((work, tensor))  # keep the buffer alive until sent
        if len(self._inflight) > 32:
            self._reap()

    def _reap(self) -> None:
        keep = []
        for work, t in self._inflight:
            if not work.is_completed():
                keep.append((work, t))
        self._inflight = keep

    def recv(self, instr: Instr) -> torch.Tensor:
        shape, dtype = self.boundaries[boundary_of(instr)]
        buf = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(buf, src=self._global(instr.peer))
        return buf

    def allreduce(self, instr: Instr, tensor: torch.Tensor) -> bool:
        group = tuple(instr.group)
        if self.rank not in group:
            raise RuntimeError(f"rank {self.rank} is not in its own ALLREDUCE group {group}")
        _reduce(tensor, self.groups[group], len(group))
        return True

    def dp_allreduce(self, tensor: torch.Tensor) -> None:
        if self.dp_group is not None:
            _reduce(tensor, self.dp_group, self.dp_size)

    def drain(self) -> None:
        for work, _ in self._inflight:
            work.wait()
        self._inflight = []
