"""Synchronous data parallelism over three replicas (gloo, CPU): with more
than two, the order in which the replicas' gradients are summed shows in the
last bits, so the run must equal a reference that sums in rank order."""

from __future__ import annotations

import torch
from dp_testing import reference_sync_dp, run_dp

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec

STEPS, DP = 3, 3


def test_three_replicas_sum_in_rank_order_bit_for_bit(tmp_path):
    prog = tmp_path / "prog"  # one stage, one rank: 3 processes in all
    compiled = compile_spec(preset_spec("1f1b", stages=1, microbatches=2).validate())
    prog.mkdir()
    write_programs(prog, compiled.manifest, compiled.programs)
    res = run_dp({"dp3": [str(prog), "--steps", str(STEPS), "--dp", str(DP)]}, DP,
                 tmp_path / "out")["dp3"]
    losses, ref = reference_sync_dp(prog, STEPS, DP)
    assert res.losses == losses
    assert {k[0] for k in res.weights} == set(range(DP))
    for (d, _, s), w in res.weights.items():
        assert torch.equal(w, ref[s]), f"replica {d} stage {s} differs"
    # the check has teeth: the same gradients summed in reverse rank order differ
    a, b, c = (torch.randn(4096, generator=torch.Generator().manual_seed(i)) for i in range(3))
    assert not torch.equal((a + b) + c, (c + b) + a)
