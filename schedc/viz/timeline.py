"""Per-rank Gantt chart of a simulated run, as SVG written by hand.

One row per rank; one `<rect class="op">` per drawn op, carrying its facts as
data-* attributes (the HTML page reads them for its tooltips) and a <title>
(tooltips in any SVG viewer). Grey row background = idle time. Several
simulations stack as panels on one common time axis (`schedc compare`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedc.instructions import COMM_OPS, COMPUTE_OPS
from schedc.program import Instr
from schedc.simulate.run import Simulation
from schedc.viz import style
from schedc.viz.real import RealRun
from schedc.viz.svg import document, esc, num, text, time_axis

ROW_H = 24
ROW_GAP = 5
LEFT = 64
PANEL_GAP = 34
MARKED = ("STEP",)  # always drawn, even when they take no time


@dataclass(frozen=True)
class Op:
    rank: int
    index: int
    instr: Instr
    start: float
    end: float
    label: str = ""  # when not instr.label(): a real run's batch of sends/receives


def drawn_ops(sim: Simulation | RealRun) -> list[Op]:
    """The ops a timeline shows: compute, optimizer steps, and every op that
    occupies the rank's stream (communication only with --serial-comm, and in
    a real run)."""
    tl = sim.timeline
    labels = getattr(sim, "labels", {})
    indices = getattr(sim, "indices", None)
    out = []
    for r, stream in enumerate(tl.streams):
        for i, ins in enumerate(stream):
            if ins.op in COMM_OPS and not tl.comm_on_clock:
                continue
            s, e = tl.starts[r][i], tl.ends[r][i]
            if ins.op in COMPUTE_OPS or ins.op in MARKED or e > s:
                index = indices[r][i] if indices else i
                out.append(Op(r, index, ins, s, e, labels.get((r, index), "")))
    return out


def op_attrs(op: Op, unit: str) -> str:
    ins = op.instr
    facts = {"rank": op.rank, "index": op.index, "kind": ins.op, "stage": ins.stage,
             "mb": ins.mb, "pipeline": ins.pipeline, "version": ins.version,
             "start": f"{op.start:.6g}", "end": f"{op.end:.6g}", "unit": unit}
    return "".join(f' data-{k}="{esc(v)}"' for k, v in facts.items() if v is not None)


def _op_title(op: Op, unit: str) -> str:
    u = "" if unit == "unit" else f" {unit}"
    return f"rank {op.rank}: {op.label or op.instr.label()} [{op.start:.6g}, {op.end:.6g}]{u}"


def _op_element(op: Op, x0: float, y: float, scale: float, unit: str) -> list[str]:
    ins = op.instr
    x = x0 + op.start * scale
    w = (op.end - op.start) * scale
    if ins.op in MARKED:  # a thin red bar, wider than its duration when that is tiny
        w = max(w, 2.0)
    fill = style.colour(ins.op, ins.mb)
    dash = ' stroke-dasharray="3,2"' if ins.pipeline else ""
    out = [f'<rect class="op" x="{num(x)}" y="{num(y)}" width="{num(max(w, 0.6))}" '
           f'height="{ROW_H}" fill="{fill}" stroke="#333" stroke-width="0.4"{dash}'
           f"{op_attrs(op, unit)}><title>{esc(_op_title(op, unit))}</title></rect>"]
    pid = style.pattern_id(ins.pipeline)
    if pid and w > 1:
        out.append(f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{ROW_H}" '
                   f'fill="url(#{pid})" pointer-events="none"/>')
    if ins.mb is not None and w >= 6 * len(str(ins.mb)) + 2:
        out.append(text(x + w / 2, y + ROW_H / 2 + 4, str(ins.mb), text_anchor="middle",
                        fill=style.text_colour(ins.mb), font_size=10, pointer_events="none"))
    return out


def _version_marks(ops: Sequence[Op], x0: float, y_of: dict[int, float], scale: float) -> list[str]:
    """Label optimizer steps with the version they produce, where there is room."""
    out, last_x = [], {}
    for op in ops:
        if op.instr.op != "STEP":
            continue
        x = x0 + op.end * scale
        if x - last_x.get(op.rank, -1e9) < 26:
            continue
        last_x[op.rank] = x
        out.append(text(x + 1, y_of[op.rank] - 1, f"v{op.instr.version}", fill="#b00",
                        font_size=8, pointer_events="none"))
    return out


def panel(sim: Simulation | RealRun, y0: float, scale: float, span: float,
          title: str = "") -> tuple[list[str], float]:
    """One simulation's rows starting at y0; returns elements and height used."""
    ranks = len(sim.timeline.streams)
    top = y0 + (18 if title else 0) + 16
    out = [text(LEFT, y0 + 12, title, font_weight="bold", font_size=12)] if title else []
    height_rows = ranks * (ROW_H + ROW_GAP)
    out += time_axis(LEFT, scale, span, top, top + height_rows, sim.costs.unit)
    y_of = {r: top + r * (ROW_H + ROW_GAP) for r in range(ranks)}
    for r, y in y_of.items():
        out.append(text(LEFT - 8, y + ROW_H / 2 + 4, f"rank {r}", text_anchor="end"))
        out.append(f'<rect class="idle" x="{LEFT}" y="{num(y)}" width="{num(span * scale)}" '
                   f'height="{ROW_H}" fill="{style.IDLE}"/>')
    ops = drawn_ops(sim)
    for op in ops:
        out += _op_element(op, LEFT, y_of[op.rank], scale, sim.costs.unit)
    out += _version_marks(ops, LEFT, y_of, scale)
    return out, top - y0 + height_rows


