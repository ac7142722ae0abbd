"""How long `schedc tune` takes: 8 ranks, every family, the built-in gpt-1b on
h100 estimate (no run needed). Issue 16's target: >= 50 candidates in <= 60 s.

    python bench/tune_speed.py                  # one process, no cache
    python bench/tune_speed.py --jobs 2         # two worker processes
    python bench/tune_speed.py --ranks 4 --batch 32

Prints the candidates (and how many compiled, were refused or dropped), the
compiles run and the wall time; exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from schedc.presets import PRESETS
from schedc.tune import Query, estimate, tune
from schedc.tune.cache import CompileCache

TARGET_CANDIDATES, TARGET_SECONDS = 50, 60.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=8)
    p.add_argument("--batch", type=int, default=64, help="global batch (samples)")
    p.add_argument("--model", default="gpt-1b")
    p.add_argument("--hardware", default="h100")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--max-microbatches", type=int, default=None)
    p.add_argument("--warm-cache", action="store_true",
                   help="also time a second tune that reads a disk cache the first one wrote")
    args = p.parse_args(argv)
    profile = estimate(args.model, args.hardware, args.ranks)
    query = Query(ranks=args.ranks, batch=args.batch, memory=profile.memory_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        cache = CompileCache(tmp) if args.warm_cache else None
        start = time.perf_counter()
        result = tune(query, profile, list(PRESETS), args.max_microbatches, jobs=args.jobs,
                      cache=cache)
        seconds = time.perf_counter() - start
        report(result, seconds, "cold")
        if args.warm_cache:
            start = time.perf_counter()
            again = tune(query, profile, list(PRESETS), args.max_microbatches,
                         jobs=args.jobs, cache=CompileCache(tmp))
            report(again, time.perf_counter() - start, "warm cache")
    evaluated = sum(n for status, n in result.counts.items()
                    if status not in ("refused", "skipped"))
    ok = evaluated >= TARGET_CANDIDATES and seconds <= TARGET_SECONDS
    print(f"target: >= {TARGET_CANDIDATES} candidates compiled and evaluated in <= "
          f"{TARGET_SECONDS:g} s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def report(result, seconds: float, what: str) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    best = result.best.candidate.label() if result.best else "none"
    compiling = sum(r.seconds[0] for r in result.rows)
    simulating = sum(r.seconds[1] for r in result.rows)
    print(f"{what}: {len(result.rows)} candidates ({counts}), {result.compiled} compiles, "
          f"{result.cached} from the cache, {seconds:.1f} s ({compiling:.1f} s compiling, "
          f"{simulating:.1f} s simulating); best {best}")


if __name__ == "__main__":
    sys.exit(main())
