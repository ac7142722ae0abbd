"""Stage state: backwards read the active weights; wrong versions are named errors."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest
import torch
from runtime_testing import compile_preset, run_inprocess
from schedc.runtime.interpreter import ExecutionError
from schedc.runtime.stage import StageReplica
from schedc.runtime.weights import OptimConfig
from torch import nn


def _replica() -> StageReplica:
    torch.manual_seed(0)
    return StageReplica(nn.Linear(4, 3, bias=False), 1, 0, OptimConfig("sgd", lr=0.5))


def test_no_stash_backward_reads_the_new_weights():
    """F at v0, STEP to v1, B: the input gradient is g @ W(v1), not g @ W(v0),
    and autograd's in-place check does not reject it."""
    r = _replica()
    x = torch.randn(2, 4, requires_grad=True)
    with r.weights_by_reference():
        y = r.module(x)
    r.acc.copy_(torch.randn_like(r.acc))
    r.step(1, count=1)
    w_new = r.module.weight.detach().clone()
    g = torch.randn(2, 3)
    r.bind_grad(0)
    torch.autograd.backward(y, g, inputs=[x, *r.params])
    torch.testing.assert_close(x.grad, g @ w_new, rtol=0, atol=0)
    assert r.weight_unpacks > 0


def test_stashed_backward_reads_the_stash():
    r = _replica()
    w_old = r.module.weight.detach().clone()
    x = torch.randn(2, 4, requires_grad=True)
    with r.weights_by_reference():
        y = r.module(x)
    r.stash_current(0)
    r.acc.copy_(torch.randn_like(r.acc))
    r.step(1, count=1)
    r.point_at(0)
    g = torch.randn(2, 3)
    torch.autograd.backward(y, g, inputs=[x])
    torch.testing.assert_close(x.grad, g @ w_old, rtol=0, atol=0)
    r.release(0)
    assert r.active_version() == 1


def test_a_wrong_version_names_rank_instruction_and_both_versions(tmp_path):
    from schedc.files import load_programs, write_programs

    d = compile_preset(tmp_path / "p", "1f1b", 2, 2)
    manifest, programs = load_programs(d)
    body = list(programs[1].body)
    i = next(k for k, instr in enumerate(body) if instr.op == "B")
    body[i] = dataclasses.replace(body[i], version=7)
    programs[1] = dataclasses.replace(programs[1], body=tuple(body))
    write_programs(d, manifest, programs)
    with pytest.raises(ExecutionError) as info:
        run_inprocess(d, "--steps", "1")
    err = info.value
    assert err.rank == 1 and err.instr.op == "B" and err.index == i
    assert "reads version 0, instruction says 7" in str(err)
    assert f"rank 1, instruction {i} (B s1 mb0 v7)" in str(err)


def test_a_saved_output_does_not_keep_its_graph_alive():
    """exp saves its own output: packed as is, the output's grad_fn would hold the
    node that holds it, a cycle that only a freeing backward breaks. A split
    backward's I keeps the graph and nothing runs exp again, so the graph (and
    every micro-batch's activations) leaked."""
    r = _replica()
    x = torch.randn(2, 4, requires_grad=True)
    with r.weights_by_reference():
        y = torch.exp(r.module(x))
        loss = y.sum()
    ref = weakref.ref(y)
    torch.autograd.backward(loss, inputs=[x], retain_graph=True)  # as I does
    del y, loss
    gc.collect()
    assert ref() is None
