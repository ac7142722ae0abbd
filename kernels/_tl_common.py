"""Triton helpers shared by the kernels (imported only when Triton runs)."""

import triton
import triton.language as tl


@triton.jit
def _fp32_to_bf16_rtne(x):
    # Round to nearest even by hand: the hardware cvt does the same, but Triton's
    # CPU interpreter truncates, and the kernels must equal torch bit for bit.
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16
    rounded = tl.where(x != x, 0x7FC0, rounded)  # any NaN -> canonical quiet NaN
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def to_fp32(x):
    """``x`` widened to fp32 exactly (bf16 by shifting its bits, which the interpreter
    would otherwise flush to zero when subnormal)."""
    if x.dtype == tl.bfloat16:
        return (x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return x.to(tl.float32)


@triton.jit
def cast_for(x, ptr):
    """``x`` converted to the element type of ``ptr``, rounding to nearest even."""
    if ptr.dtype.element_ty == x.dtype:
        return x
    if ptr.dtype.element_ty == tl.bfloat16:
        return _fp32_to_bf16_rtne(to_fp32(x))
    return to_fp32(x).to(ptr.dtype.element_ty)


@triton.jit
def block_offsets(n, BLOCK: tl.constexpr):
    """This program's element offsets (int64, so buffers past 2**31 elements work) and mask."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < n


@triton.jit
def full_block(n, BLOCK: tl.constexpr):
    """Whether this program's block lies wholly inside the buffer (every block but the tail).

    Kernels run their body with ``all_true(BLOCK)`` as the mask there and with the
    bounds mask in the tail, so the body streams 16-byte vectors whatever ``n`` is:
    a constant mask is uniform over any vector, ``offs < n`` only when ``n`` is known
    to be a multiple of 16 (the divisibility hint Triton adds for such sizes).
    """
    return (tl.program_id(0).to(tl.int64) + 1) * BLOCK <= n


@triton.jit
def all_true(BLOCK: tl.constexpr):
    """A constant all-true mask of one block (the unmasked body)."""
    return tl.full((BLOCK,), 1, tl.int1)
