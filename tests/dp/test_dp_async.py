"""Asynchronous (sparse) data parallelism on 2 pipeline ranks x 2 replicas (gloo, CPU).

One torchrun launch runs every job: the exactness case, a lateness run, every
preset with --dp 2, and a slowed replica under sync and async-sparse DP.
"""

from __future__ import annotations

import pytest
import torch
from dp_testing import DpResult, compile_dp, reference_parameter_averaging, run_dp

STEPS = 4
PRESETS = ["gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "chimera", "pipedream",
           "pipedream-2bw", "paci", "amdp"]
SLOW_STEPS = 10
SLOW_ENV = {"DP_SLOW_RANKS": "2", "DP_SLOW_S": "0.1"}  # replica 1's stage 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp_programs")
    dirs = {"exact": compile_dp(root / "exact", "1f1b"),
            "late": compile_dp(root / "late", "1f1b", fraction=0.25, period=2, lateness=2),
            "sync": compile_dp(root / "sync", "1f1b")}
    jobs = {"exact": [str(dirs["exact"]), "--steps", str(STEPS), "--dp", "2"],
            "late": [str(dirs["late"]), "--steps", str(STEPS), "--dp", "2"]}  # bodies of 2 steps
    for name in PRESETS:
        kw = dict(stages=4, ranks=2) if name == "interleaved-1f1b" else {}
        mb = 1 if name == "pipedream" else 2
        # interleaved: period 1, see test_interleaved_multi_step_body below
        period = 1 if name == "interleaved-1f1b" else 2
        d = compile_dp(root / name, name, fraction=1.0, period=period, lateness=1,
                       microbatches=mb, **kw)
        dirs[name] = d
        jobs[f"preset-{name}"] = [str(d), "--steps", "2", "--dp", "2"]
    # The slowed replica: sync DP (the control) and async-sparse with drops.
    sync_dir = root / "syncdp"
    from schedc.compiler import compile_spec
    from schedc.files import write_programs
    from schedc.presets import preset_spec

    compiled = compile_spec(preset_spec("1f1b", stages=2, microbatches=2).validate())
    sync_dir.mkdir()
    write_programs(sync_dir, compiled.manifest, compiled.programs)
    slow_async = compile_dp(root / "slow", "1f1b", fraction=0.25, period=1, lateness=2)
    slow = ["--steps", str(SLOW_STEPS), "--dp", "2", "--model", "slow_model:build_stage"]
    jobs["slow-sync"] = [str(sync_dir), *slow]
    jobs["slow-async"] = [str(slow_async), *slow, "--dp-late", "drop"]
    return dirs, run_dp(jobs, 4, tmp_path_factory.mktemp("dp_out"), env=SLOW_ENV)


def _replica_weights(res: DpResult, d: int) -> dict[tuple[int, int], torch.Tensor]:
    return {k[1:]: w for k, w in res.weights.items() if k[0] == d}


def test_exact_case_equals_synchronous_parameter_averaging(runs):
    """rho = 1, k = 1, tau = 0: each replica steps on its own gradient, then the
    parameters are averaged -- bit for bit (see reference_parameter_averaging)."""
    dirs, results = runs
    res = results["exact"]
    losses, ref = reference_parameter_averaging(dirs["exact"], STEPS, 2)
    assert res.losses == losses
    for d in range(2):
        for (_, s), w in _replica_weights(res, d).items():
            assert torch.equal(w, ref[d][s]), f"replica {d} stage {s} differs"
    assert torch.equal(res.weights[(0, 0, 0)], res.weights[(1, 0, 0)])
    for stats in res.stats.values():  # one full exchange per stage per step, never late
        assert stats.exchanges == STEPS and stats.lateness == [0] * STEPS


def test_without_averaging_the_replicas_would_differ(runs):
    """The reference is not vacuous: replicas see different data."""
    dirs, _ = runs
    _, ref = reference_parameter_averaging(dirs["exact"], 1, 2)
    assert torch.equal(ref[0][0], ref[1][0])
    # one replica stepping alone (D = 1) ends elsewhere than the average
    _, alone = reference_parameter_averaging(dirs["exact"], 1, 1)
    assert not torch.equal(alone[0][0], ref[0][0])


