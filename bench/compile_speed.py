"""Whole-process compile speed of schedc against PyTorch's schedule generation.

    python bench/compile_speed.py                 # both sizes, median of 3 runs
    python bench/compile_speed.py --repeats 5 --sizes 32x256

schedc: `python -m schedc compile --preset interleaved-1f1b ...` in a fresh
process (parse, order, lower, verify, analyse, write JSON), wall time.
PyTorch: `get_schedule_ops(ScheduleInterleaved1F1B, ..., with_comms=True)` in
a fresh process (IR generation plus communication lowering), wall time. Both
include interpreter start and imports. Prints instructions/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCH_SNIPPET = """
import sys, time
from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops
from torch.distributed.pipelining.schedules import ScheduleInterleaved1F1B
t = time.perf_counter()
ops = get_schedule_ops(ScheduleInterleaved1F1B, {ranks}, {mbs}, num_stages_per_rank=2,
                       with_comms=True)
print(sum(1 for r in ops for a in r if a is not None), time.perf_counter() - t)
"""


def _run(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def schedc_once(ranks: int, mbs: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d:
        wall, _ = _run([sys.executable, "-m", "schedc", "compile", "--preset",
                        "interleaved-1f1b", "--stages", str(2 * ranks), "--ranks", str(ranks),
                        "--microbatches", str(mbs), "-o", d, "-q"])
        instrs = sum(len(sec) for f in Path(d).glob("rank*.json")
                     for k, sec in json.loads(f.read_text()).items()
                     if k in ("prologue", "body", "epilogue"))
    return wall, instrs


def torch_once(ranks: int, mbs: int) -> tuple[float, int, float]:
    wall, out = _run([sys.executable, "-c", TORCH_SNIPPET.format(ranks=ranks, mbs=mbs)])
    n, inner = out.split()
    return wall, int(n), float(inner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", default=["32x256", "64x1024"],
                    help="RANKSxMICROBATCHES, 2 chunks per rank")
    args = ap.parse_args()
    print(f"{'size':>10} {'schedc s':>9} {'instr':>8} {'instr/s':>9} "
          f"{'torch s':>8} {'(gen only)':>10} {'actions':>8} {'schedc/torch':>12}")
    for size in args.sizes:
        ranks, mbs = map(int, size.split("x"))
        ours = [schedc_once(ranks, mbs) for _ in range(args.repeats)]
        theirs = [torch_once(ranks, mbs) for _ in range(args.repeats)]
        s_wall = statistics.median(w for w, _ in ours)
        t_wall = statistics.median(w for w, _, _ in theirs)
        t_inner = statistics.median(i for _, _, i in theirs)
        instrs, actions = ours[0][1], theirs[0][1]
        print(f"{size:>10} {s_wall:9.2f} {instrs:8d} {instrs / s_wall:9.0f} "
              f"{t_wall:8.2f} {t_inner:10.2f} {actions:8d} {s_wall / t_wall:11.2f}x")


if __name__ == "__main__":
    main()
