"""Simulator speed on a large asynchronous schedule.

    python bench/simulate_speed.py                 # PACI, 32 ranks x 256 mbs x 10 steps
    python bench/simulate_speed.py --preset pipedream-2bw --ranks 16

Compiles the preset once (not timed), then times `simulate` + `figures` and
prints instructions simulated per second, the headline figure.
"""

from __future__ import annotations

import argparse
import time

from schedc.compiler import compile_spec
from schedc.presets import preset_spec
from schedc.simulate import figures, simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paci")
    p.add_argument("--ranks", type=int, default=32)
    p.add_argument("--microbatches", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    t0 = time.perf_counter()
    compiled = compile_spec(preset_spec(args.preset, stages=args.ranks,
                                        microbatches=args.microbatches))
    t_compile = time.perf_counter() - t0
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        sim = simulate(compiled.manifest, list(compiled.programs), steps=args.steps)
        fig = figures(sim)
        best = min(best, time.perf_counter() - t0)
    instrs = sum(len(s) for s in sim.timeline.streams)
    print(f"{args.preset}: {args.ranks} ranks x {args.microbatches} micro-batches x "
          f"{args.steps} steps: {instrs} instructions")
    print(f"compile {t_compile:.2f} s (not timed); simulate + figures best of "
          f"{args.repeat}: {best:.2f} s = {instrs / best / 1e6:.2f} M instructions/s")
    print(f"makespan {fig.makespan:g}, steady-state throughput "
          f"{fig.steady_state_throughput:.4f} mb/unit, bubble {fig.bubble_ratio:.4f}")


if __name__ == "__main__":
    main()
