"""Weight versions over flat buffers: re-pointing (0 bytes), fused copy and swap.

- ``flatten_params(params)`` copies parameters into one new 1-D buffer and
  returns it with each parameter's start offset.
- ``repoint(params, flat, offsets)`` makes each parameter's ``.data`` a view of
  ``flat`` at its offset. No bytes move, so swapping weight versions by
  re-pointing costs nothing; autograd is unaffected (the parameter objects and
  their ``.grad`` stay the same).
- ``copy_(dst, src)``: ``dst = src`` in one pass, with dtype conversion (e.g. fp32
  master weights to a bf16 compute copy, rounding to nearest even): reads
  ``src`` and writes ``dst``, ``size(src) + size(dst)`` bytes per element.
- ``swap_(a, b)``: exchanges two same-dtype buffers in place, bit for bit: reads
  and writes both, ``4 * size`` bytes per element.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._dispatch import (
    FLOAT_DTYPES,
    check_disjoint,
    check_dtype,
    check_flat,
    load_triton_module,
    use_triton,
)

__all__ = ["copy_", "copy_ref", "flatten_params", "repoint", "swap_", "swap_ref"]


def flatten_params(
    params: Sequence[torch.Tensor], dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Copy ``params`` into one new flat buffer, in order.

    Args:
        params: tensors or ``nn.Parameter``s, all on one device.
        dtype: the buffer's dtype; by default the parameters' common dtype
            (mixed dtypes then raise).

    Returns:
        ``(flat, offsets)``: ``flat`` is 1-D and contiguous, holding
        ``sum(p.numel())`` elements; ``offsets[i]`` is where ``params[i]``
        starts. Pass both to :func:`repoint` to make the parameters views of it.
    """
    params = list(params)
    if dtype is None:
        dtypes = {p.dtype for p in params}
        if len(dtypes) > 1:
            raise TypeError(f"parameters have mixed dtypes {sorted(map(str, dtypes))}; pass dtype=")
        dtype = dtypes.pop() if dtypes else torch.float32
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise ValueError(f"parameters are on several devices: {sorted(map(str, devices))}")
    device = devices.pop() if devices else torch.device("cpu")
    offsets, total = [], 0
    for p in params:
        offsets.append(total)
        total += p.numel()
    flat = torch.empty(total, dtype=dtype, device=device)
    with torch.no_grad():
        for p, start in zip(params, offsets, strict=True):
            flat[start : start + p.numel()].copy_(p.detach().reshape(-1))
    return flat, offsets


def repoint(params: Sequence[torch.Tensor], flat: torch.Tensor, offsets: Sequence[int]) -> None:
    """Make each ``params[i].data`` a view of ``flat`` starting at ``offsets[i]``.

    Moves no bytes: the parameters' old values are not copied (use
    :func:`flatten_params` first to carry them over). Calling it again with
    another version's buffer swaps versions at zero cost. ``flat`` must be 1-D,
    contiguous, of the parameters' dtype and device, and long enough.
    """
    check_flat("flat", flat)
    if len(params) != len(offsets):
        raise ValueError(f"{len(params)} parameters but {len(offsets)} offsets")
    for i, (p, start) in enumerate(zip(params, offsets, strict=True)):
        if p.dtype != flat.dtype or p.device != flat.device:
            raise TypeError(
                f"parameter {i} is {p.dtype} on {p.device}, buffer is {flat.dtype} on {flat.device}"
            )
        if start < 0 or start + p.numel() > flat.numel():
            raise ValueError(
                f"parameter {i} ({p.numel()} elements at {start}) overruns the buffer "
                f"of {flat.numel()}"
            )
    for p, start in zip(params, offsets, strict=True):
        # .data keeps the Parameter object (and optimizer and module references) the same.
        p.data = flat[start : start + p.numel()].view(p.shape)


def _check_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    check_flat("dst", dst)
    check_flat("src", src, like=dst)
    check_dtype("dst", dst, FLOAT_DTYPES)
    check_dtype("src", src, FLOAT_DTYPES)
    check_disjoint(dst=dst, src=src)


def _check_swap(a: torch.Tensor, b: torch.Tensor) -> None:
    check_flat("a", a)
    check_flat("b", b, like=a)
    if a.dtype != b.dtype:
        raise TypeError(f"swap_ needs one dtype, got {a.dtype} and {b.dtype}")
    check_disjoint(a=a, b=b)


@torch.no_grad()
def copy_ref(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`copy_`."""
    _check_copy(dst, src)
    return dst.copy_(src)


@torch.no_grad()
def copy_(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst = src`` for flat fp32/bf16/fp16 buffers of equal length; returns ``dst``.

    Narrowing conversions round to nearest even, as ``Tensor.copy_`` does; the
    buffers must not overlap.
    """
    _check_copy(dst, src)
    if use_triton(dst, src):
        load_triton_module("_tl_versions").copy_(dst, src)
        return dst
    return copy_ref(dst, src)


@torch.no_grad()
def swap_ref(a: torch.Tensor, b: torch.Tensor) -> None:
    """Torch twin of :func:`swap_` (through a temporary copy of ``a``)."""
    _check_swap(a, b)
    tmp = a.clone()
    a.copy_(b)
    b.copy_(tmp)


@torch.no_grad()
def swap_(a: torch.Tensor, b: torch.Tensor) -> None:
    """Exchange the contents of two flat same-dtype buffers in place, in one pass.

    Any dtype works (bits move unchanged). To swap weight versions without
    moving bytes, :func:`repoint` the parameters to the other buffer instead.
    """
    _check_swap(a, b)
    if use_triton(a, b):
        load_triton_module("_tl_versions").swap_(a, b)
        return
    swap_ref(a, b)
