"""`schedc viz DIR`: pictures of a simulated run.

    schedc viz out/ --timeline run.html --trace run.json --graph deps.svg --mbs 0:8
    schedc viz preset:amdp:8:32 --steps 3 --timeline amdp.svg
    schedc viz out/ --real-trace trace.json --timeline real.svg   # the real run

With --real-trace, --timeline draws the run the runtime recorded (`--trace`
of `schedc.runtime.launch`) instead of a simulation, in the same style.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from schedc.cli.cmd_simulate import add_simulation_args, simulate_args
from schedc.errors import UserError
from schedc.simulate import figures, render
from schedc.simulate.sources import load_source
from schedc.viz import depgraph
from schedc.viz.html import timeline_html
from schedc.viz.png import svg_to_png
from schedc.viz.real import RealRun, default_window, real_run
from schedc.viz.timeline import timeline_svg
from schedc.viz.trace import trace_events


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "viz", help="draw a simulated run: timeline, trace, dependency graph",
        description="Simulate, then draw. See docs/visualise.md.")
    add_simulation_args(p)
    p.add_argument("--timeline", metavar="FILE", help="Gantt chart: .svg, .png or .html")
    p.add_argument("--trace", metavar="FILE", help="Chrome/Perfetto trace JSON")
    p.add_argument("--graph", metavar="FILE", help="dependency graph: .dot or .svg")
    p.add_argument("--mbs", metavar="A:B", help="graph: only micro-batches A..B-1")
    p.add_argument("--rank", type=int, metavar="R", help="graph: only ops on rank R")
    p.add_argument("--width", type=float, metavar="PX", help="picture width in pixels")
    add_real_args(p)
    p.set_defaults(func=run)


def add_real_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real-trace", metavar="TRACE",
                   help="draw the real run in this runtime trace (--trace of the runtime)")
    p.add_argument("--window", metavar="A:B",
                   help="real run: body repetitions A..B-1 only (default: all of a run of "
                        "up to 5, else 1:5, skipping the warm-up)")


def load_real(args: argparse.Namespace, source: str, unit: str = "ms") -> RealRun:
    """The real run of --real-trace, of the programs named by `source`."""
    name, manifest, programs = load_source(source)
    name = f"real run of {name} ({args.real_trace})"
    window = parse_range(args.window, "--window")
    run = real_run(args.real_trace, manifest, programs, window, unit, name)
    if window is None and run.repeats > 5:
        run = real_run(args.real_trace, manifest, programs, default_window(run.repeats),
                       unit, name)
    return run


def real_title(run: RealRun) -> str:
    a, b = run.window
    return f"{run.name}: body repetitions {a}..{b - 1} of {run.repeats}"


def write_timeline(path: str, svg: str, title: str, summary: str = "") -> None:
    """Write a timeline SVG as .svg, .png or .html, by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".svg":
        Path(path).write_text(svg)
    elif suffix == ".html":
        Path(path).write_text(timeline_html(svg, title, summary))
    elif suffix == ".png":
        svg_to_png(svg, path)
    else:
        raise UserError(f"{path}: --timeline writes .svg, .png or .html")


def parse_range(text: str | None, option: str = "--mbs") -> tuple[int, int] | None:
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep or not lo.isdigit() or not hi.isdigit() or int(hi) <= int(lo):
        raise UserError(f"{option} {text}: expected A:B with 0 <= A < B, e.g. 0:8")
    return int(lo), int(hi)


def run(args: argparse.Namespace) -> int:
    if not (args.timeline or args.trace or args.graph):
        raise UserError("viz: give at least one of --timeline, --trace, --graph")
    if args.graph and Path(args.graph).suffix.lower() not in (".dot", ".svg"):
        raise UserError(f"{args.graph}: --graph writes .dot or .svg")
    if args.window and not args.real_trace:
        raise UserError("--window chooses what --real-trace draws; give --real-trace")
    if args.real_trace and not args.timeline:
        raise UserError("--real-trace draws with --timeline FILE; give --timeline")
    mbs = parse_range(args.mbs)
    if args.real_trace:
        real = load_real(args, args.dir)
        title = real_title(real)
        write_timeline(args.timeline, timeline_svg([real], args.width, [title]), title)
        ops = sum(len(s) for s in real.timeline.streams)
        print(f"wrote {args.timeline} (real run: {ops} events, body repetitions "
              f"{real.window[0]}:{real.window[1]} of {real.repeats})")
        if not (args.trace or args.graph):
            return 0
    sim = simulate_args(args)
    if args.timeline and not args.real_trace:
        title = f"{sim.name}: {sim.steps} step(s)"
        write_timeline(args.timeline, timeline_svg([sim], args.width), title,
                       render(figures(sim)))
        print(f"wrote {args.timeline}")
    if args.trace:
        Path(args.trace).write_text(json.dumps(trace_events(sim)))
        print(f"wrote {args.trace}")
    if args.graph:
        graph = depgraph.restrict(depgraph.build(sim), mbs, args.rank)
        out = (depgraph.to_dot(graph, sim.name) if args.graph.endswith(".dot")
               else depgraph.to_svg(graph, sim.costs.unit, args.width))
        Path(args.graph).write_text(out)
        print(f"wrote {args.graph} ({len(graph.nodes)} ops, {len(graph.critical)} critical)")
    return 0
