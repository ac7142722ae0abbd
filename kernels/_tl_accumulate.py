"""Triton kernel behind ``schedc.kernels.accumulate`` (imported only when Triton runs)."""

import torch
import triton
import triton.language as tl

from ._dispatch import BLOCK, launching
from ._tl_common import all_true, block_offsets, full_block, to_fp32

FLT_MAX = tl.constexpr(3.4028234663852886e38)  # the largest finite fp32


@triton.jit
def _accumulate_body(
    acc_ptr, grad_ptr, partial_ptr, flag_ptr, offs, mask, scale, flag_slot, flag_tag,
    ZERO_SOURCE: tl.constexpr, SQNORM: tl.constexpr, OVERWRITE: tl.constexpr,
    FLAG: tl.constexpr,
):
    g = to_fp32(tl.load(grad_ptr + offs, mask=mask, other=0.0)) * scale
    if OVERWRITE:  # the first gradient of a step: 0 + g, as adding to a zeroed acc would
        tl.store(acc_ptr + offs, 0.0 + g, mask=mask)
    else:
        a = tl.load(acc_ptr + offs, mask=mask)
        tl.store(acc_ptr + offs, a + g, mask=mask)
    if ZERO_SOURCE:
        tl.store(grad_ptr + offs, tl.zeros_like(g).to(grad_ptr.dtype.element_ty), mask=mask)
    if SQNORM:
        # Masked lanes loaded 0, so they add nothing to the block's partial sum.
        tl.store(partial_ptr + tl.program_id(0), tl.sum(g * g, axis=0))
    if FLAG:
        # NaN fails every comparison; masked lanes loaded 0. max is order-free: deterministic.
        bad = tl.max(tl.where(tl.abs(g) <= FLT_MAX, 0, 1), axis=0)
        tl.atomic_max(flag_ptr + flag_slot, flag_tag, mask=bad > 0)


@triton.jit
def _accumulate_kernel(
    acc_ptr, grad_ptr, partial_ptr, flag_ptr, n, scale, flag_slot, flag_tag,
    ZERO_SOURCE: tl.constexpr, SQNORM: tl.constexpr, OVERWRITE: tl.constexpr,
    FLAG: tl.constexpr, BLOCK: tl.constexpr,
):
    offs, mask = block_offsets(n, BLOCK)
    if full_block(n, BLOCK):  # the unmasked body: vector loads and stores for any n
        _accumulate_body(acc_ptr, grad_ptr, partial_ptr, flag_ptr, offs, all_true(BLOCK), scale,
                         flag_slot, flag_tag, ZERO_SOURCE, SQNORM, OVERWRITE, FLAG)
    else:
        _accumulate_body(acc_ptr, grad_ptr, partial_ptr, flag_ptr, offs, mask, scale,
                         flag_slot, flag_tag, ZERO_SOURCE, SQNORM, OVERWRITE, FLAG)


def accumulate(
    acc: torch.Tensor, grad: torch.Tensor, scale: float, zero_source: bool, return_sqnorm: bool,
    overwrite: bool = False, flag: torch.Tensor | None = None, flag_slot: int = 0,
    flag_tag: int = 1,
) -> torch.Tensor | None:
    n = acc.numel()
    blocks = triton.cdiv(n, BLOCK)
    # One fp32 partial per block, summed afterwards: no atomics, deterministic order.
    partials = torch.zeros(blocks, device=acc.device) if return_sqnorm else None
    if n:
        with launching("accumulate"):
            _accumulate_kernel[(blocks,)](
                acc, grad, acc if partials is None else partials,
                acc if flag is None else flag, n, float(scale), int(flag_slot), int(flag_tag),
                ZERO_SOURCE=zero_source, SQNORM=return_sqnorm, OVERWRITE=overwrite,
                FLAG=flag is not None, BLOCK=BLOCK,
            )
    return None if partials is None else partials.sum()
