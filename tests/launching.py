"""Launch helpers shared by the runtime, data-parallel and reliability tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_jobs(worker: Path, jobs: dict[str, list[str]], nproc: int, out: Path, *,
                  env: dict[str, str] | None = None, timeout: float = 600) -> None:
    """Run `worker JOBS_FILE OUT` under one torchrun launch (one process group,
    every job in order); raise with torchrun's stderr if it fails."""
    out.mkdir(parents=True, exist_ok=True)
    jobs_file = out / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           f"--nproc-per-node={nproc}", "--master-addr", "127.0.0.1",
           f"--master-port={free_port()}", str(worker), str(jobs_file), str(out)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
