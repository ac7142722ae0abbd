"""How long `schedc run` takes to end a run one of whose ranks freezes.

    .venv/bin/python bench/frozen_rank.py [--timeout 6] [--ranks 4] [--repeat 3]

Compiles 1F1B over R ranks, starts `schedc run` (torchrun, gloo, gpt-tiny),
waits until the first step's loss is written, stops one middle rank with
SIGSTOP, and measures the time from the stop to `schedc run`'s exit, and its
status (124: a wait outlived --timeout). The figure goes to
docs/reliability.md. About 1 minute per repetition on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schedc.cli import main as schedc
from schedc.cli.torchrun_launch import _children


def once(prog: Path, timeout: float, work: Path) -> tuple[float, int, str]:
    metrics = work / "m.jsonl"
    metrics.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "schedc", "run", str(prog), "--model", "gpt-tiny",
         "--micro-batch-size", "2", "--seq-len", "16", "--threads", "1", "--steps", "2000",
         "--timeout", str(timeout), "--metrics", str(metrics), "--quiet"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while not (metrics.exists() and metrics.read_text().strip()):
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before its first step: {proc.stderr.read()}")
        time.sleep(0.05)
    workers = sorted(pid for t in _children(proc.pid) for pid in _children(t))
    victim = workers[len(workers) // 2]
    os.kill(victim, signal.SIGSTOP)
    t0 = time.monotonic()
    _, err = proc.communicate()
    elapsed = time.monotonic() - t0
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return elapsed, proc.returncode, err.strip().splitlines()[-1]


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=6.0)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prog = work / "p"
        schedc(["compile", "--preset", "1f1b", "--stages", str(args.ranks), "--microbatches",
                "8", "-o", str(prog), "-q"])
        for _ in range(args.repeat):
            elapsed, code, line = once(prog, args.timeout, work)
            print(f"--timeout {args.timeout:g}, {args.ranks} ranks: schedc run ended "
                  f"{elapsed:.2f} s after a rank froze, status {code}: {line[:160]}")


if __name__ == "__main__":
    run()
