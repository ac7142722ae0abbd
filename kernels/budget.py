"""Minimum bytes each kernel must move per element: its memory-traffic budget.

A fused kernel reads each input once and writes each output once, so its bytes
per element are the sum of those element sizes. Dividing ``budget * numel`` by
the measured time gives the achieved bandwidth that ``bench/kernels.py``
compares with a device-to-device copy (``copy_bytes(fp32, fp32) = 8``).

Counts are for the steady state (SGD's ``first_step`` does not read the
momentum buffer, 4 bytes fewer) and leave out per-block scratch such as the
squared-norm partials (4 bytes per 1024 elements).
"""

from __future__ import annotations

import torch

__all__ = [
    "REPOINT_BYTES",
    "TABLE",
    "accumulate_bytes",
    "adamw_bytes",
    "copy_bytes",
    "sgd_bytes",
    "sparse_avg_bytes",
    "swap_bytes",
]

FP32 = 4
REPOINT_BYTES = 0  # a version swap by re-pointing parameter views moves nothing


def _size(dtype: torch.dtype | int) -> int:
    return dtype if isinstance(dtype, int) else torch.empty((), dtype=dtype).element_size()


def accumulate_bytes(grad_dtype: torch.dtype | int, zero_source: bool = False,
                     overwrite: bool = False) -> int:
    """``acc_fp32 += s * grad``: read and write acc, read grad (and write it when zeroing);
    ``overwrite`` (``acc = s * grad``, a step's first micro-batch) does not read acc."""
    g = _size(grad_dtype)
    return (1 if overwrite else 2) * FP32 + g + (g if zero_source else 0)


def _extras(stash: torch.dtype | int | None, lookahead: torch.dtype | int | None,
            error_feedback: bool) -> int:
    out = sum(_size(d) for d in (stash, lookahead) if d is not None)
    return out + (2 * FP32 if error_feedback else 0)


def adamw_bytes(stash: torch.dtype | int | None = None, lookahead: torch.dtype | int | None = None,
                error_feedback: bool = False) -> int:
    """AdamW: read param, grad, m, v; write param, m, v (28), plus each extra output's
    element size (``stash``/``lookahead`` name its dtype, ``None`` = absent) and 8 for
    error feedback (read and write ``g_prev``)."""
    return 7 * FP32 + _extras(stash, lookahead, error_feedback)


def sgd_bytes(momentum: bool = True, stash: torch.dtype | int | None = None,
              lookahead: torch.dtype | int | None = None, error_feedback: bool = False) -> int:
    """SGD: read param, grad; write param (12); momentum reads and writes its buffer (+8)."""
    return 3 * FP32 + (2 * FP32 if momentum else 0) + _extras(stash, lookahead, error_feedback)


def copy_bytes(dst_dtype: torch.dtype | int, src_dtype: torch.dtype | int) -> int:
    """``dst = src``: read src, write dst (``2b`` for b-byte elements)."""
    return _size(dst_dtype) + _size(src_dtype)


def swap_bytes(dtype: torch.dtype | int) -> int:
    """In-place swap: read and write both buffers (``4b``); by re-pointing it is 0."""
    return 4 * _size(dtype)


def sparse_avg_bytes(update_drift: bool = True, applied_fraction: float = 0.0,
                     late: bool = True) -> float:
    """``drift_apply`` per element of the whole buffer: the drift update reads x, prev,
    drift and writes drift, prev (20); a fraction ``applied_fraction`` of the elements
    (the subset S) also reads the average and writes x (+8); an apply-only call
    reads the average and writes x and prev of S only (12), plus reading drift
    when ``late`` (+4)."""
    if update_drift:
        return 5 * FP32 + 2 * FP32 * applied_fraction
    return (3 * FP32 + (FP32 if late else 0)) * applied_fraction


# The configurations the runtime uses most, by name (bytes per element).
TABLE: dict[str, int] = {
    "accumulate fp32 += s*bf16": accumulate_bytes(torch.bfloat16),
    "accumulate fp32 += s*fp16": accumulate_bytes(torch.float16),
    "accumulate fp32 += s*fp32": accumulate_bytes(torch.float32),
    "accumulate bf16, zero source": accumulate_bytes(torch.bfloat16, zero_source=True),
    "ACC fp32, zero source (runtime)": accumulate_bytes(torch.float32, zero_source=True),
    "ACC fp32, first of a step (overwrite)": accumulate_bytes(
        torch.float32, zero_source=True, overwrite=True),
    "adamw": adamw_bytes(),
    "adamw + stash": adamw_bytes(stash=torch.float32),
    # A training STEP that follows a STASH: one launch, 1/count folded in, the
    # accumulator left as it is (the next ACC overwrites it): the byte floor.
    "STEP: adamw + stash + 1/count": adamw_bytes(stash=torch.float32),
    "adamw + lookahead": adamw_bytes(lookahead=torch.float32),
    "adamw + error feedback": adamw_bytes(error_feedback=True),
    "adamw + stash + lookahead + error feedback": adamw_bytes(
        stash=torch.float32, lookahead=torch.float32, error_feedback=True
    ),
    "sgd": sgd_bytes(momentum=False),
    "sgd momentum": sgd_bytes(),
    "sgd momentum + stash": sgd_bytes(stash=torch.float32),
    "copy fp32 -> fp32": copy_bytes(torch.float32, torch.float32),
    "copy fp32 -> bf16": copy_bytes(torch.bfloat16, torch.float32),
    "swap fp32": swap_bytes(torch.float32),
    "drift update": int(sparse_avg_bytes()),
    "drift update + late average on all": int(sparse_avg_bytes(applied_fraction=1.0)),
    "average on all, on time": int(sparse_avg_bytes(False, 1.0, late=False)),
    "swap by repointing": REPOINT_BYTES,
}
