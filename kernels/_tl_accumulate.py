"""Triton kernel behind ``schedc.kernels.accumulate`` (imported only when Triton runs)."""

import torch
import triton
import triton.language as tl

from ._dispatch import BLOCK
from ._tl_common import block_offsets, to_fp32


@triton.jit
def _accumulate_kernel(
    acc_ptr, grad_ptr, partial_ptr, n, scale,
    ZERO_SOURCE: tl.constexpr, SQNORM: tl.constexpr, BLOCK: tl.constexpr,
):
    offs, mask = block_offsets(n, BLOCK)
    g = to_fp32(tl.load(grad_ptr + offs, mask=mask, other=0.0)) * scale
    a = tl.load(acc_ptr + offs, mask=mask)
    tl.store(acc_ptr + offs, a + g, mask=mask)
    if ZERO_SOURCE:
        tl.store(grad_ptr + offs, tl.zeros_like(g).to(grad_ptr.dtype.element_ty), mask=mask)
    if SQNORM:
        # Masked lanes loaded 0, so they add nothing to the block's partial sum.
        tl.store(partial_ptr + tl.program_id(0), tl.sum(g * g, axis=0))


def accumulate(
    acc: torch.Tensor, grad: torch.Tensor, scale: float, zero_source: bool, return_sqnorm: bool
) -> torch.Tensor | None:
    n = acc.numel()
    blocks = triton.cdiv(n, BLOCK)
    # One fp32 partial per block, summed afterwards: no atomics, deterministic order.
    partials = torch.zeros(blocks, device=acc.device) if return_sqnorm else None
    if n:
        _accumulate_kernel[(blocks,)](
            acc, grad, acc if partials is None else partials, n, float(scale),
            ZERO_SOURCE=zero_source, SQNORM=return_sqnorm, BLOCK=BLOCK,
        )
    return None if partials is None else partials.sum()
