"""Programs proven under K posted batches with early receives (`schedc compile
--posted-batches K`, the manifest's `overlap`) run so, in-process and over gloo,
bit for bit as at K = 1; a different K is refused. Four ranks: test_four_ranks.py."""

from __future__ import annotations

import pytest
import torch
from overlap_programs import write_set
from runtime_testing import (
    assert_same,
    compile_preset,
    config,
    run_inprocess,
    run_torchrun,
)
from schedc.runtime.local import build_local
from schedc.runtime.transport import DistTransport
from test_exactness import PRESETS_2

from schedc.errors import UserError
from schedc.overlap import Overlap

STEPS = 2


def _ks(name: str) -> tuple[int, ...]:
    return (2, 3) if name == "1f1b" else (2,)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs")
    out = {}
    for name, (stages, mbs, ranks) in PRESETS_2.items():
        for k in (1, *_ks(name)):
            out[name, k] = compile_preset(root / f"{name}-k{k}", name, stages, mbs, ranks, k)
    out["hand", 2] = write_set(root / "hand-k2", Overlap.posting(2))
    return out


@pytest.fixture(scope="module")
def reference(programs):
    """The K = 1 in-process runs (the hand-written set, which deadlocks under
    K = 1 over gloo, runs in-process where sends never block)."""
    return {name: run_inprocess(programs[name, 1 if name != "hand" else 2], "--steps",
                                str(STEPS)) for name in (*PRESETS_2, "hand")}


@pytest.fixture(scope="module")
def overlapped(programs, tmp_path_factory):
    jobs = {f"{name}-k{k}": [str(programs[name, k]), "--steps", str(STEPS)]
            for name in PRESETS_2 for k in _ks(name)}
    jobs["1f1b-k2"] += ["--posted-batches", "2"]  # the manifest's K, given explicitly
    jobs["hand-k2"] = [str(programs["hand", 2]), "--steps", str(STEPS)]
    return run_torchrun(jobs, 2, tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("name", list(PRESETS_2))
def test_every_preset_in_process_with_early_receives_is_bitwise_k1(name, programs, reference):
    for k in _ks(name):
        assert_same(run_inprocess(programs[name, k], "--steps", str(STEPS)), reference[name])


@pytest.mark.parametrize("name", [*PRESETS_2, "hand"])
def test_every_preset_over_gloo_with_early_receives_is_bitwise_k1(name, overlapped, reference):
    for k in _ks(name) if name != "hand" else (2,):
        assert_same(overlapped[f"{name}-k{k}"], reference[name])


def test_a_k_the_programs_were_not_proven_under_is_refused(programs):
    with pytest.raises(UserError) as exc:
        build_local(config(programs["1f1b", 2], "--posted-batches", "1"))
    assert str(exc.value) == (
        f"--posted-batches 1: {programs['1f1b', 2]} was proven deadlock-free under posted "
        "batches 2 (field 'overlap' of manifest.json); run it so, or recompile with `schedc "
        "compile ... --posted-batches 1`")
    with pytest.raises(UserError, match="proven deadlock-free under posted batches 1"):
        build_local(config(programs["1f1b", 1], "--posted-batches", "2"))
    with pytest.raises(UserError, match="--posted-batches must be at least 1"):
        config(programs["1f1b", 1], "--posted-batches", "0")


def test_early_receives_are_refused_on_cuda():
    """NCCL runs a communicator's operations in order: a receive posted ahead
    would hold the sends behind it, which the proof does not model."""
    with pytest.raises(UserError, match="NCCL runs a communicator's operations in order"):
        DistTransport(0, 2, 0, 1, {}, torch.device("cuda"), {}, None, posted_batches=2,
                      early_receives=True)
