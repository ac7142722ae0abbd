"""`schedc simulate DIR`: predict a run of compiled programs under a cost model.

    schedc simulate out/ --costs costs.json --steps 4
    schedc simulate preset:paci:8:8 --steps 10 --json
"""

from __future__ import annotations

import argparse
import json

from schedc.errors import UserError
from schedc.overlap import Overlap
from schedc.simulate import figures, load_costs, render, simulate
from schedc.simulate.derive import explain
from schedc.simulate.sources import load_source


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate program files under a cost model",
        description="Event-driven simulation of compiled programs: makespan, throughput, "
                    "bubbles, memory, inconsistency and delay. See docs/costs.md.")
    add_simulation_args(p)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def add_simulation_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """Arguments shared by simulate, viz and compare."""
    if not many:
        p.add_argument("dir", metavar="DIR",
                       help="program directory (or preset:NAME:STAGES:MBS, .sched, .csv)")
    p.add_argument("--costs", metavar="FILE", help="cost profile JSON (default: unit costs)")
    p.add_argument("--steps", type=int, default=None, metavar="K",
                   help="body repetitions to run (default: 1 synchronous, 4 asynchronous)")
    p.add_argument("--serial-comm", action="store_true", default=None,
                   help="sends and receives block the rank's timeline (no overlap; "
                        "default: as the cost profile's \"comm\" says, else overlap)")
    p.add_argument("--lazy-recv", action="store_true",
                   help="a receive holds only the op that consumes it, not its batch")
    p.add_argument("--posted-batches", type=int, default=None, metavar="K",
                   help="the overlap rule: K posted batches, receives posted ahead when K > 1 "
                        "(default: the manifest's)")


def simulate_args(args: argparse.Namespace, source: str | None = None):
    """Load, simulate; returns the Simulation."""
    name, manifest, programs = load_source(source or args.dir)
    costs = load_costs(args.costs) if args.costs else None
    steps = args.steps if args.steps is not None else (1 if manifest.synchronous else 4)
    return simulate(manifest, programs, costs, steps=steps, serial_comm=args.serial_comm,
                    name=name, lazy_recv=args.lazy_recv,
                    rule=posted_rule(getattr(args, "posted_batches", None)))


def posted_rule(k: int | None) -> Overlap | None:
    """`--posted-batches K` as a rule (None: not given)."""
    if k is None:
        return None
    if k < 1:
        raise UserError(f"--posted-batches must be at least 1, got {k}")
    return Overlap.posting(k)


def run(args: argparse.Namespace) -> int:
    sim = simulate_args(args)
    fig = figures(sim)
    print(json.dumps(fig.to_dict(), indent=2) if args.json else render(fig))
    if not args.json:  # op times the profile did not give (docs/costs.md)
        for line in explain(sim.costs.derivations(sim.manifest.num_stages)):
            print(f"derived: {line}")
    return 0
