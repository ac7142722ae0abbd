"""A self-contained interactive HTML page around timeline SVGs.

No network: the SVG is inline and the script is ~30 lines. Hovering an op
shows its kind, stage, micro-batch, pipeline, version, start and end (read from
the op's data-* attributes); a slider zooms the time axis.
"""

from __future__ import annotations

from schedc.viz.svg import esc

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 12px; color: #222; }
#wrap { overflow-x: auto; border: 1px solid #ddd; }
#wrap svg { display: block; }
rect.op:hover { stroke: #000; stroke-width: 1.5; }
#tip { position: fixed; pointer-events: none; background: #fffffe; border: 1px solid #888;
       padding: 4px 8px; font-size: 12px; display: none; box-shadow: 2px 2px 6px #0003; }
#tip b { display: inline-block; min-width: 64px; }
pre { font-size: 12px; background: #f7f7f7; padding: 8px; }
"""

_JS = """
const tip = document.getElementById('tip');
const svg = document.querySelector('#wrap svg');
const baseW = svg.getAttribute('width'), baseH = svg.getAttribute('height');
const names = ['kind','rank','stage','mb','pipeline','version','start','end'];
document.querySelectorAll('rect.op').forEach(el => {
  el.addEventListener('mousemove', ev => {
    const d = el.dataset, unit = d.unit === 'unit' ? '' : ' ' + d.unit;
    tip.innerHTML = names.filter(k => d[k] !== undefined)
      .map(k => '<b>' + k + '</b>' + d[k] + ((k === 'start' || k === 'end') ? unit : ''))
      .join('<br>');
    tip.style.left = (ev.clientX + 14) + 'px';
    tip.style.top = (ev.clientY + 14) + 'px';
    tip.style.display = 'block';
  });
  el.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
});
document.getElementById('zoom').addEventListener('input', ev => {
  const z = ev.target.value / 100;
  svg.setAttribute('width', baseW * z);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('height', baseH);
});
"""


def timeline_html(svg: str, title: str, summary: str = "") -> str:
    """The page: title, zoom slider, the SVG, a tooltip, and an optional text summary."""
    pre = f"<pre>{esc(summary)}</pre>" if summary else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h3>{esc(title)}</h3>"
        '<label>zoom <input id="zoom" type="range" min="50" max="800" value="100"></label>'
        f'<div id="wrap">{svg}</div><div id="tip"></div>{pre}'
        f"<script>{_JS}</script></body></html>\n"
    )
