"""Four gloo processes: 4-stage pipelines, and PP x DP (2 stages x 2 replicas)."""

from __future__ import annotations

import pytest
import torch
from runtime_testing import assert_same, compile_preset, run_inprocess, run_torchrun

STEPS = 2
SGD = ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs4")
    dirs = {
        "1f1b": compile_preset(root / "1f1b", "1f1b", 4, 4),
        "paci": compile_preset(root / "paci", "paci", 4, 4),
        "zb-h1": compile_preset(root / "zb", "zb-h1", 4, 4),
        "pp2": compile_preset(root / "pp2", "1f1b", 2, 4),
        # proven under 2 posted batches with early receives (docs/programs.md, "Overlap")
        "1f1b-k2": compile_preset(root / "1f1b-k2", "1f1b", 4, 4, None, 2),
        "paci-k2": compile_preset(root / "paci-k2", "paci", 4, 4, None, 2),
        "pp2-k2": compile_preset(root / "pp2-k2", "1f1b", 2, 4, None, 2),
    }
    jobs = {name: [str(dirs[name]), "--steps", str(STEPS)]
            for name in ("1f1b", "paci", "zb-h1", "1f1b-k2", "paci-k2")}
    jobs["dp"] = [str(dirs["pp2"]), "--steps", str(STEPS), "--dp", "2", *SGD]
    jobs["dp-k2"] = [str(dirs["pp2-k2"]), "--steps", str(STEPS), "--dp", "2", *SGD]
    return dirs, run_torchrun(jobs, 4, tmp_path_factory.mktemp("dist4"))


@pytest.mark.parametrize("name", ["1f1b", "paci", "zb-h1"])
def test_four_ranks_distributed_equals_inprocess(name, setup):
    dirs, results = setup
    assert_same(results[name], run_inprocess(dirs[name], "--steps", str(STEPS)))


@pytest.mark.parametrize("name", ["1f1b", "paci", "dp"])
def test_four_ranks_with_early_receives_are_bitwise_k1(name, setup):
    """K = 2 with early receives, over gloo on 4 ranks (PP x DP included: the
    data-parallel sum drains the sends first), equals K = 1 bit for bit."""
    _, results = setup
    assert_same(results[f"{name}-k2"], results[name])


def test_pp_x_dp_equals_pp_on_the_same_global_batch(setup):
    """(d) 2 stages x 2 replicas with micro-batches of 2 equals 2 stages alone with
    micro-batches of 4 (each the union of the replicas'): same data, same mean.
    Not bitwise -- the sums are grouped differently -- so within 1e-6 relative."""
    dirs, results = setup
    dp = results["dp"]
    alone = run_inprocess(dirs["pp2"], "--steps", str(STEPS), "--micro-batch-size", "4", *SGD)
    assert len(dp.losses) == len(alone.losses) == STEPS
    for a, b in zip(dp.losses, alone.losses, strict=True):
        assert abs(a - b) <= 1e-6 * abs(b)
    for key, w in alone.weights.items():
        torch.testing.assert_close(dp.weights[key], w, rtol=1e-6, atol=1e-7)
