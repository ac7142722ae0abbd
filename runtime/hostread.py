"""Reading device values on the host.

On a GPU every read of a device tensor's values waits for the device (a host
sync), so the runtime reads through `read`, in one transfer, and only where a
step needs a value: each STEP's finiteness check (the gradient flags of its
ACCs and, on the last stage, its losses' finiteness: `faults.Poison`) and the
step's losses for the metrics (`session`), once per step. Values on the CPU
are read the same way (no sync there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["read"]


def read(tensors: Sequence[torch.Tensor]) -> list[list[float]]:
    """Every tensor's values, flattened, as Python numbers: one device-to-host
    transfer per device, and no operator where one tensor is read alone (tensors of
    different dtypes go through float64 on the way, exact for fp32, bf16 and int32)."""
    out: list[list[float]] = [[] for _ in tensors]
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        if t.numel():
            by_device.setdefault(t.device, []).append(i)
    for idx in by_device.values():
        parts = [tensors[i].reshape(-1) for i in idx]
        if len(parts) == 1:
            values = parts[0].tolist()
        else:
            if len({p.dtype for p in parts}) > 1:
                parts = [p.to(torch.float64) for p in parts]
            values = torch.cat(parts).tolist()
        at = 0
        for i, part in zip(idx, parts, strict=True):
            out[i] = values[at:at + part.numel()]
            at += part.numel()
    return out
