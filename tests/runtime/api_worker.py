"""One script, in-process and under torchrun (the Python API is SPMD).

    python tests/runtime/api_worker.py PROGRAMS OUT             # OUT/local.pt
    torchrun --nproc-per-node 4 tests/runtime/api_worker.py PROGRAMS OUT   # OUT/rank<g>.pt

A model split from a list of layers by parameter count, float data from a
function, MSE loss; saves the losses (writer) and every local stage's weights.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import schedc.runtime as sr
import torch
from torch import nn

STEPS = 3


def layers() -> list[nn.Module]:
    torch.manual_seed(0)  # the same layers on every rank
    return [nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(6)] + [nn.Linear(8, 1)]


def data(j: int, seed: int):
    g = torch.Generator().manual_seed(seed * 7 + j)
    x = torch.randn(4, 8, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def main(programs: str, out: Path) -> None:
    torch.set_num_threads(1)
    run = sr.Run(programs, build_stage=layers(), data=data, loss=mse, lr=0.01, steps=STEPS,
                 threads=1, quiet=True)
    losses = [r["loss"] for r in run.train()]
    weights = {k: torch.cat([p.detach().reshape(-1) for p in m.parameters()])
               for k, m in run.modules().items()}
    out.mkdir(parents=True, exist_ok=True)
    name = f"rank{os.environ['RANK']}.pt" if "RANK" in os.environ else "local.pt"
    torch.save({"losses": losses, "weights": weights}, out / name)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
