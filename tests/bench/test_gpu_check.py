"""bench/gpu_check.sh, the GPU check, as far as a CPU can check it: its syntax, and
its --dry-run (every part of it on CPU with tiny sizes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    return env


def test_syntax():
    out = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_dry_run_runs_every_part_on_cpu():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                         env=_env(), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "TRITON_INTERPRET=0" in text  # the compiled kernel tests, named not run
    assert "STEP adamw +stash +1/count" in text  # bench/kernels.py's fused training STEP
    assert "zb-h1" in text and " ok" in text  # a preset against the CPU run
    for name in ("1f1b", "zb-h1", "paci"):
        assert f"{name}/plain" in text  # step time against plain training
    assert "torchrun: 10 steps" in text  # schedc run under torchrun (gloo here)
    assert text.rstrip().endswith("gpu_check: all parts passed")


def test_without_a_gpu_it_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real check would run")
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env(),
                         timeout=120)
    assert out.returncode == 3
    assert "no CUDA device" in out.stderr


def test_bad_argument_is_refused():
    out = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr
