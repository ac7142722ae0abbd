"""Whole-process compile speed of schedc, against PyTorch's schedule generation
and across every preset.

    python bench/compile_speed.py                          # interleaved 1F1B vs PyTorch
    python bench/compile_speed.py --repeats 5 --sizes 32x256
    python bench/compile_speed.py --all-presets            # every preset, 4 sizes, 3 runs
    python bench/compile_speed.py --all-presets --sizes 8x64 16x128 --repeats 1
    python bench/compile_speed.py --all-presets --write    # also rewrite BENCHMARKS.md's table
    python bench/compile_speed.py --against-1f1b paci amdp --sizes 32x256 --repeats 5

schedc: `python -m schedc compile --preset P ...` in a fresh process (parse,
order, lower, verify, analyse, write JSON), wall time and peak resident memory
(ru_maxrss of that process). Sizes are RANKSxMICROBATCHES; interleaved 1F1B
and zbv run 2 chunks per rank (stages = 2 x ranks), every other preset one
stage per rank. PyTorch:
`get_schedule_ops(ScheduleInterleaved1F1B, ..., with_comms=True)` in a fresh
process (IR generation plus communication lowering), wall time.
Both include interpreter start and imports. A run longer than --timeout is
stopped and reported as such, and the preset's larger sizes are then not run:
--all-presets takes at most presets x sizes x repeats x timeout seconds, in
practice far less (see BENCHMARKS.md for the last run's wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = ["gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "zbv", "chimera", "pipedream",
           "pipedream-2bw", "paci", "amdp"]
TWO_CHUNKS = ("interleaved-1f1b", "zbv")  # two stages per rank
ALL_SIZES = ["8x64", "16x128", "32x256", "64x1024"]
BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
BEGIN, END = "<!-- compile-table:begin -->", "<!-- compile-table:end -->"

TORCH_SNIPPET = """
import sys, time
from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops
from torch.distributed.pipelining.schedules import ScheduleInterleaved1F1B
t = time.perf_counter()
ops = get_schedule_ops(ScheduleInterleaved1F1B, {ranks}, {mbs}, num_stages_per_rank=2,
                       with_comms=True)
print(sum(1 for r in ops for a in r if a is not None), time.perf_counter() - t)
"""

# Runs the schedc CLI in this process, then reports its own peak memory (KiB).
SCHEDC_SNIPPET = """
import resource, runpy, sys
sys.argv = ["schedc", *sys.argv[1:]]
try:
    runpy.run_module("schedc", run_name="__main__")
except SystemExit as exc:
    if exc.code not in (None, 0):
        raise
