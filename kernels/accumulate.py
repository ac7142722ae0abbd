"""Gradient accumulation into an fp32 flat buffer, in one pass.

``accumulate(acc, grad, scale)`` computes ``acc += scale * grad`` over 1-D
contiguous buffers, the gradient in fp32, bf16 or fp16 and the accumulator fp32.
In the same pass it can zero the source gradient (``zero_source``) and return
the squared L2 norm of the scaled gradient (``return_sqnorm``): per-block fp32
partial sums, then one sum, so clipping and NaN/Inf detection need no second
read. An Inf or NaN in the gradient makes the norm Inf or NaN.

Two more options make a training step's ACC a single launch at its byte floor:
``overwrite`` writes ``acc = 0 + scale * grad`` without reading ``acc`` (the
first micro-batch after an optimizer step: no zeroing pass is needed, and the
result is bit for bit what adding to a zeroed accumulator gives), and ``flag``
checks finiteness on the device with no second launch: when the scaled
gradient holds a NaN or Inf, ``flag[flag_slot] = max(flag[flag_slot],
flag_tag)`` (an int32 buffer; max is order-free, so the result is
deterministic). With a growing tag per step the flags never need zeroing, and
the host reads them once per step.

Bytes moved per element (see ``budget.accumulate_bytes``): read and write acc
(8) plus read grad (2 or 4), plus writing grad again when zeroing: 10 for bf16
or fp16 gradients, 12 for fp32, 12 / 16 with ``zero_source``. The norm's
partials add 4 bytes per 1024 elements, which the budget leaves out.
"""

from __future__ import annotations

import torch

from ._dispatch import (
    FLOAT_DTYPES,
    check_disjoint,
    check_dtype,
    check_flat,
    load_triton_module,
    use_triton,
)

__all__ = ["accumulate", "accumulate_ref"]


def _check(acc: torch.Tensor, grad: torch.Tensor, flag: torch.Tensor | None = None,
           flag_slot: int = 0) -> None:
    check_flat("acc", acc)
    check_flat("grad", grad, like=acc)
    check_dtype("acc", acc, (torch.float32,))
    check_dtype("grad", grad, FLOAT_DTYPES)
    check_disjoint(acc=acc, grad=grad)
    if flag is not None:
        check_flat("flag", flag)
        check_dtype("flag", flag, (torch.int32,))
        if not 0 <= flag_slot < flag.numel():
            raise ValueError(f"flag_slot {flag_slot} outside a flag buffer of {flag.numel()}")
        if flag.device != acc.device:
            raise ValueError(f"flag is on {flag.device}, expected {acc.device}")


@torch.no_grad()
def accumulate_ref(
    acc: torch.Tensor,
    grad: torch.Tensor,
    scale: float = 1.0,
    zero_source: bool = False,
    return_sqnorm: bool = False,
    overwrite: bool = False,
    flag: torch.Tensor | None = None,
    flag_slot: int = 0,
    flag_tag: int = 1,
) -> torch.Tensor | None:
    """Torch twin of :func:`accumulate` (same arguments, same results)."""
    _check(acc, grad, flag, flag_slot)
    scaled = grad.to(torch.float32) * scale
    if overwrite:
        acc.zero_()
    acc.add_(scaled)
    sqnorm = scaled.square().sum() if return_sqnorm else None
    if flag is not None:
        cell = flag[flag_slot : flag_slot + 1]
        bad = ~torch.isfinite(scaled).all()
        cell.copy_(torch.where(bad, cell.clamp(min=flag_tag), cell))
    if zero_source:
        grad.zero_()
    return sqnorm


@torch.no_grad()
def accumulate(
    acc: torch.Tensor,
    grad: torch.Tensor,
    scale: float = 1.0,
    zero_source: bool = False,
    return_sqnorm: bool = False,
    overwrite: bool = False,
    flag: torch.Tensor | None = None,
    flag_slot: int = 0,
    flag_tag: int = 1,
) -> torch.Tensor | None:
    """``acc += scale * grad`` in one pass over flat buffers.

    Args:
        acc: fp32 1-D contiguous accumulator, updated in place.
        grad: 1-D contiguous gradient, fp32, bf16 or fp16, as many elements as ``acc``.
        scale: multiplies the gradient (e.g. ``1 / accumulation_count``).
        zero_source: also set ``grad`` to zero in the same pass.
        return_sqnorm: also return ``sum((scale * grad) ** 2)``.
        overwrite: ``acc = 0 + scale * grad`` (``acc`` is not read).
        flag, flag_slot, flag_tag: an int32 buffer; if ``scale * grad`` holds a NaN
            or Inf, ``flag[flag_slot]`` becomes at least ``flag_tag``.

    Returns:
        The squared norm as a 0-d fp32 tensor on ``acc``'s device (no host sync)
        when ``return_sqnorm``, else ``None``.
    """
    _check(acc, grad, flag, flag_slot)
    if use_triton(acc, grad, flag):
        tl_mod = load_triton_module("_tl_accumulate")
        return tl_mod.accumulate(acc, grad, scale, zero_source, return_sqnorm, overwrite,
                                 flag, flag_slot, flag_tag)
    return accumulate_ref(acc, grad, scale, zero_source, return_sqnorm, overwrite, flag,
                          flag_slot, flag_tag)
