"""Your own model, data and loss under a compiled schedule (docs/runtime.md).

    schedc compile --preset 1f1b --stages 2 --microbatches 4 -o out/own
    python examples/own_model.py out/own                          # every rank in this process
    torchrun --standalone --nproc-per-node 2 examples/own_model.py out/own   # one per rank

Float inputs, integer class targets, and a boundary of two tensors: the hidden
state (it gets a gradient back) and a 0/1 mask of the features (it travels
forward only: no gradient message).
"""

import sys

import schedc.runtime as sr
import torch
from torch import nn

DIM, CLASSES, BATCH = 32, 4, 16


class Stage(nn.Module):
    def __init__(self, stage: int, num_stages: int) -> None:
        super().__init__()
        self.first, self.last = stage == 0, stage == num_stages - 1
        self.mix = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, CLASSES) if self.last else None

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        if self.first:  # h: features [b, DIM] float32
            mask = (h > 0).float()  # [b, DIM], needs no gradient
        h = h + torch.tanh(self.mix(h * mask))  # [b, DIM]
        return self.head(h) if self.last else (h, mask)  # logits [b, CLASSES]


def batches(j: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch j: the same on every rank, every run."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + j)
    x = torch.randn(BATCH, DIM, generator=g)
    return x, x[:, :CLASSES].argmax(dim=1)  # a rule the model can learn


def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, target)


if __name__ == "__main__":
    run = sr.Run(sys.argv[1], build_stage=Stage, data=batches, loss=loss, lr=1e-2,
                 steps=40, quiet=True)
    for record in run.train():
        if record["step"] % 10 == 9:
            print(f"step {record['step'] + 1}  loss {record['loss']:.4f}  "
                  f"{record['samples']} samples/step")
