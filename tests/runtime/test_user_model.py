"""A user's model through the Python API: any inputs, a dict boundary with a
forward-only leaf, side inputs, float64 targets, samples per step. Exact
against plain training (synchronous presets), every asynchronous preset runs
with its versions checked, and torchrun equals in-process bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import api_worker
import pytest
import schedc.runtime as sr
import torch
import user_model as um
from launching import free_port
from runtime_testing import (
    HERE,
    Result,
    assert_same,
    collect,
    compile_preset,
    run_torchrun,
    train_plainly,
)
from schedc.runtime.boundary import call_stage
from schedc.runtime.build import build_stage_module
from schedc.runtime.models import user_model
from schedc.runtime.programs import load

STEPS = 3
SYNC = ["gpipe", "1f1b", "zb-h1"]
ASYNC = {"pipedream": 2, "pipedream-2bw": 4, "paci": 4, "amdp": 4, "chimera": 4}
ARGS = ["--model", "user_model:build_stage", "--data", "user_model:batches",
        "--loss", "user_model:loss"]


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    out = {name: compile_preset(root / name, name, 2, 4) for name in SYNC}
    out.update({name: compile_preset(root / name, name, 2, m) for name, m in ASYNC.items()})
    return out


def run_api(d, steps: int = STEPS, **options) -> tuple[sr.Run, Result]:
    torch.set_num_threads(1)
    run = sr.Run(d, build_stage=um.build_stage, data=um.batches, loss=um.loss,
                 launcher="local", steps=steps, lr=0.01, threads=1, quiet=True, **options)
    records = list(run.train())
    return run, collect(run.session, records)


def plain_training(d, steps: int) -> Result:
    """The whole model in one process, torch.optim.AdamW, the same micro-batches,
    gradients summed over a step's micro-batches and divided by their count."""
    torch.set_num_threads(1)
    manifest, _ = load(d)
    n, m = manifest.num_stages, manifest.period.microbatches
    model = user_model(um.build_stage, um.loss)
    modules = [build_stage_module(model, s, n, 0, torch.device("cpu")) for s in range(n)]
    params = [q for mod in modules for q in mod.parameters()]
    opt = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0, foreach=False)

    def micro_batch_loss(mb: int) -> torch.Tensor:
        x, y, side = um.batches(mb, 0)
        for mod in modules:
            x = call_stage(mod, x, side)
        return um.loss(x, y)

    return train_plainly(modules, opt, micro_batch_loss, steps, m)


@pytest.mark.parametrize("name", SYNC)
def test_user_model_equals_plain_training(name, programs):
    run, got = run_api(programs[name])
    ref = plain_training(programs[name], STEPS)
    assert got.losses == ref.losses
    for key, w in ref.weights.items():
        assert torch.equal(got.weights[key], w), f"stage {key} weights differ"
    assert run.records[0]["samples"] == 4 * um.BATCH and "tokens" not in run.records[0]


@pytest.mark.parametrize("name", list(ASYNC))
def test_every_asynchronous_preset_runs_with_versions_checked(name, programs):
    """Every F/B/I/W's version is checked against its instruction as it runs;
    here the reads also equal the manifest's version table."""
    manifest, _ = load(programs[name])
    _, got = run_api(programs[name], steps=manifest.analysis.get("analysed_repeats", 1) + 1)
    assert got.losses and all(torch.isfinite(torch.tensor(got.losses)))
    table = manifest.analysis.get("versions")
    if table is None:  # synchronous (chimera): step k reads version k
        m = manifest.period.microbatches
        assert all(v == mb // m for _, _, _, mb, v in got.reads)
        return
    expected = {}
    for key, rows in table["by_stage"].items():
        p, s = map(int, key.split("/"))
        for mb, fwd, bwd, _applied in rows:
            expected[("F", p, s, mb)] = fwd
            for op in ("B", "I", "W"):
                expected[(op, p, s, mb)] = bwd
    reads = {(op, p, s, mb): v for op, p, s, mb, v in got.reads}
    common = reads.keys() & expected.keys()
    assert common and all(reads[k] == expected[k] for k in common)


def test_step_by_step_equals_train(programs):
    """Owning the loop (one `step()` per body, `close()` at the end) runs the
    same instructions as `train()`: the asynchronous paci, bit for bit."""
    _, whole = run_api(programs["paci"], steps=4)
    torch.set_num_threads(1)
    run = sr.Run(programs["paci"], build_stage=um.build_stage, data=um.batches, loss=um.loss,
                 launcher="local", lr=0.01, threads=1, quiet=True)
    records = []
    for _ in range(4):
        records += run.step()
    records += run.close()
    assert [r["loss"] for r in records] == whole.losses
    assert_same(collect(run.session, records), whole)


def test_torchrun_equals_inprocess(programs, tmp_path):
    """`-m schedc.runtime.launch`'s path with the model, data and loss named as
    module:function (2 gloo ranks) equals the API's in-process run bit for bit."""
    names = ["1f1b", "paci"]
    jobs = {n: [str(programs[n]), "--steps", str(STEPS), *ARGS] for n in names}
    dist = run_torchrun(jobs, 2, tmp_path)
    for n in names:
        _, local = run_api(programs[n])
        assert_same(dist[n], local)


def test_schedc_run_with_a_module_on_pythonpath(programs, tmp_path):
    """`schedc run DIR --model M:build_stage --data M:batches --loss M:loss`
    (torchrun underneath) writes --metrics with samples per step."""
    metrics = tmp_path / "m.jsonl"
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "schedc", "run", str(programs["1f1b"]), *ARGS,
           "--steps", str(STEPS), "--lr", "0.01", "--threads", "1", "--quiet",
           "--metrics", str(metrics)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    _, local = run_api(programs["1f1b"])
    assert [x["loss"] for x in lines] == local.losses
    assert [x["samples"] for x in lines] == [4 * um.BATCH] * STEPS


def test_api_under_torchrun_four_ranks(tmp_path):
    """The same script in-process and under torchrun (SPMD, 4 gloo ranks): a
    model split from a list of layers, bit for bit."""
    d = compile_preset(tmp_path / "p", "1f1b", 4, 4)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node=4", "--master-addr", "127.0.0.1", f"--master-port={free_port()}",
           str(HERE / "api_worker.py"), str(d), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    dist = Result()
    for g in range(4):
        part = torch.load(out / f"rank{g}.pt", weights_only=False)
        dist.losses = part["losses"] or dist.losses
        dist.weights.update(part["weights"])
    api_worker.main(str(d), out)  # the same script, in this process
    local = torch.load(out / "local.pt", weights_only=False)
    assert dist.losses == local["losses"] and len(dist.losses) == STEPS
    for key, w in local["weights"].items():
        assert torch.equal(dist.weights[key], w), key
