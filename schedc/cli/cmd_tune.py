"""`schedc tune`: the best schedule for a cost profile, under memory and staleness caps.

    schedc tune --costs costs.json --profile-mb-size 4 --ranks 4 --global-batch 64 \\
        --memory 40GiB --max-delay 1 -o out/tuned
    schedc tune --model gpt-1b --hardware h100 --ranks 8 --global-batch 64 -o out/tuned

docs/tune.md is the reference (search space, cost model, limits).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from schedc.errors import UserError
from schedc.presets import PRESETS
from schedc.tune.cache import CompileCache
from schedc.tune.evaluate import Query
from schedc.tune.models import HARDWARE, MODELS, estimate
from schedc.tune.output import write_outputs
from schedc.tune.plot import svg
from schedc.tune.profile import Profile, load_measured
from schedc.tune.search import DEFAULT_CHUNKS, tune
from schedc.tune.space import check_families
from schedc.tune.table import fmt_bytes, parse_size, render, summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="pick the best schedule for a cost profile",
        description="Enumerate schedules (family, micro-batches, chunks, directions, "
                    "look-ahead, I/W split), compile and simulate each under a cost profile, "
                    "drop those over the memory or staleness caps, rank the rest by predicted "
                    "throughput and write the best one's programs. See docs/tune.md.")
    src = p.add_argument_group("cost profile (one of)")
    src.add_argument("--costs", metavar="FILE", help="measured profile (runtime --costs-out); "
                     "takes precedence over --model")
    src.add_argument("--profile-mb-size", type=int, metavar="N",
                     help="samples per micro-batch the profile was measured at (default: its "
                          "source.micro_batch_size)")
    src.add_argument("--model", metavar="NAME",
                     help=f"built-in estimate, no run needed: {', '.join(MODELS)}")
    src.add_argument("--hardware", metavar="NAME",
                     help=f"accelerator of --model: {', '.join(HARDWARE)} (default h100)")
    p.add_argument("--ranks", type=int, required=True, help="pipeline ranks R")
    p.add_argument("--global-batch", type=int, required=True, metavar="B",
                   help="samples per optimizer step (over all --dp replicas)")
    p.add_argument("--memory", metavar="SIZE",
                   help="cap on a rank's peak memory, e.g. 40GiB (default: none, or the "
                        "--hardware's memory)")
    p.add_argument("--max-delay", type=int, metavar="D", help="cap on max delay (steps)")
    p.add_argument("--max-inconsistency", type=int, metavar="I",
                   help="cap on max inconsistency (versions)")
    p.add_argument("--families", nargs="+", metavar="NAME",
                   help=f"families to try (default all): {', '.join(PRESETS)}")
    p.add_argument("--dp", type=int, default=1, metavar="D",
                   help="data-parallel replicas (the batch is split over them)")
    p.add_argument("--max-microbatches", type=int, metavar="M",
                   help="largest m tried (default 4 x ranks)")
    p.add_argument("--max-stages", type=int, metavar="N",
                   help="the model's layers: no candidate has more stages (default: the "
                        "--model's layers; none for --costs)")
    p.add_argument("--chunks", default=",".join(map(str, DEFAULT_CHUNKS)), metavar="V,..",
                   help="chunks per rank tried for interleaved-1f1b (default 2,4)")
    p.add_argument("--plot", metavar="FILE.svg", help="throughput against staleness, "
                                                      "Pareto front marked")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="write the best programs, costs.json and tune.json here")
    p.add_argument("--top", type=int, default=20, metavar="N", help="rows printed (default 20)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes")
    p.add_argument("--cache", metavar="DIR", help="keep compiled candidates here across tunes")
    p.add_argument("--search-compiles", action="store_true",
                   help="also compile candidates only the compiler's search builds (AMDP "
                        "down,up where its construction does not apply: slow)")
    p.add_argument("--time", action="store_true", help="print how long the tune took")
    p.set_defaults(func=run)


def _size(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UserError(f"--memory: {exc}") from None


def _families(names: list[str] | None) -> list[str]:
    if not names:
        return list(PRESETS)
    try:
        return check_families([n for name in names for n in name.split(",") if n])
    except ValueError as exc:
        raise UserError(f"--families: {exc}") from None


def _chunks(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        values = ()
    if not values or min(values) < 2:
        raise UserError(f"--chunks: expected integers >= 2 separated by commas, got {text!r}")
    return values


def profile_from_args(args: argparse.Namespace) -> Profile:
    if args.costs:
        if args.model or args.hardware:
            print("note: --costs given: the measured profile takes precedence over "
                  "--model/--hardware")
        return load_measured(args.costs, args.profile_mb_size, args.ranks)
    if args.model:
        return estimate(args.model, args.hardware or "h100", args.ranks, args.dp)
    if args.hardware:
        raise UserError("--hardware needs --model (or give a measured profile with --costs)")
    raise UserError("no cost profile: give --costs FILE (measured) or --model NAME "
                    "[--hardware NAME] (estimate)")


def run(args: argparse.Namespace) -> int:
    families = _families(args.families)
    chunks = _chunks(args.chunks)
    for flag in ("top", "jobs", "max_microbatches", "max_stages", "max_delay",
                 "max_inconsistency"):
        value = getattr(args, flag)
        low = 0 if flag in ("max_delay", "max_inconsistency") else 1
        if value is not None and value < low:
            raise UserError(f"--{flag.replace('_', '-')} must be at least {low}, got {value}")
    memory = _size(args.memory)
    profile = profile_from_args(args)
    if args.max_stages is not None:
        profile = replace(profile, max_stages=args.max_stages)
    memory = memory if memory is not None else profile.memory_bytes
    query = Query(args.ranks, args.global_batch, args.dp, memory, args.max_delay,
                  args.max_inconsistency)
    cache = CompileCache(args.cache)
    result = tune(query, profile, families, args.max_microbatches, chunks, args.jobs, cache,
                  args.search_compiles)
    print(_heading(result))
    print(summary(result))
    if result.ranked:
        print(render(result, args.top))
    out = write_outputs(result, args.output, cache)
    if args.plot:
        with open(args.plot, "w") as f:
            f.write(svg(result))
    if args.time:
        compiling = sum(r.seconds[0] for r in result.rows)
        simulating = sum(r.seconds[1] for r in result.rows)
        print(f"time: {len(result.rows)} candidates in {result.seconds:.1f} s "
              f"({result.compiled} compiled, {result.cached} from the cache; "
              f"{compiling:.1f} s compiling, {simulating:.1f} s simulating over "
              f"{args.jobs} job(s))")
    best = result.best
    if best is None:
        raise UserError(f"no candidate within the caps ({summary(result)}); "
                        f"{out}/tune.json lists them all")
    print(f"best: {best.candidate.label()}: programs, costs.json and tune.json in {out}/")
    return 0


def _heading(result) -> str:
    p, q = result.profile, result.query
    cap = f", memory cap {fmt_bytes(q.memory)}" if q.memory is not None else ""
    lines = [f"tune: {q.ranks} ranks x {q.dp} replica(s), global batch {q.batch}{cap}; "
             f"{p.kind} profile {p.origin} (micro-batch {p.mb_size}, unit {p.unit})"]
    lines += [f"  note: {n}" for n in p.notes]
    return "\n".join(lines)
