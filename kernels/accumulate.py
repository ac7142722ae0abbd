"""Gradient accumulation into an fp32 flat buffer, in one pass.

``accumulate(acc, grad, scale)`` computes ``acc += scale * grad`` over 1-D
contiguous buffers, the gradient in fp32, bf16 or fp16 and the accumulator fp32.
In the same pass it can zero the source gradient (``zero_source``) and return
the squared L2 norm of the scaled gradient (``return_sqnorm``): per-block fp32
partial sums, then one sum, so clipping and NaN/Inf detection need no second
read. An Inf or NaN in the gradient makes the norm Inf or NaN.

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


def _check(acc: torch.Tensor, grad: torch.Tensor) -> None:
    check_flat("acc", acc)
    check_flat("grad", grad, like=acc)
    check_dtype("acc", acc, (torch.float32,))
    check_dtype("grad", grad, FLOAT_DTYPES)
    check_disjoint(acc=acc, grad=grad)


@torch.no_grad()
def accumulate_ref(
    acc: torch.Tensor,
    grad: torch.Tensor,
    scale: float = 1.0,
    zero_source: bool = False,
    return_sqnorm: bool = False,
) -> torch.Tensor | None:
    """Torch twin of :func:`accumulate` (same arguments, same results)."""
    _check(acc, grad)
    scaled = grad.to(torch.float32) * scale
    acc.add_(scaled)
    sqnorm = scaled.square().sum() if return_sqnorm else None
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
) -> torch.Tensor | None:
    """``acc += scale * grad`` in one pass over flat buffers.

    Args:
        acc: fp32 1-D contiguous accumulator, updated in place.
        grad: 1-D contiguous gradient, fp32, bf16 or fp16, as many elements as ``acc``.
        scale: multiplies the gradient (e.g. ``1 / accumulation_count``).
        zero_source: also set ``grad`` to zero in the same pass.
        return_sqnorm: also return ``sum((scale * grad) ** 2)``.

    Returns:
        The squared norm as a 0-d fp32 tensor on ``acc``'s device (no host sync)
        when ``return_sqnorm``, else ``None``.
    """
    _check(acc, grad)
    if use_triton(acc, grad):
        tl_mod = load_triton_module("_tl_accumulate")
        return tl_mod.accumulate(acc, grad, scale, zero_source, return_sqnorm)
    return accumulate_ref(acc, grad, scale, zero_source, return_sqnorm)
