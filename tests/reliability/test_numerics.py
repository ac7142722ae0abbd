"""NaN/Inf in a loss or a gradient: stop with step, stage and micro-batch, or
skip the step on every stage (in-process and across 4 gloo processes)."""

from __future__ import annotations

import argparse

import pytest
import torch
from reliability_testing import TINY, compile_preset, launch, wait_all
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.interpreter import ExecutionError
from schedc.runtime.local import build_local
from schedc.runtime.session import train

from schedc.errors import UserError


def _session(d, *extra):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    torch.set_num_threads(1)
    return build_local(config_from_args(parser.parse_args([str(d), *TINY, *extra])))


def _weights(session):
    return {k: r.current.clone() for i in session.interps.values() for k, r in i.replicas.items()}


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_preset(tmp_path_factory.mktemp("p") / "1f1b", "1f1b", stages=4, microbatches=4)


def test_stop_names_step_stage_and_microbatch_of_a_gradient(prog, monkeypatch):
    monkeypatch.setenv("SCHEDC_INJECT", "nan-grad@1:5")
    s = _session(prog, "--steps", "3")
    with pytest.raises(ExecutionError, match=r"non-finite gradient \(NaN or Inf\) at step 2, "
                       r"stage 1, micro-batch 5") as err:
        train(s)
    assert err.value.instr.op == "STEP" and err.value.rank == 1
    assert all(r.version == 1 for i in s.interps.values() for r in i.replicas.values()
               if r.stage == 1)  # the poisoned step was not applied


def test_stop_names_a_non_finite_loss_at_its_forward(prog, monkeypatch):
    monkeypatch.setenv("SCHEDC_INJECT", "nan-loss@2")
    with pytest.raises(ExecutionError, match=r"rank 3, instruction \d+ \(F s3 mb2 v0\): "
                       r"NumericalFault: non-finite loss .* at step 1, stage 3, micro-batch 2"):
        train(_session(prog, "--steps", "2"))


@pytest.mark.parametrize("inject", ["nan-grad@0:5", "nan-grad@3:7", "nan-loss@6"])
def test_skip_skips_the_step_on_every_stage(prog, monkeypatch, inject):
    one = _session(prog, "--steps", "1")
    train(one)
    monkeypatch.setenv("SCHEDC_INJECT", inject)
    two = _session(prog, "--steps", "3", "--on-nan", "skip")
    lines = train(two)
    assert len(lines) == 3
    assert all(i.skipped == [2] for i in two.interps.values())
    assert all(r.version == 3 for i in two.interps.values() for r in i.replicas.values())
    # Step 1 skipped everywhere: after it, every stage still held step 0's result,
    # then step 2 trained on; so the run differs from a clean one only by that step.
    monkeypatch.delenv("SCHEDC_INJECT")
    clean = _session(prog, "--steps", "3")
    train(clean)
    for key, w in _weights(two).items():
        assert torch.isfinite(w).all()
        assert not torch.equal(w, _weights(clean)[key])


def test_skip_after_the_first_step_leaves_its_weights(prog, monkeypatch):
    one = _session(prog, "--steps", "1")
    train(one)
    monkeypatch.setenv("SCHEDC_INJECT", "nan-grad@2:4")
    two = _session(prog, "--steps", "2", "--on-nan", "skip")
    train(two)
    want = _weights(one)
    for key, w in _weights(two).items():
        assert torch.equal(w, want[key]), f"stage {key} moved in a skipped step"


def test_skip_is_refused_for_asynchronous_programs(tmp_path):
    d = compile_preset(tmp_path / "paci", "paci", stages=2, microbatches=4)
    with pytest.raises(UserError, match="--on-nan skip needs a synchronous"):
        _session(d, "--on-nan", "skip")


@pytest.mark.slow
def test_skip_agrees_across_processes(prog, tmp_path):
    """The NaN is on stage 0 only (rank 0); ranks 1-3 must skip as well."""
    one = _session(prog, "--steps", "1")
    train(one)
    ck = tmp_path / "ck"
    ranks = launch(4, [str(prog), *TINY, "--steps", "2", "--on-nan", "skip", "--save-every", "2",
                       "--save-dir", str(ck), "--timeout", "60"], tmp_path / "logs",
                   env={"SCHEDC_INJECT": "nan-grad@0:5"})
    wait_all(ranks, 300)
    for r in ranks:
        assert r.proc.returncode == 0, r.text()
    want = _weights(one)
    for g in range(4):
        state = torch.load(ck / "step-00000002" / f"rank{g}.pt", weights_only=True)
        assert state[f"0:{g}"]["version"] == 2
        assert torch.equal(state[f"0:{g}"]["current"], want[(0, g)]), f"rank {g} stepped"


@pytest.mark.slow
def test_stop_across_processes_every_rank_exits(prog, tmp_path):
    ranks = launch(4, [str(prog), *TINY, "--steps", "4", "--timeout", "60"], tmp_path / "logs",
                   env={"SCHEDC_INJECT": "nan-grad@0:5"})
    wait_all(ranks, 120)
    for r in ranks:
        assert r.proc.returncode not in (0, None), r.text()
        assert f"[rank {r.rank}] schedc: error: rank {r.rank}, instruction" in r.text()
    assert "non-finite gradient (NaN or Inf) at step 2, stage 0, micro-batch 5" in ranks[0].text()
