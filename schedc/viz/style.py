"""Colours and patterns shared by every picture, so F looks the same everywhere.

Colour says the op kind; lightness says the micro-batch (cycling every 8, so
neighbours differ); a hatch or dotted overlay says the pipeline.
"""

from __future__ import annotations

from schedc.instructions import TABLE

# Hue, saturation per kind, from the instruction table (compute kinds are far
# apart on the wheel).
KIND_HUE: dict[str, tuple[int, int]] = {op: row.hue for op, row in TABLE.items() if row.hue[1]}
# Legend labels, from the instruction table; every message op shares one entry.
KIND_NAMES: dict[str, str] = {op: row.legend for op, row in TABLE.items()}
COMM_LABEL = "send/recv (serial)"
SHADES = 8
PIPELINE_PATTERNS = ("", "hatch1", "hatch2", "dots3", "hatch4", "dots5", "hatch6", "dots7")
IDLE = "#eeeeee"


def colour(kind: str, mb: int | None) -> str:
    hue, sat = KIND_HUE.get(kind, (0, 0))
    shade = (mb or 0) % SHADES
    light = 38 + 5 * shade  # 38% .. 73%
    return f"hsl({hue},{sat}%,{light}%)"


def text_colour(mb: int | None) -> str:
    return "#fff" if (mb or 0) % SHADES < 4 else "#111"


def pattern_id(pipeline: int | None) -> str:
    return PIPELINE_PATTERNS[(pipeline or 0) % len(PIPELINE_PATTERNS)]


def pattern_defs() -> str:
    """SVG <defs> with one overlay pattern per pipeline beyond the first."""
    out = ["<defs>"]
    for i, pid in enumerate(PIPELINE_PATTERNS):
        if not pid:
            continue
        angle = (45 if i % 2 else -45) + 15 * (i // 2)
        if pid.startswith("hatch"):
            body = '<line x1="0" y1="0" x2="0" y2="6" stroke="#000" stroke-opacity="0.45" ' \
                   'stroke-width="2"/>'
        else:
            body = '<circle cx="3" cy="3" r="1.2" fill="#000" fill-opacity="0.5"/>'
        out.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse" '
                   f'patternTransform="rotate({angle})">{body}</pattern>')
    out.append("</defs>")
    return "".join(out)
