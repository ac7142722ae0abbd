"""Surviving dead ranks: under `torchrun --max-restarts`, SIGKILL a rank (mid-step,
or half-way through a checkpoint save); torchrun restarts the job, the run
resumes from --save-dir by itself, finishes, and its every logged loss and
final state (weights, optimizer state, versions) equal an uninterrupted run's
bit for bit; the metrics file holds each step once. A rank that dies at the
same step every time stops `schedc run --max-restarts` with one line.

CI runs one kill+resume (1F1B, 2 ranks) and the repeated crash; the nightly
tier (tests/tiers.py) adds PipeDream-2BW and 4 ranks, two kills in one run, and
a kill during a save under torchrun (CI checks that one in-process:
tests/reliability/test_checkpoint_faults.py)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from launching import free_port
from reliability_testing import ROOT, TINY, compile_preset

HERE = Path(__file__).parent
STEPS, EVERY, M = 20, 5, 4  # --steps, --save-every, micro-batches per step
RUN = [*TINY, "--steps", str(STEPS), "--save-every", str(EVERY)]


def _torchrun(prog: Path, world: int, out: Path, env: dict, restarts: int = 3):
    """torchrun --max-restarts; polls the metrics file: [(time, lines)] as it grows."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           f"--nproc-per-node={world}", f"--max-restarts={restarts}", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{free_port()}", "-m", "schedc.runtime.launch", str(prog),
           *RUN, "--model", "killer_model:build_stage", "--save-dir", str(out / "ck"),
           "--metrics", str(out / "m.jsonl")]
    full = {**os.environ, "OMP_NUM_THREADS": "1", "SCHEDC_KILL_LOG": str(out / "kills.log"),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env}
    log = open(out / "torchrun.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full, cwd=ROOT)
    seen, deadline = [], time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        path = out / "m.jsonl"
        n = path.read_bytes().count(b"\n") if path.exists() else 0
        if not seen or seen[-1][1] != n:
            seen.append((time.time(), n))
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log.close()
    text = (out / "torchrun.log").read_text(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    return text, seen


def _reference(prog: Path, out: Path) -> Path:
    """The uninterrupted run (in-process; equal to torchrun's bit for bit)."""
    from schedc.runtime.config import RunConfig
    from schedc.runtime.local import run_local

    torch.set_num_threads(1)
    out.mkdir(parents=True)
    run_local(RunConfig(programs=prog, micro_batch_size=2, seq_len=16, threads=1, quiet=True,
                        lr=0.01, steps=STEPS, save_every=EVERY, save_dir=out / "ck",
                        metrics=out / "m.jsonl"))
    return out


def _assert_equal_runs(run: Path, ref: Path, world: int) -> None:
    lines = [json.loads(t) for t in (run / "m.jsonl").read_text().splitlines()]
    want = [json.loads(t) for t in (ref / "m.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, len(want) + 1))  # each step once
    assert [x["loss"] for x in lines] == [x["loss"] for x in want]  # bitwise
    final = f"step-{STEPS:08d}"
    for g in range(world):
        a = torch.load(run / "ck" / final / f"rank{g}.pt", weights_only=True)
        b = torch.load(ref / "ck" / final / f"rank{g}.pt", weights_only=True)
        _assert_same_state(a, b, f"rank {g}")


def _assert_same_state(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}/{k}")
    else:
        assert a == b, where


def _resumed_from(text: str) -> list[int]:
    """The steps done (bodies) of every checkpoint the run resumed from."""
    return [int(t.split("step-")[1][:8]) for t in text.splitlines()
            if t.startswith("schedc: resuming from")]


def _resumes(*segs) -> list[int]:
    """The resume lines expected when restarts begin at `segs` (a restart before
    the first checkpoint starts from step 0 and prints none)."""
    return [seg.first for seg in segs if seg.first > 0]


def _segment_of(prog: Path, mb: int):
    """The segment (between checkpoints) that runs micro-batch `mb`."""
    from schedc.runtime.programs import load, plan

    manifest, programs = load(prog)
    return [seg for seg in plan(programs, manifest, STEPS, EVERY) if seg.mb_base <= mb][-1]


def _segment_steps(prog: Path, seg) -> int:
    """Optimizer steps (metrics lines) of one segment: what a kill can cost."""
    from schedc.runtime.programs import after, load

    manifest, programs = load(prog)
    return (after(programs, manifest, seg).mb_base - seg.mb_base) // M


def _kill(prog: Path, attempt: int, rank: int, step: int, start_mb: int,
          rng: random.Random) -> tuple[str, object]:
    """SCHEDC_KILL entry: `rank` dies at one of optimizer step `step`'s forward
    passes (one stage per rank: its n-th forward of an attempt that started at
    micro-batch start_mb is micro-batch start_mb + n - 1); and the segment the
    restart resumes at (the checkpoint before the killed segment)."""
    mb = step * M + rng.randrange(M)
    return f"{attempt}:{rank}:{mb - start_mb + 1}", _segment_of(prog, mb)


def _recovery_s(kill_time: float, lines_at_resume: int, seen: list) -> float:
    """Kill to the first step logged after the resume (after the restarted
    writer cut the metrics file back to the checkpoint)."""
    after = [(t, n) for t, n in seen if t > kill_time]
    cut = next((i for i, (_, n) in enumerate(after) if n <= lines_at_resume), 0)
    return next(t for t, n in after[cut:] if n > lines_at_resume) - kill_time


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """(programs, uninterrupted run) per (world, preset), made when first asked for."""
    root = tmp_path_factory.mktemp("restart")

    class Made(dict):
        def __missing__(self, key):
            world, preset = key
            prog = compile_preset(root / f"{preset}-{world}", preset, stages=world,
                                  microbatches=M)
            self[key] = (prog, _reference(prog, root / f"ref-{preset}-{world}"))
            return self[key]

    return Made()


@pytest.mark.slow
@pytest.mark.parametrize("world,preset", [
    (2, "1f1b"),
    pytest.param(2, "pipedream-2bw", marks=pytest.mark.nightly),
    pytest.param(4, "1f1b", marks=pytest.mark.nightly),
    pytest.param(4, "pipedream-2bw", marks=pytest.mark.nightly),
])
def test_a_killed_rank_resumes_by_itself_bit_for_bit(world, preset, programs, tmp_path):
    prog, ref = programs[(world, preset)]
    rng = random.Random()
    step, victim = rng.randint(6, 15), rng.randrange(world)
    kill, seg = _kill(prog, 0, victim, step, 0, rng)
    text, seen = _torchrun(prog, world, tmp_path, {"SCHEDC_KILL": kill})
    where = f"killed rank {victim} in step {step + 1} ({kill})"
    assert _resumed_from(text) == _resumes(seg), (where, text[-4000:])
    lost = step - seg.mb_base // M  # optimizer steps run again
    assert 0 <= lost < _segment_steps(prog, seg)  # at most one segment (--save-every bodies)
    _assert_equal_runs(tmp_path, ref, world)
    (_, _, _, t_kill), = [line.split() for line in (tmp_path / "kills.log").read_text()
                          .splitlines()]
    print(f"{preset} on {world} ranks, {where}: resumed at body {seg.first}, {lost} steps "
          f"run again, {_recovery_s(float(t_kill), seg.mb_base // M, seen):.1f} s from kill "
          "to the next step logged")


@pytest.mark.slow
@pytest.mark.nightly
def test_two_kills_in_one_run(programs, tmp_path):
    prog, ref = programs[(2, "1f1b")]
    rng = random.Random()
    first = rng.randint(6, 10)
    second = rng.randint(first, 15)
    kill1, seg1 = _kill(prog, 0, 1, first, 0, rng)
    kill2, seg2 = _kill(prog, 1, 0, second, seg1.mb_base, rng)
    text, _ = _torchrun(prog, 2, tmp_path, {"SCHEDC_KILL": f"{kill1},{kill2}"})
    assert _resumed_from(text) == _resumes(seg1, seg2), (kill1, kill2, text[-4000:])
    assert len((tmp_path / "kills.log").read_text().splitlines()) == 2
    _assert_equal_runs(tmp_path, ref, 2)


@pytest.mark.slow
@pytest.mark.nightly
def test_a_rank_killed_during_a_save(programs, tmp_path):
    """Rank 1 dies half-way through writing the checkpoint after step 10 (first
    attempt only): the restart refuses that step directory and resumes at 5."""
    prog, ref = programs[(2, "pipedream-2bw")]
    text, _ = _torchrun(prog, 2, tmp_path, {"SCHEDC_INJECT": "die-in-save@10:1#0"})
    resume = [t for t in text.splitlines() if t.startswith("schedc: resuming")]
    assert _resumed_from(text) == [5], text[-4000:]
    assert "step-00000010/meta.json: missing" in resume[0], resume
    _assert_equal_runs(tmp_path, ref, 2)


@pytest.mark.slow
def test_a_deterministic_crash_stops_after_max_restarts_with_one_line(programs, tmp_path):
    """A NaN loss at micro-batch 50 (step 13) on every attempt: `schedc run
    --max-restarts 1` gives up after one restart, naming the step and cause; the
    terminal shows the resume line."""
    prog, _ = programs[(2, "1f1b")]
    cmd = [sys.executable, "-m", "schedc", "run", str(prog), *RUN, "--save-dir",
           str(tmp_path / "ck"), "--max-restarts", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCHEDC_INJECT": "nan-loss@50"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert proc.returncode == 3, proc.stderr[-4000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("schedc: error: gave up after --max-restarts 1: every one of 2 "
                           "attempts died at step 13: [rank 1] "), last
    assert "non-finite loss (NaN or Inf) at step 13" in last, last
    assert _resumed_from(proc.stderr) == [10]
