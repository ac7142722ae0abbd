"""Helpers for the reliability tests: compile presets, launch ranks by hand
(no torchrun, so nothing but our own watchdog stops them), mutate program
directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launching import free_port

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16", "--threads", "1",
        "--quiet", "--lr", "0.01"]


def compile_preset(directory: Path, name: str, **kw) -> Path:
    compiled = compile_spec(preset_spec(name, **kw).validate())
    write_programs(directory, compiled.manifest, compiled.programs)
    return directory


@dataclass
class Rank:
    rank: int
    proc: subprocess.Popen
    log: Path
    ended: float | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def launch(world: int, args: list[str], out: Path, env: dict | None = None) -> list[Rank]:
    """`world` processes of `python -m schedc.runtime.launch ARGS`, like torchrun
    would start them, each with its stderr in out/rank<g>.log."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ranks = []
    for g in range(world):
        log = out / f"rank{g}.log"
        e = {**os.environ, "RANK": str(g), "LOCAL_RANK": str(g), "WORLD_SIZE": str(world),
             "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", **(env or {})}
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "schedc.runtime.launch", *args],
                                    stdout=f, stderr=subprocess.STDOUT, env=e, cwd=ROOT)
        ranks.append(Rank(g, proc, log))
    return ranks


def wait_all(ranks: list[Rank], limit: float) -> None:
    """Wait up to `limit` s for every process; record when each ended; kill leftovers."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(r.ended is None for r in ranks):
        for r in ranks:
            if r.ended is None and r.proc.poll() is not None:
                r.ended = time.monotonic()
        time.sleep(0.05)
    for r in ranks:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGKILL)
            r.proc.wait()


def kill_all(ranks: list[Rank]) -> None:
    for r in ranks:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGKILL)
            r.proc.wait()