def legend(y: float, kinds: set[str], pipelines: int) -> tuple[list[str], float]:
    out, x = [], LEFT
    if kinds & set(COMM_OPS):  # one entry for every send and receive
        kinds = (kinds - set(COMM_OPS)) | {COMM_OPS[0]}
    for kind in [k for k in style.KIND_HUE if k in kinds]:
        label = style.COMM_LABEL if kind in COMM_OPS else style.KIND_NAMES[kind]
        out.append(f'<rect x="{x}" y="{num(y)}" width="14" height="12" '
                   f'fill="{style.colour(kind, 0)}" stroke="#333" stroke-width="0.4"/>')
        out.append(text(x + 18, y + 10, label))
        x += 26 + 6.2 * len(label)
    for p in range(1, pipelines):
        out.append(f'<rect x="{x}" y="{num(y)}" width="14" height="12" fill="#bbb" '
                   f'stroke="#333" stroke-dasharray="3,2"/><rect x="{x}" y="{num(y)}" '
                   f'width="14" height="12" fill="url(#{style.pattern_id(p)})"/>')
        out.append(text(x + 18, y + 10, f"pipeline {p}"))
        x += 80
    note = "shade: micro-batch mod 8 · grey: idle · v: version after a step"
    out.append(text(x + 4, y + 10, note, fill="#555"))
    return out, 20


def timeline_svg(sims: Sequence[Simulation | RealRun], width: float | None = None,
                 titles: Sequence[str] | None = None) -> str:
    """Stacked Gantt panels (one per simulation) on one common time axis."""
    span = max(s.timeline.makespan for s in sims) or 1.0
    if width is None:
        most = max(len(drawn_ops(s)) / max(len(s.timeline.streams), 1) for s in sims)
        width = min(max(1200.0, 16 * most), 8000.0)
    scale = (width - LEFT - 20) / span
    body, y = [], 8.0
    for k, sim in enumerate(sims):
        title = titles[k] if titles else (sim.name if len(sims) > 1 else "")
        elements, h = panel(sim, y, scale, span, title)
        body += elements
        y += h + PANEL_GAP
    kinds = {op.instr.op for s in sims for op in drawn_ops(s)}
    pipelines = max(s.manifest.num_pipelines for s in sims)
    elements, h = legend(y - PANEL_GAP + 12, kinds, pipelines)
    body += elements
    return document(width, y - PANEL_GAP + 12 + h + 8, body, style.pattern_defs())
