"""The host memory policy of a run: memory freed between steps stays in the process.

A training step allocates and frees the same tensors every step. With glibc's
defaults, freed memory at the top of the heap above a trim threshold, and
every allocation above the (adaptive) mmap threshold, goes back to the kernel,
so the next step touches fresh pages: a page fault and a zeroed page per 4 KB.
Schedules whose live memory swings within a step (ZB-H1's last stage keeps
every micro-batch's graph from I until its W) paid about 50 MB of page faults
per step on gpt-mini. `keep_freed_memory` raises the trim threshold and fixes
the mmap threshold at glibc's largest (32 MB), so freed memory is reused: the
resident size stays at the step's peak, which every step reaches anyway.

Process-wide and idempotent; a no-op where the C library is not glibc. Device
(CUDA) memory has its own caching allocator and is not concerned.
"""

from __future__ import annotations

import ctypes

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_TRIM = 1 << 30  # never trim below 1 GB free at the heap top
_MMAP = 32 << 20  # the largest threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the policy once per process; whether it is in force."""
    global _applied
    if _applied is None:
        _applied = _mallopt(_M_TRIM_THRESHOLD, _TRIM) and _mallopt(_M_MMAP_THRESHOLD, _MMAP)
    return _applied


def _mallopt(param: int, value: int) -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(param, value))
