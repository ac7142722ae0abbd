"""Checkpoints: corrupted, truncated or partial ones are refused with a message
and the newest valid one is used; a process killed during a save resumes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from reliability_testing import ROOT, TINY, compile_preset
from schedc.runtime import checkpoint

from schedc.errors import UserError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Checkpoints after steps 1, 2, 3 of a 2-rank 1F1B run (in-process)."""
    root = tmp_path_factory.mktemp("ck")
    d = compile_preset(root / "prog", "1f1b", stages=2, microbatches=4)
    _run(d, "--steps", "3", "--save-every", "1", "--save-dir", str(root / "ck"))
    return d, root / "ck"


def _run(d, *extra, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "schedc", "run", str(d), "--local", *TINY, *extra]
    import os
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_intact_checkpoints_validate(saved):
    _, ck = saved
    path, meta = checkpoint.find(ck)
    assert path.name == "step-00000003" and meta["steps_done"] == 3
    assert set(meta["files"]) == {"rank0.pt", "rank1.pt"}


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "meta", "meta-edit"])
def test_damaged_newest_checkpoint_falls_back(saved, tmp_path, damage):
    _, ck = saved
    ck = _copy(ck, tmp_path / "ck")
    newest = ck / "step-00000003"
    f = newest / "rank1.pt"
    if damage == "flip":
        blob = bytearray(f.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        f.write_bytes(bytes(blob))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "delete":
        f.unlink()
    elif damage == "meta":
        (newest / "meta.json").unlink()
    else:
        (newest / "meta.json").write_text((newest / "meta.json").read_text().replace(
            '"steps_done": 3', '"steps_done": 4'))
    warnings = []
    path, meta = checkpoint.find(ck, warn=warnings.append)
    assert path.name == "step-00000002" and meta["steps_done"] == 2
    assert len(warnings) == 1 and "step-00000003" in warnings[0], warnings
    with pytest.raises(UserError, match="refused"):
        checkpoint.find(newest)  # named directly: refused, no silent fallback


def test_no_valid_checkpoint_is_one_message(saved, tmp_path):
    _, ck = saved
    ck = _copy(ck, tmp_path / "ck")
    for step in ck.glob("step-*"):
        (step / "rank0.pt").write_bytes(b"")
    with pytest.raises(UserError, match="no valid checkpoint"):
        checkpoint.find(ck)


def test_process_killed_during_a_save_resumes_from_the_previous(saved, tmp_path):
    d, _ = saved
    ck = tmp_path / "ck"
    args = ["--save-every", "1", "--save-dir", str(ck)]
    died = _run(d, "--steps", "3", *args, env={"SCHEDC_INJECT": "die-in-save@2"})
    assert died.returncode == 137
    assert (ck / "step-00000002" / "rank0.pt").exists()  # half a file, under its final name
    assert (ck / "latest").read_text() == "step-00000001"
    resumed = _run(d, "--steps", "3", "--save-every", "1", "--resume", str(ck),
                   "--metrics", str(tmp_path / "m.jsonl"))
    assert resumed.returncode == 0, resumed.stderr
    assert "step-00000002" in resumed.stderr and "refused" in resumed.stderr
    assert checkpoint.find(ck)[0].name == "step-00000003"
    # Resumed from step 1: the result equals an uninterrupted run's.
    whole = tmp_path / "whole"
    assert _run(d, "--steps", "3", "--save-every", "1", "--save-dir", str(whole)).returncode == 0
    for g in range(2):
        a = torch.load(ck / "step-00000003" / f"rank{g}.pt", weights_only=True)
        b = torch.load(whole / "step-00000003" / f"rank{g}.pt", weights_only=True)
        assert torch.equal(a[f"0:{g}"]["current"], b[f"0:{g}"]["current"])


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_run(saved, tmp_path):
    """SIGKILL a run that saves every step at 4 moments; each time resume works
    from the newest valid checkpoint."""
    import os
    import random
    import signal
    import time

    d, _ = saved
    ck = tmp_path / "ck"
    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        cmd = [sys.executable, "-m", "schedc", "run", str(d), "--local", *TINY, "--steps", "2000",
               "--save-every", "1", "--save-dir" if not ck.exists() else "--resume", str(ck)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        time.sleep(rng.uniform(2.5, 5.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if ck.exists() and any(ck.glob("step-*/meta.json")):
            checkpoint.find(ck, warn=lambda _: None)  # always a valid one
    assert kills >= 2
