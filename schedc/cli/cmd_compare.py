"""`schedc compare A B ...`: schedules side by side under one cost model.

    schedc compare preset:1f1b:8:32 preset:paci:8:32 out/ pytorch.csv \\
        --costs costs.json --steps 4 --timeline compare.html
    schedc compare out/ --costs costs.json --real-trace trace.json --timeline vs.svg

Each argument is a program directory, a .sched file, a PyTorch compute-only
CSV, or preset:NAME[:STAGES[:MICROBATCHES]]. One table, and optionally one
figure with every timeline stacked on a common time axis.
"""

from __future__ import annotations

import argparse
import json

from schedc.cli.cmd_simulate import add_simulation_args, simulate_args
from schedc.cli.cmd_viz import add_real_args, load_real, real_title, write_timeline
from schedc.errors import UserError
from schedc.simulate import figures, render_comparison
from schedc.viz.real import UNITS
from schedc.viz.timeline import timeline_svg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="compare schedules under one cost model",
        description="Simulate several schedules under one cost model; one table, one figure.")
    p.add_argument("sources", nargs="+", metavar="SCHEDULE",
                   help="program dir, .sched, .csv, or preset:NAME[:STAGES[:MBS]]")
    add_simulation_args(p, many=True)
    p.add_argument("--timeline", metavar="FILE", help="stacked timelines: .svg, .png or .html")
    p.add_argument("--width", type=float, metavar="PX", help="figure width in pixels")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_real_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.sources) < 1:
        raise UserError("compare: give at least one schedule")
    sims = [simulate_args(args, source) for source in args.sources]
    units = {s.costs.unit for s in sims}
    if len(units) > 1:  # pragma: no cover - one cost model for all
        raise UserError(f"compare: mixed time units {sorted(units)}")
    figs = [figures(s) for s in sims]
    table = render_comparison(figs)
    if args.json:
        print(json.dumps([f.to_dict() for f in figs], indent=2))
    else:
        print(table)
    if args.real_trace and not args.timeline:
        raise UserError("--real-trace draws with --timeline FILE; give --timeline")
    if args.window and not args.real_trace:
        raise UserError("--window chooses what --real-trace draws; give --real-trace")
    if args.timeline:
        panels: list = list(sims)
        titles = [s.name for s in sims]
        if args.real_trace:
            unit = sims[0].costs.unit
            if unit not in UNITS:
                raise UserError(f"--real-trace: the simulations' time unit is {unit!r}; "
                                f"give --costs in {', '.join(UNITS)} (e.g. the runtime's "
                                "--costs-out) to draw them on one axis")
            real = load_real(args, args.sources[0], unit)
            panels.append(real)
            titles.append(real_title(real))
        write_timeline(args.timeline, timeline_svg(panels, args.width, titles),
                       "schedc compare", table)
        print(f"wrote {args.timeline}")
    return 0
