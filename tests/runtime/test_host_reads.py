"""Host reads of device values (runtime/hostread.py): a step's losses are read once,
and each STEP's finiteness check (the losses' and the gradients') is one read."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from schedc.runtime import faults, hostread
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.local import build_local
from schedc.runtime.session import train
from schedc.runtime.stage import StageReplica
from schedc.runtime.weights import OptimConfig

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """The number of tensors of each `hostread.read` call."""
    calls: list[int] = []
    original = hostread.read

    def counted(tensors):
        calls.append(len(tensors))
        return original(tensors)

    monkeypatch.setattr(hostread, "read", counted)
    return calls


def test_read_is_exact_and_keeps_shapes_apart():
    loss = torch.tensor(2.0 / 3.0)  # fp32
    half = torch.tensor(0.1, dtype=torch.bfloat16)
    got = hostread.read([loss.reshape(1), torch.tensor([1, 0, 7], dtype=torch.int32),
                         torch.empty(0), half.reshape(1)])
    assert got == [[float(loss)], [1.0, 0.0, 7.0], [], [float(half)]]


def _replica_with_accs(n: int) -> StageReplica:
    rep = StageReplica(torch.nn.Linear(4, 3, bias=False), 1, 0, OptimConfig("sgd", lr=0.5))
    for mb in range(n):
        rep.bind_grad(mb)
        rep.params[0].grad.fill_(float("nan") if mb == 2 else 1.0)
        rep.accumulate(mb)
    return rep


def test_a_steps_losses_and_gradient_flags_are_one_read(reads):
    rep = _replica_with_accs(3)
    poison = faults.Poison()
    poison.device_losses = [(0, torch.tensor(1.5)), (1, torch.tensor(0.5))]
    assert poison.first_bad(rep) == ("gradient", 2)
    assert reads == [2]  # one read: the losses' finiteness and the ACC flags together
    poison.device_losses = [(3, torch.tensor(1.5)), (4, torch.tensor(math.inf))]
    assert poison.first_bad(rep) == ("loss", 4)
    assert len(reads) == 2


def test_one_loss_read_per_step_and_one_read_per_step_instruction(tmp_path, reads):
    compiled = compile_spec(preset_spec("1f1b", stages=2, microbatches=4).validate())
    d = write_programs(tmp_path / "p", compiled.manifest, compiled.programs)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    steps = 3
    cfg = config_from_args(parser.parse_args(
        [str(d), "--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "8",
         "--steps", str(steps), "--quiet", "--threads", "1"]))
    lines = train(build_local(cfg))
    assert len(lines) == steps
    # Per step: each of the 2 stages' STEP reads its ACC flags once, the metrics read
    # the step's 4 losses at once (on CPU the last stage checks a loss as it comes).
    assert sorted(reads) == sorted([1, 1, 4] * steps), reads
