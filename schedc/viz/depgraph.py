"""The dependency graph of compute ops and its critical path, as DOT or SVG.

Nodes are the compute ops of a simulated run. Edges: data (each op's inputs,
as the instruction table's `needs` says; schedc.graph.inputs) and program order
on each rank.
The critical path is read off the simulation, walking back from the op that
ends last: each op's start was set by its latest-ready predecessor (a data
arrival or the rank's previous op), so following those gives the chain that
decides the makespan under the cost model. The SVG layout puts x = simulated
start time and y = rank, so no graphviz is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schedc.dot import DotEdge, DotNode, write_dot
from schedc.graph import inputs, split_backward_in
from schedc.instructions import COMPUTE_OPS, consumer
from schedc.ops import Op
from schedc.simulate.run import Simulation
from schedc.viz import style
from schedc.viz.svg import document, esc, num, text, time_axis

_EPS = 1e-9


@dataclass(frozen=True)
class Node:
    rank: int
    index: int
    kind: str
    stage: int
    mb: int
    pipeline: int
    start: float
    end: float

    @property
    def op(self) -> Op:
        return Op(self.kind, self.pipeline, self.stage, self.mb)

    @property
    def label(self) -> str:
        p = f"p{self.pipeline} " if self.pipeline else ""
        return f"{self.kind}{self.stage} {p}mb{self.mb}"


@dataclass
class DepGraph:
    nodes: list[Node]
    edges: list[tuple[int, int, str]]  # (from, to, "data" | "order")
    critical: set[int] = field(default_factory=set)
    critical_edges: set[tuple[int, int]] = field(default_factory=set)


def build(sim: Simulation) -> DepGraph:
    """The whole graph of the run, with its critical path marked."""
    tl = sim.timeline
    nodes: list[Node] = []
    for r, stream in enumerate(tl.streams):
        for i, ins in enumerate(stream):
            if ins.op in COMPUTE_OPS:
                nodes.append(Node(r, i, ins.op, ins.stage, ins.mb, ins.pipeline,
                                  tl.starts[r][i], tl.ends[r][i]))
    where = {node.op: n for n, node in enumerate(nodes)}
    split = split_backward_in({node.kind for node in nodes})
    edges = _data_edges(nodes, where, split) + _order_edges(nodes)
    graph = DepGraph(nodes, edges)
    _mark_critical(graph, _arrivals(sim, where, split))
    return graph


def _data_edges(nodes: list[Node], where: dict[Op, int], split: bool
                ) -> list[tuple[int, int, str]]:
    return [(where[src], n, "data") for n, node in enumerate(nodes)
            for src in inputs(node.op, split) if src in where]


def _order_edges(nodes: list[Node]) -> list[tuple[int, int, str]]:
    last: dict[int, int] = {}
    out = []
    for n, node in enumerate(nodes):
        if node.rank in last:
            out.append((last[node.rank], n, "order"))
        last[node.rank] = n
    return out


def _arrivals(sim: Simulation, where: dict[Op, int], split: bool) -> dict[int, float]:
    """When each cross-rank input reached its consumer (from the receives)."""
    tl = sim.timeline
    out: dict[int, float] = {}
    for _, _, rr, rp in tl.messages:
        ins = tl.streams[rr][rp]
        key = Op(consumer(ins.op, split), ins.pipeline, ins.stage, ins.mb)
        if key in where:
            out[where[key]] = tl.ends[rr][rp]
    return out


def _mark_critical(graph: DepGraph, arrivals: dict[int, float]) -> None:
    if not graph.nodes:
        return
    preds: dict[int, list[tuple[int, str]]] = {}
    for a, b, kind in graph.edges:
        preds.setdefault(b, []).append((a, kind))
    n = max(range(len(graph.nodes)), key=lambda i: graph.nodes[i].end)
    while True:
        graph.critical.add(n)
        node = graph.nodes[n]
        best, best_t = None, -1.0
        for a, _ in preds.get(n, []):
            pred = graph.nodes[a]
            ready = arrivals.get(n, pred.end) if pred.rank != node.rank else pred.end
            if ready > best_t + _EPS:
                best, best_t = a, ready
        if best is None:
            return
        graph.critical_edges.add((best, n))
        n = best


def restrict(graph: DepGraph, mbs: tuple[int, int] | None, rank: int | None) -> DepGraph:
    """The subgraph of ops with mb in [lo, hi) and/or on one rank."""
    keep = [n for n, node in enumerate(graph.nodes)
            if (mbs is None or mbs[0] <= node.mb < mbs[1]) and (rank is None or node.rank == rank)]
    index = {old: new for new, old in enumerate(keep)}
    return DepGraph(
        nodes=[graph.nodes[n] for n in keep],
        edges=[(index[a], index[b], k) for a, b, k in graph.edges if a in index and b in index],
        critical={index[n] for n in graph.critical if n in index},
        critical_edges={(index[a], index[b]) for a, b in graph.critical_edges
                        if a in index and b in index},
    )


def to_dot(graph: DepGraph, name: str = "schedule") -> str:
    nodes = [DotNode(f"n{n}", node.rank, f"{node.label}\\n[{node.start:.4g}, {node.end:.4g}]",
                     node.kind, n in graph.critical) for n, node in enumerate(graph.nodes)]
    edges = [DotEdge(f"n{a}", f"n{b}", kind == "order", (a, b) in graph.critical_edges)
             for a, b, kind in graph.edges]
    return write_dot(name, nodes, edges)


def to_svg(graph: DepGraph, unit: str = "unit", width: float | None = None) -> str:
    """Layered drawing: x = simulated start, y = rank; critical path in red."""
    if not graph.nodes:
        return document(300, 40, [text(10, 24, "no ops in the selected range")])
    ranks = sorted({node.rank for node in graph.nodes})
    row = {r: k for k, r in enumerate(ranks)}
    t0 = min(node.start for node in graph.nodes)
    span = max(node.end for node in graph.nodes) - t0 or 1.0
    width = width or min(max(900.0, 40 * len(graph.nodes) / len(ranks)), 8000.0)
    left, top, row_h, box_h = 64, 30, 56, 22
    scale = (width - left - 20) / span

    def xy(n: int) -> tuple[float, float, float]:
        node = graph.nodes[n]
        x = left + (node.start - t0) * scale
        return x, top + row[node.rank] * row_h + 12, max((node.end - node.start) * scale, 4)

    body = time_axis(left, scale, span, top, top + len(ranks) * row_h, unit)
    for r, k in row.items():
        body.append(text(left - 8, top + k * row_h + 12 + box_h / 2 + 4, f"rank {r}",
                         text_anchor="end"))
    body += _svg_edges(graph, xy, box_h)
    for n, node in enumerate(graph.nodes):
        x, y, w = xy(n)
        crit = n in graph.critical
        body.append(f'<rect class="node" x="{num(x)}" y="{num(y)}" width="{num(w)}" '
                    f'height="{box_h}" fill="{style.colour(node.kind, node.mb)}" '
                    f'stroke="{"#d00000" if crit else "#333"}" '
                    f'stroke-width="{2.5 if crit else 0.5}"><title>rank {node.rank}: '
                    f"{esc(node.label)} [{node.start:.6g}, {node.end:.6g}]</title></rect>")
        if w > 6 * len(node.label) * 0.6:
            body.append(text(x + w / 2, y + box_h / 2 + 4, f"{node.kind}{node.mb}",
                             text_anchor="middle", font_size=9, fill=style.text_colour(node.mb)))
    height = top + len(ranks) * row_h + 24
    body.append(text(left, height - 6, "red: critical path under the cost model · "
                     "arrows: data dependencies (program order is the row)", fill="#555"))
    return document(width, height, body, _arrow_defs())


def _svg_edges(graph: DepGraph, xy, box_h: float) -> list[str]:
    out = []
    for a, b, _kind in graph.edges:
        crit = (a, b) in graph.critical_edges
        same_rank = graph.nodes[a].rank == graph.nodes[b].rank
        if same_rank and not crit:  # implied by the row; drawing it only adds clutter
            continue
        xa, ya, wa = xy(a)
        xb, yb, _ = xy(b)
        x1, y1, x2, y2 = xa + wa, ya + box_h / 2, xb, yb + box_h / 2
        if ya != yb:  # leave from the bottom or top edge so arrows do not cross boxes
            y1 = ya + (box_h if yb > ya else 0)
            y2 = yb + (0 if yb > ya else box_h)
            x1 = xa + wa / 2
        colour, w = ("#d00000", 2.2) if crit else ("#7a7a7a", 0.8)
        out.append(f'<line class="edge" x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" '
                   f'y2="{num(y2)}" stroke="{colour}" stroke-width="{w}" '
                   f'marker-end="url(#{"arrc" if crit else "arr"})"/>')
    return out


def _arrow_defs() -> str:
    return ('<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
            'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7a7a7a"/>'
            '</marker><marker id="arrc" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="5" '
            'markerHeight="5" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#d00000"/>'
            "</marker></defs>")
