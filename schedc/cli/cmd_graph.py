"""`schedc graph DIR --dot FILE`: the dependency graph, for debugging."""

from __future__ import annotations

import argparse
from pathlib import Path

from schedc.files import load_programs
from schedc.graph import program_graph, to_dot


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="write the dependency graph of a program directory")
    p.add_argument("dir", help="program directory")
    p.add_argument("--dot", required=True, metavar="FILE", help="Graphviz file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest, programs = load_programs(args.dir)
    g = program_graph(manifest, programs)
    Path(args.dot).write_text(to_dot(g))
    print(f"wrote {g.number_of_nodes()} ops and {g.number_of_edges()} edges to {args.dot}")
    return 0