def test_late_averages_apply_at_their_lateness(runs):
    """tau = 2, k = 2, rho = 1/4, policy wait: each average is applied two steps
    after its version (the last one at the drain point, on time); a quarter of
    the parameters travel per exchange."""
    dirs, results = runs
    res = results["late"]
    # a metrics line per body (2 optimizer steps)
    assert len(res.losses) == STEPS and all(torch.isfinite(torch.tensor(res.losses)))
    for g, stats in res.stats.items():
        # 8 optimizer steps, exchanges at versions 2, 4, 6, 8: the first three
        # applied 2 steps late, the last at the drain point
        assert stats.exchanges == STEPS and stats.lateness == [2, 2, 2, 0], (g, stats)
        assert stats.dropped == 0
    for g in res.stats:
        numel = sum(w.numel() for k, w in res.weights.items()
                    if k[0] == res.dp_index[g] and g % 2 == k[2])
        sent = res.stats[g].bytes_sent / 4 / res.stats[g].exchanges
        assert 0.2 * numel <= sent <= 0.3 * numel
    # different data, only partial averaging: the replicas differ
    assert not torch.equal(res.weights[(0, 0, 0)], res.weights[(1, 0, 0)])


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_with_async_sparse_dp(name, runs):
    """rho = 1, k = 2 (interleaved: 1), tau = 1 under every schedule: the run finishes, and the last
    exchange (at the final version, applied on time at the drain point) leaves
    both replicas with the same weights."""
    _, results = runs
    res = results[f"preset-{name}"]
    assert res.losses and all(torch.isfinite(torch.tensor(res.losses)))
    keys = {k[1:] for k in res.weights}
    for key in keys:
        assert res.versions[(0, *key)] == res.versions[(1, *key)]
        assert res.versions[(0, *key)] % (1 if name == "interleaved-1f1b" else 2) == 0
        assert torch.equal(res.weights[(0, *key)], res.weights[(1, *key)]), key
    assert all(s.exchanges > 0 for s in res.stats.values())


def test_a_slowed_replica_does_not_stall_the_other(runs):
    """Replica 1's stage 0 sleeps 0.1 s per forward. Under async-sparse DP (drop
    policy) replica 0 runs at its own pace: it never blocks on an average, and
    it gets more than tau = 2 steps ahead (so its late averages are dropped),
    which synchronous DP forbids."""
    _, results = runs
    res = results["slow-async"]
    for g in (0, 1):  # replica 0
        assert res.stats[g].waits == 0, res.stats[g]
    assert res.stats[0].dropped > 0  # its late averages were dropped, not waited for
    assert res.stats[2].dropped == 0  # the slow one finds every average arrived
    assert len(res.losses) == SLOW_STEPS


def test_a_slowed_replica_stalls_the_other_under_sync_dp(runs):
    """The control: under synchronous DP every step's gradient sum waits for the
    slow replica, so replica 0 leaves the sum of step k only after replica 1
    entered it, at every step (one monotonic clock for all processes)."""
    _, results = runs
    sync = results["slow-sync"]
    assert not sync.step_times[0]  # no async state under sync DP
    assert len(sync.losses) == SLOW_STEPS
    for r in (0, 1):  # program rank r: fast global rank r, slow global rank r + 2
        fast, slow = sync.sums[r], sync.sums[r + 2]
        assert len(fast) == len(slow) == SLOW_STEPS
        for k, ((_, fast_leaves), (slow_enters, _)) in enumerate(zip(fast, slow, strict=True)):
            assert fast_leaves >= slow_enters, f"rank {r} passed step {k} alone"


def test_interleaved_multi_step_body():
    from schedc.compiler import lower_batches
    from schedc.presets import preset_spec

    spec = preset_spec("interleaved-1f1b", stages=4, ranks=2, microbatches=2).validate()
    streams = lower_batches(spec, 2).streams
    assert [sum(i.op == "F" for i in s) for s in streams] == [8, 8]  # 2 stages x 2 mb x 2 steps
