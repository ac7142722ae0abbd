"""Drift EMA and late sparse averages, fused over a flat parameter buffer.

Asynchronous data parallelism (AsyncMesh style): every replica steps on its
own gradients and, now and then, receives the average of a subset S of the
parameters over the replicas, computed from parameters some ``lateness`` steps
old. Each replica keeps an EMA of its own per-step drift and corrects the late
average with it. One pass over the buffer does both:

    if update_drift:  drift = beta * drift + (1 - beta) * (x - prev)
    for i in S:       x[i] = scale * avg[slot(i)] + lateness * drift[i]
    prev = x          (every element when update_drift, else the elements of S)

``x`` are the master weights (after this step's optimizer update), ``prev``
the weights after the previous call (so ``x - prev`` is the step's own drift
and an applied average never counts as drift), ``scale`` turns the received
sum into a mean (``1 / replicas``).

The subset is given by blocks: the buffer is cut into blocks of ``block``
elements (the last one shorter) and ``offsets[j]`` is where block j's values
start in the packed ``avg`` buffer, or -1 when block j is not in S. So S can
be contiguous block ranges (rotating windows) or any list of blocks, and
``avg`` holds only |S| values. With ``lateness == 0`` the drift term is left
out (``x[S] = scale * avg`` exactly).

Bytes moved per element (``budget.sparse_avg_bytes``): the drift update reads
x, prev, drift and writes drift, prev (20); each element of S also reads its
average and writes x (8). An apply-only call (``update_drift=False``) touches
S alone: read the average, write x and prev (12), read drift when
``lateness > 0`` (16).
"""

from __future__ import annotations

import torch

from ._dispatch import (
    BLOCK,
    check_disjoint,
    check_dtype,
    check_flat,
    load_triton_module,
    use_triton,
)

__all__ = ["drift_apply", "drift_apply_ref", "num_blocks"]


def num_blocks(n: int, block: int = BLOCK) -> int:
    """Blocks of ``block`` elements covering a buffer of ``n`` (the last may be shorter)."""
    return -(-n // block)


def _check(x, prev, drift, avg, offsets, block) -> None:
    for name, t in (("x", x), ("prev", prev), ("drift", drift)):
        check_flat(name, t, like=None if name == "x" else x)
        check_dtype(name, t, (torch.float32,))
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block}")
    if (avg is None) != (offsets is None):
        raise ValueError("avg and offsets go together")
    if avg is not None:
        check_flat("avg", avg)
        check_dtype("avg", avg, (torch.float32,))
        if avg.device != x.device or offsets.device != x.device:
            raise ValueError("avg and offsets must be on x's device")
        if offsets.dim() != 1 or offsets.numel() != num_blocks(x.numel(), block):
            raise ValueError(f"offsets needs one entry per block "
                             f"({num_blocks(x.numel(), block)}), got {tuple(offsets.shape)}")
        check_dtype("offsets", offsets, (torch.int64,))
    check_disjoint(x=x, prev=prev, drift=drift, avg=avg)


def _subset_index(n: int, offsets: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(element indices of S in x, their indices in avg), block by block."""
    blocks = torch.nonzero(offsets >= 0).flatten()
    lane = torch.arange(block, device=offsets.device)
    idx = blocks[:, None] * block + lane  # [|S blocks|, block]
    src = offsets[blocks][:, None] + lane
    keep = idx < n
    return idx[keep], src[keep]


@torch.no_grad()
def drift_apply_ref(
    x: torch.Tensor, prev: torch.Tensor, drift: torch.Tensor, *, beta: float,
    update_drift: bool = True, avg: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None, lateness: float = 0.0, scale: float = 1.0,
    block: int = BLOCK,
) -> None:
    """Torch twin of :func:`drift_apply` (same arguments, same results)."""
    _check(x, prev, drift, avg, offsets, block)
    if update_drift:
        drift.mul_(beta).add_(x.sub(prev).mul_(1.0 - beta))
        prev.copy_(x)
    if avg is None or x.numel() == 0:
        return
    idx, src = _subset_index(x.numel(), offsets, block)
    val = avg[src].mul_(scale)
    if lateness:
        val.add_(drift[idx].mul_(lateness))
    x[idx] = val
    prev[idx] = val


@torch.no_grad()
def drift_apply(
    x: torch.Tensor, prev: torch.Tensor, drift: torch.Tensor, *, beta: float,
    update_drift: bool = True, avg: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None, lateness: float = 0.0, scale: float = 1.0,
    block: int = BLOCK,
) -> None:
    """Update the drift EMA and/or apply a late sparse average, in one pass.

    Args:
        x: fp32 1-D master weights, updated in place on S.
        prev: fp32 weights after the previous call; becomes ``x``.
        drift: fp32 EMA of the per-step drift, updated when ``update_drift``.
        beta: EMA coefficient in [0, 1).
        update_drift: run the EMA update (once per optimizer step).
        avg: packed fp32 sums (or means) of S's values over the replicas.
        offsets: int64, one entry per block: start of the block's values in
            ``avg``, or -1 when the block is not in S.
        lateness: steps between the parameters that were averaged and now.
        scale: multiplies ``avg`` (``1 / replicas`` for a sum).
        block: elements per block (a power of two).
    """
    _check(x, prev, drift, avg, offsets, block)
    if use_triton(x, prev, drift, avg):
        tl_mod = load_triton_module("_tl_sparse_avg")
        tl_mod.drift_apply(x, prev, drift, float(beta), update_drift, avg, offsets,
                           float(lateness), float(scale), block)
        return
    drift_apply_ref(x, prev, drift, beta=beta, update_drift=update_drift, avg=avg,
                    offsets=offsets, lateness=lateness, scale=scale, block=block)
