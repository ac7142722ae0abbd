"""Triton kernel behind ``schedc.kernels.drift_apply`` (imported only when Triton runs)."""

import torch
import triton
import triton.language as tl


@triton.jit
def _drift_apply_kernel(
    x_ptr, prev_ptr, drift_ptr, avg_ptr, offsets_ptr, n, beta, lateness, scale,
    UPDATE: tl.constexpr, APPLY: tl.constexpr, LATE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    lane = tl.arange(0, BLOCK)
    offs = pid.to(tl.int64) * BLOCK + lane
    mask = offs < n
    if APPLY:
        start = tl.load(offsets_ptr + pid)  # where this block's values sit in avg, or -1
        s_mask = mask & ((lane.to(tl.int64) * 0 + start) >= 0)
    else:
        s_mask = offs < 0  # nothing
    # Apply-only calls touch S's blocks alone; the drift update touches every block.
    touch = mask if UPDATE else s_mask
    if UPDATE:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        p = tl.load(prev_ptr + offs, mask=mask, other=0.0)
        d = tl.load(drift_ptr + offs, mask=mask, other=0.0)
        d = d * beta + (x - p) * (1.0 - beta)
        tl.store(drift_ptr + offs, d, mask=mask)
    else:
        x = tl.zeros([BLOCK], dtype=tl.float32)  # every touched element is overwritten
        if LATE:
            d = tl.load(drift_ptr + offs, mask=s_mask, other=0.0)
    if APPLY:
        a = tl.load(avg_ptr + (start + lane), mask=s_mask, other=0.0)
        val = a * scale
        if LATE:
            val = val + d * lateness
        x = tl.where(s_mask, val, x)
        tl.store(x_ptr + offs, x, mask=s_mask)
    tl.store(prev_ptr + offs, x, mask=touch)


def drift_apply(x: torch.Tensor, prev: torch.Tensor, drift: torch.Tensor, beta: float,
                update_drift: bool, avg: torch.Tensor | None, offsets: torch.Tensor | None,
                lateness: float, scale: float, block: int) -> None:
    n = x.numel()
    apply = avg is not None
    if n == 0 or not (update_drift or apply):
        return
    grid = (triton.cdiv(n, block),)
    _drift_apply_kernel[grid](
        x, prev, drift, avg if apply else x, offsets if apply else x, n, beta, lateness, scale,
        UPDATE=update_drift, APPLY=apply, LATE=apply and lateness != 0.0, BLOCK=block,
    )
