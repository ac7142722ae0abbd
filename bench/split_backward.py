"""I + W against B, from the runtime's own per-op times (`--costs-out`).

    python bench/split_backward.py [--model gpt-mini --steps 6 --repeats 3]

Compiles 1F1B (F, B) and ZB-H1 (F, I, W) for 2 stages, m = 8, runs both
in-process (one torch thread) with `--costs-out`, alternating `--repeats`
times so that machine load hits both alike, and prints per stage the median
op times and `(I+W)/B`. Each run's op times are divided by its own F time
first (`/F` columns), which cancels load that differs between runs. Stage 0
has no input gradient: its I runs the whole backward and its W is empty
(docs/runtime.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.local import build_local
from schedc.runtime.session import train

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec


def _costs(program_dir: Path, out: Path, a: argparse.Namespace) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    cfg = config_from_args(parser.parse_args([
        str(program_dir), "--model", a.model, "--micro-batch-size", str(a.micro_batch_size),
        "--seq-len", str(a.seq_len), "--threads", "1", "--steps", str(a.steps), "--quiet",
        "--lr", "1e-4", "--costs-out", str(out)]))
    train(build_local(cfg))
    return json.loads(out.read_text())["stages"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt-mini")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    runs: dict[str, list[list[dict[str, float]]]] = {"1f1b": [], "zb-h1": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in runs:
            compiled = compile_spec(preset_spec(name, stages=2, microbatches=8).validate())
            write_programs(Path(tmp) / name, compiled.manifest, compiled.programs)
        for k in range(a.repeats):
            for name in runs:
                runs[name].append(_costs(Path(tmp) / name, Path(tmp) / f"{name}{k}.json", a))
    print(f"model {a.model}, 2 stages, m=8, micro-batch {a.micro_batch_size} x {a.seq_len}, "
          f"{a.steps} steps x {a.repeats} runs each, 1 thread; medians, ms")

    def med(name: str, s: int, op: str, per_f: bool = False) -> float:
        vals = [r[s].get(op, 0.0) / (r[s]["F"] if per_f else 1e-3) for r in runs[name]]
        return statistics.median(vals)

    print(f"{'stage':>5} {'F':>8} {'B':>8} {'F(zb)':>8} {'I':>8} {'W':>8} {'I+W':>8} "
          f"{'B/F':>6} {'(I+W)/F':>8} {'(I+W)/B':>8}")
    for s in range(2):
        iw = med("zb-h1", s, "I") + med("zb-h1", s, "W")
        b_f = med("1f1b", s, "B", True)
        iw_f = statistics.median(
            (r[s].get("I", 0.0) + r[s]["W"]) / r[s]["F"] for r in runs["zb-h1"])
        print(f"{s:5d} {med('1f1b', s, 'F'):8.2f} {med('1f1b', s, 'B'):8.2f} "
              f"{med('zb-h1', s, 'F'):8.2f} {med('zb-h1', s, 'I'):8.2f} "
              f"{med('zb-h1', s, 'W'):8.2f} {iw:8.2f} {b_f:6.2f} {iw_f:8.2f} {iw_f / b_f:8.3f}")


if __name__ == "__main__":
    main()
