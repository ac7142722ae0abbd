"""Pictures parse, and hold one element per op; traces hold one event per op
and one flow per send; the browser renders the page."""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schedc.cli import cmd_compare, cmd_simulate, cmd_viz
from schedc.errors import UserError
from schedc.simulate import simulate
from schedc.simulate.compute_only import programs_from_orders
from schedc.viz import depgraph
from schedc.viz.html import timeline_html
from schedc.viz.png import find_browser, svg_to_png
from schedc.viz.timeline import drawn_ops, timeline_svg
from schedc.viz.trace import trace_events

sys.path.insert(0, str(Path(__file__).parents[1] / "simulate"))
from orders import one_f_one_b  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def main(argv: list[str]) -> int:
    """Our sub-commands alone, so that teammates' half-written ones cannot break these."""
    parser = argparse.ArgumentParser(prog="schedc")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (cmd_simulate, cmd_viz, cmd_compare):
        module.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code


@pytest.fixture(scope="module")
def sim():
    return simulate(*programs_from_orders(one_f_one_b(4, 8)), steps=2, name="1f1b")


def test_timeline_svg_one_rect_per_op(sim) -> None:
    root = ET.fromstring(timeline_svg([sim]))
    ops = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "op"]
    assert len(ops) == len(drawn_ops(sim))
    compute = [e for e in ops if e.get("data-kind") in ("F", "B")]
    assert len(compute) == 2 * 4 * 8 * 2  # F and B, 4 stages, 8 micro-batches, 2 steps


class _Ops(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ops, self.scripts, self.external = 0, 0, 0

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        self.ops += tag == "rect" and a.get("class") == "op"
        self.scripts += tag == "script"
        self.external += bool(a.get("src") or (tag == "link" and a.get("href")))


def test_html_is_self_contained_with_one_element_per_op(sim) -> None:
    page = timeline_html(timeline_svg([sim]), "t")
    parser = _Ops()
    parser.feed(page)
    assert parser.ops == len(drawn_ops(sim))
    assert parser.scripts == 1 and parser.external == 0
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_trace_one_event_per_op_one_flow_per_send(sim) -> None:
    trace = json.loads(json.dumps(trace_events(sim)))
    events = trace["traceEvents"]
    instrs = sum(len(s) for s in sim.timeline.streams)
    sends = sum(i.op.startswith("SEND") for s in sim.timeline.streams for i in s)
    assert sum(e["ph"] == "X" for e in events) == instrs
    starts = [e for e in events if e["ph"] == "s"]
    ends = [e for e in events if e["ph"] == "f"]
    assert len(starts) == len(ends) == sends
    assert {e["id"] for e in starts} == {e["id"] for e in ends}


def test_graph_critical_path_spans_the_run(sim) -> None:
    g = depgraph.build(sim)
    assert len(g.nodes) == 2 * 4 * 8 * 2
    crit = sorted((g.nodes[n] for n in g.critical), key=lambda n: n.start)
    assert crit[0].start == 0 and crit[-1].end == pytest.approx(sim.timeline.makespan)
    sub = depgraph.restrict(g, (0, 2), 1)
    assert {n.rank for n in sub.nodes} == {1} and {n.mb for n in sub.nodes} == {0, 1}
    ET.fromstring(depgraph.to_svg(sub))
    assert depgraph.to_dot(sub).startswith("digraph")


def test_cli_viz_writes_every_output(tmp_path: Path) -> None:
    csv = tmp_path / "pt.csv"
    csv.write_text("0F0,0F1,0B0,0B1\n,1F0,1B0,1F1,1B1\n")
    out = [tmp_path / n for n in ("t.svg", "t.html", "trace.json", "g.dot", "g.svg")]
    assert main(["viz", str(csv), "--timeline", str(out[0]), "--trace", str(out[2]),
                 "--graph", str(out[3]), "--mbs", "0:2"]) == 0
    assert main(["viz", str(csv), "--timeline", str(out[1]), "--graph", str(out[4])]) == 0
    assert all(p.stat().st_size > 0 for p in out)
    assert main(["compare", str(csv), str(csv), "--timeline", str(tmp_path / "c.svg")]) == 0
    ET.parse(tmp_path / "c.svg")


def test_cli_user_errors(tmp_path: Path, capsys) -> None:
    assert main(["viz", str(tmp_path), "--timeline", "x.svg"]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("0F0,0X1\n")
    assert main(["simulate", str(bad)]) == 2
    assert "bad.csv:1:2" in capsys.readouterr().err


@pytest.mark.skipif(find_browser() is None, reason="no chromium: install it for the "
                    "browser screenshot test (apt-get install chromium)")
def test_browser_renders_timeline_png(sim, tmp_path: Path) -> None:
    out = tmp_path / "t.png"
    svg_to_png(timeline_svg([sim], width=900), out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
