"""A few SVG helpers: we write SVG text ourselves, so no plotting library is needed."""

from __future__ import annotations

import math
from html import escape


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def num(x: float) -> str:
    """Short fixed notation: SVG files stay small and diffable."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def document(width: float, height: float, body: list[str], defs: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" '
            f'height="{num(height)}" viewBox="0 0 {num(width)} {num(height)}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="11">'
            f"{defs}" + "\n".join(body) + "</svg>\n")


def text(x: float, y: float, content: str, **attrs: object) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<text x="{num(x)}" y="{num(y)}"{extra}>{esc(content)}</text>'


def nice_step(span: float, target_ticks: int = 10) -> float:
    """A 1/2/5 x 10^k tick step giving about `target_ticks` ticks over span."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power  # pragma: no cover


def time_axis(x0: float, scale: float, span: float, y_top: float, y_bottom: float,
              unit: str) -> list[str]:
    """Vertical grid lines and labels along the top of a plot."""
    out = []
    step = nice_step(span, max(4, int(span * scale / 90)))
    k = 0
    while k * step <= span * (1 + 1e-9):
        x = x0 + k * step * scale
        out.append(f'<line x1="{num(x)}" y1="{num(y_top)}" x2="{num(x)}" y2="{num(y_bottom)}" '
                   'stroke="#ccc" stroke-width="0.5"/>')
        out.append(text(x, y_top - 4, f"{k * step:.6g}", text_anchor="middle", fill="#555"))
        k += 1
    out.append(text(x0 - 8, y_top - 4, unit if unit != "unit" else "t", text_anchor="end",
                    fill="#555"))
    return out
