"""`--plot FILE.svg`: predicted throughput against staleness, Pareto front marked.

Staleness is a candidate's max delay (the compiler's; synchronous schedules
have 0). A candidate is on the Pareto front when no other has at least its
throughput at no more delay and is better in one of the two. Plain SVG,
written with schedc.viz.svg's helpers.
"""

from __future__ import annotations

from schedc.tune.evaluate import Row
from schedc.tune.search import Result
from schedc.tune.table import per_second, throughput_unit
from schedc.viz.svg import document, esc, nice_step, num, text

W, H = 760.0, 460.0
LEFT, RIGHT, TOP, BOTTOM = 70.0, 220.0, 40.0, 50.0
SYNC, ASYNC, FRONT = "#4c78a8", "#f58518", "#d62728"


def pareto_front(rows: list[Row]) -> list[Row]:
    """The rows no other row dominates (more throughput at no more delay),
    ordered by delay."""
    front: list[Row] = []
    best = -1.0
    for r in sorted(rows, key=lambda r: (r.max_delay, -(r.throughput or 0.0))):
        if (r.throughput or 0.0) > best:
            front.append(r)
            best = r.throughput or 0.0
    return front


def svg(result: Result) -> str:
    unit = result.profile.unit
    rows = result.ranked
    front = pareto_front(rows)
    on_front = {id(r) for r in front}
    max_x = max((r.max_delay for r in rows), default=0) or 1
    ys = [per_second(r.throughput, unit) or 0.0 for r in rows]
    max_y = max(ys, default=1.0) or 1.0
    step = nice_step(max_y, 5)
    top_y = step * -(-max_y // step)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x_of(d: int, k: int = 0) -> float:
        return LEFT + pw * (d + 0.5) / (max_x + 1) + k

    def y_of(v: float) -> float:
        return TOP + ph * (1 - v / top_y)

    body = [text(LEFT, 22, f"schedc tune: {result.query.ranks} ranks, global batch "
                 f"{result.query.batch}: predicted throughput against staleness",
                 font_weight="bold")]
    body += _axes(max_x, top_y, step, unit, x_of, y_of)
    pts = [(x_of(r.max_delay), y_of(y)) for r, y in zip(rows, ys, strict=True)]
    line = " ".join(f"{num(pts[rows.index(r)][0])},{num(pts[rows.index(r)][1])}"
                    for r in front)
    if len(front) > 1:
        body.append(f'<polyline points="{line}" fill="none" stroke="{FRONT}" '
                    'stroke-width="1.5" stroke-dasharray="4 3"/>')
    for r, (x, y) in zip(rows, pts, strict=True):
        colour = SYNC if r.candidate.synchronous else ASYNC
        radius = 5 if id(r) in on_front else 3
        stroke = f' stroke="{FRONT}" stroke-width="2"' if id(r) in on_front else ""
        body.append(f'<circle cx="{num(x)}" cy="{num(y)}" r="{radius}" fill="{colour}" '
                    f'fill-opacity="0.8"{stroke}><title>{esc(_tip(r, unit))}</title></circle>')
    for r in front:
        x, y = pts[rows.index(r)]
        body.append(text(x + 8, y + 4, r.candidate.label(), fill=FRONT))
    body += _legend()
    return document(W, H, body)


def _tip(r: Row, unit: str) -> str:
    return (f"{r.candidate.label()}: {per_second(r.throughput, unit):.4g} "
            f"{throughput_unit(unit)}, delay {r.max_delay}, inconsistency "
            f"{r.max_inconsistency}, bubble {r.bubble:.3f}")


def _axes(max_x: int, top_y: float, step: float, unit: str, x_of, y_of) -> list[str]:
    x0, x1 = LEFT, W - RIGHT
    y0, y1 = y_of(0), y_of(top_y)
    out = [f'<line x1="{num(x0)}" y1="{num(y0)}" x2="{num(x1)}" y2="{num(y0)}" stroke="#333"/>',
           f'<line x1="{num(x0)}" y1="{num(y0)}" x2="{num(x0)}" y2="{num(y1)}" stroke="#333"/>']
    k = 0
    while k * step <= top_y * (1 + 1e-9):
        y = y_of(k * step)
        out.append(f'<line x1="{num(x0)}" y1="{num(y)}" x2="{num(x1)}" y2="{num(y)}" '
                   'stroke="#ddd" stroke-width="0.5"/>')
        out.append(text(x0 - 6, y + 4, f"{k * step:.6g}", text_anchor="end", fill="#555"))
        k += 1
    for d in range(max_x + 1):
        out.append(text(x_of(d), y0 + 16, str(d), text_anchor="middle", fill="#555"))
    out.append(text((x0 + x1) / 2, H - 12, "staleness: max delay (optimizer steps)",
                    text_anchor="middle"))
    out.append(text(16, (y0 + y1) / 2, f"throughput ({throughput_unit(unit)})",
                    text_anchor="middle", transform=f"rotate(-90 16 {num((y0 + y1) / 2)})"))
    return out


def _legend() -> list[str]:
    x, y = W - RIGHT + 20, TOP + 10
    out = []
    for i, (colour, label) in enumerate(((SYNC, "synchronous"), (ASYNC, "asynchronous"))):
        out.append(f'<circle cx="{num(x)}" cy="{num(y + 18 * i)}" r="4" fill="{colour}"/>')
        out.append(text(x + 10, y + 18 * i + 4, label))
    out.append(f'<line x1="{num(x - 6)}" y1="{num(y + 36)}" x2="{num(x + 6)}" '
               f'y2="{num(y + 36)}" stroke="{FRONT}" stroke-width="1.5" '
               'stroke-dasharray="4 3"/>')
    out.append(text(x + 10, y + 40, "Pareto front"))
    return out
