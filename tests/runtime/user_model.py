"""A user's own model, data and loss for the runtime tests (not a token model).

Float features in, float regression targets out; the boundary between stages
is a dict of three tensors: the hidden state and a skip stream (both get a
gradient back) and a boolean mask (forward only); a per-feature scale is a
side input every stage reads from its own copy of the data. Importable as
`user_model` (tests/runtime on sys.path, or PYTHONPATH) for
`--model user_model:build_stage --data user_model:batches --loss user_model:loss`.
"""

from __future__ import annotations

import torch
from torch import nn

DIM, BATCH = 16, 4


class Stage(nn.Module):
    def __init__(self, stage: int, num_stages: int) -> None:
        super().__init__()
        self.first, self.last = stage == 0, stage == num_stages - 1
        self.mix = nn.Linear(DIM, DIM)
        self.skip = nn.Linear(DIM, DIM, bias=False)
        self.head = nn.Linear(DIM, 1) if self.last else None

    def forward(self, h, skip=None, mask=None, *, scale):
        if self.first:  # h: features [b, DIM] float32
            skip, mask = h, h > 0  # mask [b, DIM] bool: forward only
        h = torch.tanh(self.mix(h) * scale) + self.skip(skip)  # [b, DIM]
        skip = torch.where(mask, h, skip)  # [b, DIM]
        if self.last:
            return self.head(h + skip)  # [b, 1]
        return {"h": h, "skip": skip, "mask": mask}


def build_stage(stage: int, num_stages: int) -> nn.Module:
    return Stage(stage, num_stages)


def batches(j: int, seed: int):
    g = torch.Generator().manual_seed(seed * 1_000_003 + j)
    x = torch.randn(BATCH, DIM, generator=g)
    y = x[:, :2].sum(dim=1, keepdim=True).double()  # float64 targets [b, 1]
    side = {"scale": torch.linspace(0.5, 1.5, DIM)}
    return x, y, side


def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out.double() - target) ** 2).mean().float()
