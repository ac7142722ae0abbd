"""A user's model, data and loss that do not fit: refused at start-up, before
any step, with one line that says why (and, mid-run, naming the micro-batch)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import schedc.runtime as sr
import torch
import user_model as um
from runtime_testing import HERE, compile_preset
from schedc.runtime.interpreter import ExecutionError
from schedc.runtime.split import SplitError
from torch import nn

from schedc.errors import UserError


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    return {name: compile_preset(root / name, name, 2, 2) for name in ("1f1b", "paci")}


def plain(j: int, seed: int):
    g = torch.Generator().manual_seed(j)
    return torch.randn(4, 16, generator=g), torch.randn(4, 1, generator=g)


def mse(out, y):
    return ((out - y) ** 2).mean()


def make(d, build_stage=um.build_stage, data=um.batches, loss=um.loss, steps=1):
    return sr.Run(d, build_stage=build_stage, data=data, loss=loss, launcher="local",
                  steps=steps, threads=1, quiet=True)


def test_a_stage_output_that_does_not_fit_names_both_stages(progs):
    def build(s, n):
        return nn.Linear(16, 16) if s == 0 else nn.Linear(32, 1)

    with pytest.raises(UserError, match=r"stage 0's output float32\[4, 16\] does not fit "
                       r"stage 1.s input: RuntimeError: "):
        make(progs["1f1b"], build, plain, mse)


def test_a_data_function_that_raises_names_the_microbatch(progs):
    def bad(j, seed):
        raise ValueError("no such shard")

    with pytest.raises(UserError, match=r"data function bad\(0, 0\) for micro-batch 0 raised "
                       "ValueError: no such shard"):
        make(progs["1f1b"], data=bad)

    def late(j, seed):
        if j == 3:
            raise ValueError("shard 3 is missing")
        return um.batches(j, seed)

    run = make(progs["1f1b"], data=late, steps=2)  # step 1 reads micro-batches 2 and 3
    with pytest.raises(ExecutionError, match=r"mb3 .*micro-batch 3 raised ValueError"):
        list(run.train())


def test_data_of_the_wrong_structure_is_named(progs):
    with pytest.raises(UserError, match=r"micro-batch 0 returned Tensor: expected \(inputs, "
                       r"targets\)"):
        make(progs["1f1b"], data=lambda j, seed: torch.zeros(4, 16))

    def shrinking(j, seed):
        x, y, side = um.batches(j, seed)
        return (x[:3], y[:3], side) if j == 1 else (x, y, side)

    run = make(progs["1f1b"], data=shrinking)
    with pytest.raises(ExecutionError, match=r"micro-batch 1 gives inputs float32\[3, 16\].*"
                       r"micro-batch 0 gave inputs float32\[4, 16\]"):
        list(run.train())


def test_a_loss_that_is_not_a_scalar(progs):
    with pytest.raises(UserError, match=r"the loss returns float32\[4, 1\]: it must return a "
                       "scalar tensor"):
        make(progs["1f1b"], data=plain, build_stage=lambda s, n: nn.Linear(16, 16 if s == 0
                                                                         else 1),
             loss=lambda out, y: (out - y) ** 2)


def test_a_model_that_cannot_be_split(progs):
    with pytest.raises(SplitError, match="cannot split 1 layers into 2 stages"):
        make(progs["1f1b"], build_stage=[nn.Linear(16, 1)], data=plain, loss=mse)
    with pytest.raises(SplitError, match=r"2 cut points give 3 stages, the programs have 2"):
        make(progs["1f1b"], build_stage=sr.split_layers([nn.Linear(16, 16)] * 3, cuts=[1, 2]),
             data=plain, loss=mse)


class WeightNormed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.utils.parametrizations.weight_norm(nn.Linear(16, 16))

    def forward(self, x):
        return torch.tanh(self.lin(x))


def weight_normed(s, n):
    return WeightNormed() if s == 0 else nn.Linear(16, 1)


def test_weights_derived_tensors_are_refused_where_versions_differ(progs):
    """PACI's backward reads newer weights than its forward: a weight computed
    from the parameters (weight norm) would be saved at its forward version."""
    with pytest.raises(UserError, match=r"stage 0: .* computed from the stage's weights"):
        make(progs["paci"], weight_normed, plain, mse)
    run = make(progs["1f1b"], weight_normed, plain, mse, steps=2)  # one version per step
    assert len(list(run.train())) == 2


def test_the_command_line_reports_one_line(progs, tmp_path):
    """The user's model on the byte corpus (token ids, not features): exit 2,
    one line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, "-m", "schedc", "run", str(progs["1f1b"]),
                           "--local", "--model", "user_model:build_stage", "--loss",
                           "user_model:loss", "--steps", "1", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "schedc: error: stage 0 cannot take the data's inputs int64[4, 64]: TypeError:"), lines
