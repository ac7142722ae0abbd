"""--posted-batches K > 1 (sends complete in the background, up to K batches posted):
every preset over gloo stays bit for bit the in-process run, which is the K = 1 result."""

from __future__ import annotations

import pytest
import torch
from runtime_testing import compile_preset, run_inprocess, run_torchrun
from schedc.runtime.config import add_run_arguments, config_from_args
from test_exactness import PRESETS_2

from schedc.errors import UserError

STEPS = 2


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs")
    return {name: compile_preset(root / name, name, stages, mbs, ranks)
            for name, (stages, mbs, ranks) in PRESETS_2.items()}


@pytest.fixture(scope="module")
def overlapped(programs, tmp_path_factory):
    jobs = {f"{name}-k{k}": [str(d), "--steps", str(STEPS), "--posted-batches", str(k)]
            for name, d in programs.items() for k in ((2, 3) if name == "1f1b" else (2,))}
    return run_torchrun(jobs, 2, tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("name", list(PRESETS_2))
def test_every_preset_is_bitwise_unchanged_over_gloo(name, programs, overlapped):
    local = run_inprocess(programs[name], "--steps", str(STEPS))
    for k in (2, 3) if name == "1f1b" else (2,):
        run = overlapped[f"{name}-k{k}"]
        assert run.losses == local.losses
        for key, w in local.weights.items():
            assert torch.equal(run.weights[key], w), f"{name} K={k}: stage {key} differs"


def test_posted_batches_must_be_positive(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    with pytest.raises(UserError, match="--posted-batches"):
        config_from_args(parser.parse_args([str(tmp_path), "--posted-batches", "0"]))
