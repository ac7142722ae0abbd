"""bench/launch_overhead.py runs (in a process of its own: it stubs the kernels' launches)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "launch_overhead.py"


def test_prints_every_call():
    out = subprocess.run([sys.executable, str(SCRIPT), "--calls", "20", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("accumulate bf16", "adamw_step", "STEP (adamw +stash +1/count)", "torch add_"):
        assert name in out.stdout
