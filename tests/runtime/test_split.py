"""Splitting a whole model: a list of layers (balanced by parameter count or at
cut points) and PyTorch's tracer with SplitPoints."""

from __future__ import annotations

import pytest
import schedc.runtime as sr
import torch
from runtime_testing import compile_preset
from schedc.runtime.boundary import call_stage
from schedc.runtime.split import balanced_cuts
from torch import nn


def test_balanced_cuts_minimise_the_largest_stage():
    assert balanced_cuts([10, 10, 10, 10], 2) == [2]
    assert balanced_cuts([40, 10, 10, 10, 10], 2) == [1]
    assert balanced_cuts([1, 1, 1, 1, 1, 1, 1, 9], 3) == [3, 7]  # max 9 either way
    assert balanced_cuts([5, 5, 5], 3) == [1, 2]
    with pytest.raises(sr.SplitError, match="cannot split 2 layers into 3 stages"):
        balanced_cuts([1, 1], 3)


def test_split_layers_at_cut_points():
    layers = [nn.Linear(4, 4) for _ in range(5)]
    build = sr.split_layers(nn.Sequential(*layers), cuts=[1, 4])
    stages = [build(s, 3) for s in range(3)]
    assert [len(s.layers) for s in stages] == [1, 3, 1]
    assert stages[0].layers[0] is not layers[0]  # every replica owns its weights
    assert torch.equal(stages[2].layers[0].weight, layers[4].weight)
    with pytest.raises(sr.SplitError, match=r"cut points \[4, 1\]: increasing"):
        sr.split_layers(layers, cuts=[4, 1])(0, 3)


class Residual(nn.Module):
    """Not a sequence: the input is read again two submodules on."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(self.b(h) + x)


def _data(j, seed):
    g = torch.Generator().manual_seed(j)
    x = torch.randn(4, 8, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def test_split_traced_carries_what_later_stages_read(tmp_path):
    torch.manual_seed(0)
    model = Residual()
    build = sr.split_traced(model, (torch.randn(4, 8),), ["b"])
    x = torch.randn(4, 8)
    out = x
    for s in range(2):
        out = call_stage(build(s, 2), out, None)
    assert torch.equal(out, model(x))  # PyTorch's split, the same numbers
    d = compile_preset(tmp_path / "p", "1f1b", 2, 2)
    run = sr.Run(d, build_stage=build, data=_data, loss=lambda o, y: ((o - y) ** 2).mean(),
                 launcher="local", steps=8, lr=0.02, threads=1, quiet=True)
    losses = [r["loss"] for r in run.train()]
    assert losses[-1] < losses[0]
    with pytest.raises(sr.SplitError, match="1 split points give 2 stages, the programs have 4"):
        build(0, 4)
