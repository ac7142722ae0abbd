"""The one Graphviz (DOT) writer: a cluster of nodes per rank, filled with the
op's colour from the instruction table, and edges. `schedc graph` (the
compiler's dependency graph) and `schedc viz --graph x.dot` (the simulated
run's graph with its critical path) both write through it."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

from schedc.instructions import TABLE

HIGHLIGHT = "#d00000"


@dataclass(frozen=True)
class DotNode:
    id: str
    rank: int
    label: str
    op: str  # row of the instruction table ("S": an optimizer step node)
    highlight: bool = False


@dataclass(frozen=True)
class DotEdge:
    src: str
    dst: str
    order: bool = False  # program order (dashed) rather than data
    highlight: bool = False


def fill_colour(op: str) -> str:
    """#rrggbb (DOT wants no hsl()): the table's hue and saturation, light."""
    row = TABLE.get("STEP" if op == "S" else op)
    hue, sat = row.hue if row else (0, 0)
    r, g, b = colorsys.hls_to_rgb(hue / 360, 0.75, sat / 100)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


def write_dot(name: str, nodes: Sequence[DotNode], edges: Sequence[DotEdge]) -> str:
    lines = [f'digraph "{_quote(name)}" {{', "  rankdir=LR; node [shape=box, style=filled, "
             'fontname="Helvetica", fontsize=10];']
    by_rank: dict[int, list[DotNode]] = {}
    for node in nodes:
        by_rank.setdefault(node.rank, []).append(node)
    for rank, members in sorted(by_rank.items()):
        lines.append(f'  subgraph cluster_rank{rank} {{ label="rank {rank}"; color="#bbbbbb";')
        for node in members:
            pen = f', color="{HIGHLIGHT}", penwidth=3' if node.highlight else ""
            lines.append(f'    "{_quote(node.id)}" [label="{_quote(node.label)}", '
                         f'fillcolor="{fill_colour(node.op)}"{pen}];')
        lines.append("  }")
    for e in edges:
        attrs = f'color="{HIGHLIGHT}", penwidth=3' if e.highlight else \
            ('style=dashed, color="#999999"' if e.order else "")
        lines.append(f'  "{_quote(e.src)}" -> "{_quote(e.dst)}"' +
                     (f" [{attrs}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"
