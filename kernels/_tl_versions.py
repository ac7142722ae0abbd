"""Triton kernels behind ``copy_`` and ``swap_`` (imported only when Triton runs)."""

import torch
import triton
import triton.language as tl

from ._dispatch import BLOCK, launching
from ._tl_common import all_true, block_offsets, cast_for, full_block


@triton.jit
def _copy_body(dst_ptr, src_ptr, offs, mask):
    x = tl.load(src_ptr + offs, mask=mask)
    tl.store(dst_ptr + offs, cast_for(x, dst_ptr), mask=mask)


@triton.jit
def _copy_kernel(dst_ptr, src_ptr, n, BLOCK: tl.constexpr):
    offs, mask = block_offsets(n, BLOCK)
    if full_block(n, BLOCK):  # the unmasked body: vector loads and stores for any n
        _copy_body(dst_ptr, src_ptr, offs, all_true(BLOCK))
    else:
        _copy_body(dst_ptr, src_ptr, offs, mask)


@triton.jit
def _swap_body(a_ptr, b_ptr, offs, mask):
    a = tl.load(a_ptr + offs, mask=mask)
    b = tl.load(b_ptr + offs, mask=mask)
    tl.store(a_ptr + offs, b, mask=mask)
    tl.store(b_ptr + offs, a, mask=mask)


@triton.jit
def _swap_kernel(a_ptr, b_ptr, n, BLOCK: tl.constexpr):
    offs, mask = block_offsets(n, BLOCK)
    if full_block(n, BLOCK):
        _swap_body(a_ptr, b_ptr, offs, all_true(BLOCK))
    else:
        _swap_body(a_ptr, b_ptr, offs, mask)


def _launch(kernel, x: torch.Tensor, y: torch.Tensor) -> None:
    n = x.numel()
    if n:
        with launching(kernel.fn.__name__.strip("_")):
            kernel[(triton.cdiv(n, BLOCK),)](x, y, n, BLOCK=BLOCK)


def copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    _launch(_copy_kernel, dst, src)


def swap_(a: torch.Tensor, b: torch.Tensor) -> None:
    # Bit patterns move unchanged: swap integer views so NaN payloads survive too.
    int_dtype = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    _launch(_swap_kernel, a.view(int_dtype), b.view(int_dtype))
