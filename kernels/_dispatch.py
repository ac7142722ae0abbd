"""When a public kernel runs its Triton kernel and when its torch twin.

Triton runs when every tensor is on a CUDA device, or when ``TRITON_INTERPRET=1``
is set (Triton's interpreter then runs the kernel on CPU tensors, so CI checks
the kernels themselves without a GPU). Otherwise, and whenever ``triton`` cannot
be imported, the plain-torch twin runs.

Triton is imported lazily, on the first call that needs it: importing
``schedc.kernels`` never imports triton and never needs a GPU. Triton reads
``TRITON_INTERPRET`` when a kernel is decorated, so set it before the first
kernel call of the process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from operator import itemgetter
from types import ModuleType

import torch

__all__ = [
    "BLOCK",
    "check_disjoint",
    "check_flat",
    "interpret_enabled",
    "launching",
    "triton_available",
    "use_triton",
]

# One program handles BLOCK elements. 1024 fp32 elements is 8 per thread at 4 warps:
# two 16-byte vector accesses per thread, enough in flight for a streaming kernel.
BLOCK = 1024


@functools.cache
def triton_available() -> bool:
    """Whether ``import triton`` works in this process (cached after the first try)."""
    try:
        importlib.import_module("triton.language")
    except Exception:  # a missing or broken install must not break the twins
        return False
    return True


def interpret_enabled() -> bool:
    """Whether Triton's CPU interpreter is requested (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Whether a kernel over these tensors (``None`` entries ignored) runs in Triton."""
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    on_cpu = bool(present) and all(t.device.type == "cpu" for t in present)
    # Ask about triton last: the first ask imports it, which CPU-only callers can skip.
    return (on_cuda or (on_cpu and interpret_enabled())) and triton_available()


def load_triton_module(name: str) -> ModuleType:
    """Import one of the ``_tl_*`` kernel modules (only after ``use_triton`` said yes)."""
    return importlib.import_module(f"{__package__}.{name}")


_UNMARKED = contextlib.nullcontext()


def launching(kernel: str) -> contextlib.AbstractContextManager:
    """Mark one Triton launch for the torch profiler (``schedc::<kernel>``), so launches
    can be counted on CPU too, where the interpreter runs the kernel as Python. Only
    while a profiler records: the mark costs about 20 us of host time a launch even
    when none does, as much as the launch itself."""
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(f"schedc::{kernel}")
    return _UNMARKED


def check_flat(name: str, t: torch.Tensor, like: torch.Tensor | None = None) -> None:
    """Raise unless ``t`` is a 1-D contiguous buffer (matching ``like`` in size and device)."""
    if t.dim() != 1 or not t.is_contiguous():
        raise ValueError(f"{name} must be a 1-D contiguous buffer, got shape {tuple(t.shape)}")
    if like is None:
        return
    if t.numel() != like.numel():
        raise ValueError(f"{name} has {t.numel()} elements, expected {like.numel()}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device}, expected {like.device}")


def check_dtype(name: str, t: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    """Raise unless ``t.dtype`` is one of ``allowed``."""
    if t.dtype not in allowed:
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"{name} has dtype {t.dtype}, expected one of {names}")


def check_disjoint(**buffers: torch.Tensor | None) -> None:
    """Raise if two of the given flat buffers share memory: a fused pass would race.

    The byte ranges sorted by device, then start: two overlap only if some
    neighbours do, so a launch checks k buffers in k steps, not k^2 / 2 (a host
    cost on every launch)."""
    spans = []
    for name, t in buffers.items():
        if t is not None and t.numel():
            start, device = t.data_ptr(), t.device
            spans.append(((device.type, -1 if device.index is None else device.index, start),
                          start + t.numel() * t.element_size(), name))
    spans.sort(key=itemgetter(0))  # stable: equal starts keep the arguments' order
    for (at_a, end_a, name_a), (at_b, _, name_b) in zip(spans, spans[1:], strict=False):
        if at_a[:2] == at_b[:2] and at_b[2] < end_a:
            raise ValueError(f"{name_a} and {name_b} overlap")



FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
