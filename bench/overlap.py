"""Step time with and without overlap: programs proven under K = 1 against the
same schedule proven under K posted batches with early receives
(docs/programs.md, "Overlap"), each run by `schedc run` over gloo.

    .venv/bin/python bench/overlap.py [--presets 1f1b zb-h1] [--ranks 2] [--k 2] [--repeat 3]

Prints per preset the median step time (after the first two steps) of each
repetition, K = 1 and K alternating, and the line `overlap NAME K=k/K=1 X`
(the median of the per-repetition ratios, with their spread). Figures are
only meaningful on a quiet machine. About 1 minute per preset and repetition
on 2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from schedc.cli import main as schedc


def step_time(prog: Path, args: argparse.Namespace, work: Path) -> float:
    """Median step time of one `schedc run` (steps 3..N)."""
    metrics = work / "m.jsonl"
    metrics.unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "schedc", "run", str(prog), "--model", args.model,
         "--micro-batch-size", str(args.micro_batch_size), "--seq-len", str(args.seq_len),
         "--threads", "1", "--steps", str(args.steps), "--metrics", str(metrics), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    if run.returncode != 0:  # schedc run named the failed rank and kept every rank's log
        raise SystemExit(f"overlap: `schedc run {prog.name}` failed (exit {run.returncode}); "
                         "its line above names the failed rank and the log file kept")
    times = [json.loads(line)["time_s"] for line in metrics.read_text().splitlines()]
    steps = [times[i + 1] - times[i] for i in range(1, len(times) - 1)]  # from step 3 on
    return statistics.median(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["1f1b", "zb-h1"])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--k", type=int, default=2, help="posted batches to compare with K = 1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--model", default="gpt-mini")
    ap.add_argument("--micro-batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    args = ap.parse_args()
    if args.steps < 4:
        raise SystemExit("--steps must be at least 4 (two warm-up steps, then two timed)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.presets:
            dirs = {}
            for k in (1, args.k):
                dirs[k] = work / f"{name}-k{k}"
                schedc(["compile", "--preset", name, "--stages", str(args.ranks),
                        "--microbatches", str(args.microbatches), "--posted-batches", str(k),
                        "-o", str(dirs[k]), "-q"])
            ratios = []
            for rep in range(args.repeat):
                t1 = step_time(dirs[1], args, work)
                tk = step_time(dirs[args.k], args, work)
                ratios.append(tk / t1)
                print(f"{name} repetition {rep + 1}: step K=1 {t1 * 1e3:.2f} ms, "
                      f"K={args.k} {tk * 1e3:.2f} ms", flush=True)
            spread = f" (min {min(ratios):.3f}, max {max(ratios):.3f})" if len(ratios) > 1 else ""
            print(f"overlap {name} K={args.k}/K=1 {statistics.median(ratios):.3f}{spread}")


if __name__ == "__main__":
    main()
