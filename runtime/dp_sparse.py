"""Asynchronous data parallelism across pipeline replicas (spec `dp_mode async-sparse`).

    schedc compile dp.sched -o out/dp          # dp_mode async-sparse, dp_fraction 0.25, ...
    torchrun --nproc-per-node 4 -m schedc.runtime.launch out/dp --dp 2 ...

AsyncMesh style: each replica steps on its own gradients (no gradient
all-reduce). After every `dp_period`-th STEP the program holds a SPARSE_SYNC:
the replica copies a subset S of the stage's parameters (a fraction
`dp_fraction` of them) into a send buffer and starts a non-blocking sum over
the same stage of every replica (`all_reduce(async_op=True)` on the stage's
data-parallel group). The sum lands in that separate buffer; the weights are
touched only at a step boundary, by the fused `drift_apply` kernel:

    every STEP:            d <- beta * d + (1 - beta) * (x_t - x_{t-1})
    average of S arrives:  x[S] <- sum[S] / D + lateness * d[S]

where `lateness` is the number of steps between the averaged parameters
(version v) and now. `dp_max_lateness` tau: 0 waits at the SPARSE_SYNC itself
and applies at once (blocking). Above 0, two policies (`--dp-late`):

- `wait` (default, deterministic): the average of version v is applied right
  after the STEP to v + tau, waiting for it there if it has not arrived; a
  replica runs at most tau steps ahead of the slowest.
- `drop` (never stalls): at every step boundary, averages that have arrived
  are applied with their actual lateness; one still missing tau steps after
  its version is dropped (its collective is waited for only at the drain
  point). A slowed replica then does not hold the others back.

The subset: the buffer is cut into blocks of `block` elements and the j-th
exchange of a stage takes the rotating window of blocks
[floor(j rho n), floor((j+1) rho n)) mod n (at least one block): every replica
computes it from the version alone, so no message agrees on it, and over 1/rho
exchanges every parameter is averaged once.

At a drain point (end of a segment: end of run, checkpoint) every exchange
still in flight is waited for and applied, so replicas are consistent there.
The drift EMA and x_{t-1} are not in checkpoints: a resumed run restarts them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .stage import StageReplica

try:
    from schedc.kernels import drift_apply
except ImportError:  # pragma: no cover - kernels are part of the package
    drift_apply = None

__all__ = ["DpStats", "SparseDP", "block_size", "subset_blocks", "subset_window",
           "window_slices"]

POLICIES = ("wait", "drop")


def block_size(numel: int) -> int:
    """Elements per block: a power of two in [64, 1024], aiming at >= 256 blocks."""
    if numel <= 0:
        return 64
    return max(64, min(1024, 2 ** int(math.floor(math.log2(max(numel / 256, 1))))))


def subset_window(num_blocks: int, fraction: float, index: int) -> tuple[int, int]:
    """(first block, number of blocks) of the `index`-th exchange's window; the window
    is contiguous modulo `num_blocks`, so at most two slices of the buffer."""
    if num_blocks == 0:
        return 0, 0
    if fraction >= 1.0:
        return 0, num_blocks
    lo = math.floor(index * fraction * num_blocks + 1e-9)
    hi = max(math.floor((index + 1) * fraction * num_blocks + 1e-9), lo + 1)
    return lo % num_blocks, min(hi - lo, num_blocks)


def subset_blocks(num_blocks: int, fraction: float, index: int) -> list[int]:
    """Blocks of the `index`-th exchange (index = version // period - 1), in packing order."""
    lo, count = subset_window(num_blocks, fraction, index)
    return [(lo + i) % num_blocks for i in range(count)]


def window_slices(numel: int, block: int, lo: int, count: int) -> list[tuple[int, int]]:
    """The window's element ranges [a, b) of the buffer, in packing order (one or two)."""
    num_blocks = -(-numel // block)
    end = min(lo + count, num_blocks)
    out = [(lo * block, min(end * block, numel))]
    if lo + count > num_blocks:  # wraps around to the start
        out.append((0, (lo + count - num_blocks) * block))
    return out


def packed_length(numel: int, block: int, blocks: list[int]) -> int:
    return sum(min(block, numel - j * block) for j in blocks)


@dataclass
class DpStats:
    """What this process's sparse averaging did (all its stage replicas)."""

    exchanges: int = 0
    bytes_sent: int = 0  # payload of the all-reduces this process contributed
    applied: int = 0
    dropped: int = 0
    lateness: list[int] = field(default_factory=list)  # of every applied average
    wait_s: float = 0.0  # time spent blocked on averages during the steps
    waits: int = 0  # times a step blocked on an average not yet arrived


@dataclass
class _Exchange:
    version: int
    buf: torch.Tensor  # the sum lands here, never in the weights
    offsets: torch.Tensor
    work: object  # torch.distributed Work (or a test double)


@dataclass
class _State:
    prev: torch.Tensor  # x after the previous step boundary
    drift: torch.Tensor
    block: int
    num_blocks: int
    inflight: deque = field(default_factory=deque)
    dropped: list = field(default_factory=list)


class SparseDP:
    """The async-sparse data-parallel state of one process's stage replicas."""

    def __init__(
        self, replicas: dict[tuple[int, int], StageReplica], dp_size: int, *,
        fraction: float, period: int, beta: float, max_lateness: int, policy: str = "wait",
        group: object = None, all_reduce: Callable | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"--dp-late {policy!r}: one of {', '.join(POLICIES)}")
        self.dp_size = dp_size
        self.fraction = fraction
        self.period = period
        self.beta = beta
        self.max_lateness = max_lateness
        self.policy = policy
        self.group = group
        if all_reduce is None:
            import torch.distributed as dist

            def all_reduce(t):
                return dist.all_reduce(t, group=group, async_op=True)
        self._all_reduce = all_reduce
        self.stats = DpStats()
        self.state: dict[tuple[int, int], _State] = {}
        for key, rep in replicas.items():
            n = rep.numel
            block = block_size(n)
            self.state[key] = _State(rep.current.detach().clone(), torch.zeros_like(rep.current),
                                     block, -(-n // block))

    @classmethod
    def from_spec(cls, spec: dict, replicas, dp_size: int, policy: str, group) -> SparseDP:
        return cls(replicas, dp_size, fraction=float(spec["dp_fraction"]),
                   period=int(spec["dp_period"]), beta=float(spec["dp_beta"]),
                   max_lateness=int(spec["dp_max_lateness"]), policy=policy, group=group)

    # ---- the interpreter's hooks ------------------------------------------------------
    def after_step(self, rep: StageReplica) -> None:
        """Right after STEP: the drift EMA, fused with the averages due now."""
        st = self.state[(rep.pipeline, rep.stage)]
        due = self._due(st, rep.version)
        first = due[0] if due else None
        self._apply(rep, st, first, update_drift=True)
        for ex in due[1:]:
            self._apply(rep, st, ex, update_drift=False)

    def sync(self, rep: StageReplica, version: int) -> None:
        """SPARSE_SYNC: start the exchange of this version's subset."""
        if self.dp_size == 1 or rep.numel == 0:
            return
        st = self.state[(rep.pipeline, rep.stage)]
        lo, count = subset_window(st.num_blocks, self.fraction, version // self.period - 1)
        # One or two slices of the weights (the window wraps at most once), packed.
        offsets = torch.full((st.num_blocks,), -1, dtype=torch.int64)
        parts, pos = [], 0
        for a, b in window_slices(rep.numel, st.block, lo, count):
            first = a // st.block
            blocks = -(-(b - a) // st.block)
            offsets[first : first + blocks] = pos + st.block * torch.arange(blocks)
            pos += b - a
            parts.append(rep.current[a:b])
        # A copy: the weights go on stepping while it is in flight.
        buf = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        work = self._all_reduce(buf)
        self.stats.exchanges += 1
        self.stats.bytes_sent += buf.numel() * buf.element_size()
        ex = _Exchange(version, buf, offsets.to(buf.device), work)
        if self.max_lateness == 0:  # blocking: applied now, on time
            self._wait(ex)
            self._apply(rep, st, ex, update_drift=False)
        else:
            st.inflight.append(ex)

    def flush(self, replicas: dict[tuple[int, int], StageReplica]) -> None:
        """At a drain point: wait for every exchange in flight and apply it (a
        second call finds nothing left)."""
        for key, st in self.state.items():
            rep = replicas[key]
            while st.inflight:
                ex = st.inflight.popleft()
                ex.work.wait()
                self._apply(rep, st, ex, update_drift=False)
            for ex in st.dropped:
                ex.work.wait()
            st.dropped.clear()

    # ---- internals ------------------------------------------------------------------------
    def _due(self, st: _State, version: int) -> list[_Exchange]:
        out = []
        while st.inflight:
            ex = st.inflight[0]
            late = version - ex.version
            if self.policy == "wait":
                if late < self.max_lateness:
                    break
                self._wait(ex)
            elif not ex.work.is_completed():
                if late < self.max_lateness:
                    break
                st.dropped.append(st.inflight.popleft())  # too late: never applied
                self.stats.dropped += 1
                continue
            out.append(st.inflight.popleft())
        return out

    def _wait(self, ex: _Exchange) -> None:
        self.stats.waits += not ex.work.is_completed()
        t0 = time.perf_counter()
        ex.work.wait()
        self.stats.wait_s += time.perf_counter() - t0

    def _apply(self, rep: StageReplica, st: _State, ex: _Exchange | None,
               update_drift: bool) -> None:
        if rep.numel == 0 or (ex is None and not update_drift):
            return
        kw = {}
        if ex is not None:
            late = rep.version - ex.version
            kw = dict(avg=ex.buf, offsets=ex.offsets, lateness=float(late),
                      scale=1.0 / self.dp_size)
            self.stats.applied += 1
            self.stats.lateness.append(late)
        fn = drift_apply if drift_apply is not None else _drift_apply_torch
        fn(rep.current, st.prev, st.drift, beta=self.beta, update_drift=update_drift,
           block=st.block, **kw)


def _drift_apply_torch(x, prev, drift, *, beta, update_drift, block, avg=None, offsets=None,
                       lateness=0.0, scale=1.0) -> None:  # pragma: no cover - no kernels
    with torch.no_grad():
        if update_drift:
            drift.mul_(beta).add_(x.sub(prev).mul_(1.0 - beta))
            prev.copy_(x)
        if avg is None:
            return
        for j in torch.nonzero(offsets >= 0).flatten().tolist():
            lo, hi = j * block, min((j + 1) * block, x.numel())
            o = int(offsets[j])
            val = avg[o : o + hi - lo] * scale
            if lateness:
                val.add_(drift[lo:hi] * lateness)
            x[lo:hi] = val
            prev[lo:hi] = val