use = resource.getrusage(resource.RUSAGE_SELF)
print("maxrss", use.ru_maxrss, "cpu", use.ru_utime + use.ru_stime, file=sys.stderr)
"""


def _run(cmd: list[str], timeout: float | None = None) -> tuple[float, str, str]:
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t, done.stdout, done.stderr


def _preset_args(preset: str, ranks: int, mbs: int) -> list[str]:
    stages = 2 * ranks if preset in TWO_CHUNKS else ranks
    return ["compile", "--preset", preset, "--stages", str(stages), "--ranks", str(ranks),
            "--microbatches", str(mbs), "-q"]


def schedc_once(preset: str, ranks: int, mbs: int, timeout: float | None = None
                ) -> tuple[float, int, float, float]:
    """(wall s, instructions written, peak MB, CPU s) of one whole-process compile."""
    with tempfile.TemporaryDirectory() as d:
        wall, _, err = _run([sys.executable, "-c", SCHEDC_SNIPPET,
                             *_preset_args(preset, ranks, mbs), "-o", d], timeout)
        instrs = sum(len(sec) for f in Path(d).glob("rank*.json")
                     for k, sec in json.loads(f.read_text()).items()
                     if k in ("prologue", "body", "epilogue"))
    match = re.search(r"maxrss (\d+) cpu ([\d.]+)", err)
    peak, cpu = (int(match.group(1)) / 1024, float(match.group(2))) if match else (0.0, 0.0)
    return wall, instrs, peak, cpu


def torch_once(ranks: int, mbs: int) -> tuple[float, int, float]:
    wall, out, _ = _run([sys.executable, "-c", TORCH_SNIPPET.format(ranks=ranks, mbs=mbs)])
    n, inner = out.split()
    return wall, int(n), float(inner)


def _sizes(sizes: list[str]) -> list[tuple[str, int, int]]:
    return [(s, *map(int, s.split("x"))) for s in sizes]


def against_torch(args: argparse.Namespace) -> None:
    print(f"{'size':>10} {'schedc s':>9} {'instr':>8} {'instr/s':>9} "
          f"{'torch s':>8} {'(gen only)':>10} {'actions':>8} {'schedc/torch':>12}")
    for size, ranks, mbs in _sizes(args.sizes or ["32x256", "64x1024"]):
        ours = [schedc_once("interleaved-1f1b", ranks, mbs) for _ in range(args.repeats)]
        theirs = [torch_once(ranks, mbs) for _ in range(args.repeats)]
        s_wall = statistics.median(w for w, *_ in ours)
        t_wall = statistics.median(w for w, _, _ in theirs)
        t_inner = statistics.median(i for _, _, i in theirs)
        instrs, actions = ours[0][1], theirs[0][1]
        print(f"{size:>10} {s_wall:9.2f} {instrs:8d} {instrs / s_wall:9.0f} "
              f"{t_wall:8.2f} {t_inner:10.2f} {actions:8d} {s_wall / t_wall:11.2f}x")


def _cell(runs: list[tuple[float, int, float, float]] | str) -> str:
    if isinstance(runs, str):
        return runs  # "timeout" or the compile's failure
    walls = [w for w, *_ in runs]
    peak = max(r[2] for r in runs)
    cpu = statistics.median(r[3] for r in runs)
    spread = max(walls) - min(walls)
    return f"{statistics.median(walls):.2f} s ±{spread / 2:.2f} (cpu {cpu:.2f} s, {peak:.0f} MB)"


def all_presets(args: argparse.Namespace) -> str:
    sizes = _sizes(args.sizes or ALL_SIZES)
    started = time.perf_counter()
    loads: list[float] = []
    rows = []
    medians: dict[tuple[str, str], float] = {}  # (preset, size) -> median wall s
    for preset in args.presets or PRESETS:
        cells: list[str] = []
        for size, ranks, mbs in sizes:
            if cells and cells[-1] in ("timeout", "not run"):
                cells.append("not run")  # a smaller size already timed out
                print(f"{preset:>17} {size:>8}: not run", file=sys.stderr, flush=True)
                continue
            runs: list[tuple[float, int, float, float]] | str = []
            for _ in range(args.repeats):
                loads.append(os.getloadavg()[0])
                try:
                    runs.append(schedc_once(preset, ranks, mbs, args.timeout))
                except subprocess.TimeoutExpired:
                    runs = "timeout"
                    break
                except subprocess.CalledProcessError as exc:
                    runs = f"failed (exit {exc.returncode})"
                    break
            cells.append(_cell(runs))
            if not isinstance(runs, str):
                medians[(preset, size)] = statistics.median(w for w, *_ in runs)
            print(f"{preset:>17} {size:>8}: {cells[-1]}", file=sys.stderr, flush=True)
        rows.append(f"| {preset} | " + " | ".join(cells) + " |")
    total = time.perf_counter() - started
    header = "| preset | " + " | ".join(s for s, _, _ in sizes) + " |"
    table = "\n".join([header, "|---" * (len(sizes) + 1) + "|", *rows])
    note = (f"Median wall time of {args.repeats} whole-process runs (± half the spread); "
            f"in parentheses the median CPU time (user + system, less sensitive to load) "
            f"and the peak resident memory; runs over {args.timeout:.0f} s stopped "
            f"(\"not run\": a smaller size timed out). "
            f"Load average (1 min) during the runs: {min(loads):.2f} to {max(loads):.2f} "
            f"on {os.cpu_count()} CPUs. Benchmark wall time {total:.0f} s. "
            f"Command: `python bench/compile_speed.py --all-presets --sizes "
            f"{' '.join(s for s, _, _ in sizes)} --repeats {args.repeats}`.")
    return f"{table}\n\n{note}\n\n{_ratios(medians, sizes, args.presets or PRESETS)}"


def _ratios(medians: dict[tuple[str, str], float], sizes: list[tuple[str, int, int]],
            presets: list[str]) -> str:
    """Median wall time as a multiple of 1F1B's at the same size (the issue's
    target: at most 3x at 32x256)."""
    header = "| x 1F1B's time | " + " | ".join(s for s, _, _ in sizes) + " |"
    rows = []
    for preset in presets:
        cells = []
        for size, _, _ in sizes:
            ours, base = medians.get((preset, size)), medians.get(("1f1b", size))
            cells.append(f"{ours / base:.2f}x" if ours and base else "-")
        rows.append(f"| {preset} | " + " | ".join(cells) + " |")
    return "\n".join([header, "|---" * (len(sizes) + 1) + "|", *rows])


def against_1f1b(args: argparse.Namespace) -> None:
    """Each preset's compile as a multiple of 1F1B's, the two run in turn
    (1F1B, preset, 1F1B, ...) so that both see the same machine: the
    per-pair ratios' median and range."""
    for size, ranks, mbs in _sizes(args.sizes or ["32x256"]):
        for preset in args.against_1f1b:
            ratios = []
            for _ in range(args.repeats):
                base = schedc_once("1f1b", ranks, mbs, args.timeout)[0]
                ratios.append(schedc_once(preset, ranks, mbs, args.timeout)[0] / base)
            print(f"{preset:>17} {size:>8}: {statistics.median(ratios):.2f}x 1F1B "
                  f"(pairs {min(ratios):.2f}x to {max(ratios):.2f}x, {args.repeats} pairs, "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)


def write_section(text: str) -> None:
    """Replace the table between the compile-table markers of BENCHMARKS.md."""
    doc = BENCHMARKS.read_text()
    if BEGIN not in doc:
        raise SystemExit(f"{BENCHMARKS}: no {BEGIN} marker")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    BENCHMARKS.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", help="RANKSxMICROBATCHES (default: per mode)")
    ap.add_argument("--all-presets", action="store_true",
                    help="time every preset (no PyTorch comparison)")
    ap.add_argument("--presets", nargs="+", choices=PRESETS, help="with --all-presets: these")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per compile")
    ap.add_argument("--write", action="store_true",
                    help="with --all-presets: rewrite BENCHMARKS.md's compile table")
    ap.add_argument("--against-1f1b", nargs="+", choices=PRESETS, metavar="PRESET",
                    help="these presets' compile time over 1F1B's, run in alternate pairs")
    args = ap.parse_args()
    if args.against_1f1b:
        against_1f1b(args)
        return
    if not args.all_presets:
        against_torch(args)
        return
    text = all_presets(args)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
