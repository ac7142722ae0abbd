"""The real run's timeline, drawn from a trace in the runtime's format."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from schedc.cli import cmd_compare, cmd_viz
from schedc.compiler import compile_spec
from schedc.errors import UserError
from schedc.files import write_programs
from schedc.presets import preset_spec
from schedc.viz.real import real_run
from schedc.viz.timeline import timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
COMPUTE = ("F", "B", "I", "W")


def _compiled():
    return compile_spec(preset_spec("1f1b", stages=2, microbatches=2))


def _programs(compiled):
    return compiled.manifest, compiled.programs


def synth_trace(programs, repeats: int = 1, period=None) -> dict:
    """What the runtime writes: one X event per timed instruction, sends and
    receives that follow each other batched into one event joined by ' + '."""
    out = []
    for rank, prog in enumerate(programs):
        out.append({"name": "process_name", "ph": "M", "pid": rank,
                    "args": {"name": f"rank {rank}"}})
        stream = list(prog.unrolled(repeats, period)) if period else list(prog.body)
        t = 10.0 * rank
        i = 0
        while i < len(stream):
            ins = stream[i]
            if ins.op.startswith(("SEND", "RECV")):
                j = i
                while j < len(stream) and stream[j].op.startswith(("SEND", "RECV")):
                    j += 1
                batch = stream[i:j]
                name, cat = " + ".join(x.label() for x in batch), "COMM"
                i = j
            else:
                name, cat = ins.label(), ins.op
                i += 1
            dur = 100.0 if cat in COMPUTE else 20.0
            out.append({"name": name, "cat": cat, "ph": "X", "pid": rank, "tid": 0,
                        "ts": t, "dur": dur, "args": {"stage": ins.stage or 0}})
            t += dur + 5.0
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _compute_events(trace: dict) -> list[dict]:
    return [e for e in trace["traceEvents"] if e.get("ph") == "X" and e["cat"] in COMPUTE]


@pytest.fixture
def setup(tmp_path: Path):
    compiled = _compiled()
    manifest, programs = _programs(compiled)
    trace = synth_trace(programs)
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    return manifest, programs, trace, path


def test_one_rect_per_compute_event(setup):
    manifest, programs, trace, path = setup
    run = real_run(path, manifest, programs)
    root = ET.fromstring(timeline_svg([run]))
    rects = [r for r in root.iter(SVG + "rect") if r.get("class") == "op"]
    compute = [r for r in rects if r.get("data-kind") in COMPUTE]
    assert len(compute) == len(_compute_events(trace)) == 8  # 2 ranks x 2 mbs x (F, B)
    steps = [r for r in rects if r.get("data-kind") == "STEP"]
    assert len(steps) == 2
    # times rebased to the first event and in ms; micro-batches and ranks carried over
    f0 = next(r for r in compute if r.get("data-rank") == "0" and r.get("data-kind") == "F"
              and r.get("data-mb") == "0")
    assert float(f0.get("data-start")) == 0.0 and float(f0.get("data-end")) == 0.1
    assert f0.get("data-unit") == "ms"
    assert {r.get("data-rank") for r in compute} == {"0", "1"}
    # a batched send/receive keeps its full name in the tooltip
    batched = [e["name"] for e in trace["traceEvents"] if " + " in e.get("name", "")]
    titles = [t.text for t in root.iter(SVG + "title")]
    for name in batched:
        assert any(name in t for t in titles)


def test_cli_writes_svg_and_html(setup, tmp_path: Path):
    manifest, programs, trace, path = setup
    out = tmp_path / "programs"
    write_programs(out, manifest, programs)
    for name in ("real.svg", "real.html"):
        args = argparse.Namespace(
            dir=str(out), costs=None, steps=None, serial_comm=False, lazy_recv=False,
            timeline=str(tmp_path / name), trace=None, graph=None, mbs=None, rank=None,
            width=None, real_trace=str(path), window=None)
        assert cmd_viz.run(args) == 0
    root = ET.parse(tmp_path / "real.svg").getroot()
    assert len([r for r in root.iter(SVG + "rect") if r.get("data-kind") in COMPUTE]) == 8
    assert "real run" in (tmp_path / "real.html").read_text()


def test_compare_stacks_real_run(setup, tmp_path: Path):
    manifest, programs, trace, path = setup
    out = tmp_path / "programs"
    write_programs(out, manifest, programs)
    costs = {"format": "schedc-costs", "version": 1, "unit": "s",
             "stages": [{"F": 1e-4, "B": 1e-4}, {"F": 1e-4, "B": 1e-4}]}
    (tmp_path / "costs.json").write_text(json.dumps(costs))
    args = argparse.Namespace(
        sources=[str(out)], costs=str(tmp_path / "costs.json"), steps=None, serial_comm=False,
        lazy_recv=False, timeline=str(tmp_path / "vs.svg"), width=None, json=False,
        real_trace=str(path), window=None)
    assert cmd_compare.run(args) == 0
    root = ET.parse(tmp_path / "vs.svg").getroot()
    compute = [r for r in root.iter(SVG + "rect") if r.get("data-kind") in COMPUTE]
    assert len(compute) == 16  # the simulation's 8 and the real run's 8
    assert {r.get("data-unit") for r in compute} == {"s"}


def test_window_of_a_longer_run(tmp_path: Path):
    manifest, programs = _programs(_compiled())
    trace = synth_trace(programs, repeats=3, period=manifest.period)
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    run = real_run(path, manifest, programs, window=(1, 2))
    assert run.repeats == 3
    mbs = {ins.mb for s in run.timeline.streams for ins in s if ins.op in COMPUTE}
    assert mbs == {2, 3}
    assert min(min(s) for s in run.timeline.starts if s) == 0.0


@pytest.mark.parametrize("content", [
    "not json {",
    json.dumps({"traceEvents": 3}),
    json.dumps({"traceEvents": [{"name": "F s0 mb0 v0", "ph": "X", "pid": 0, "ts": "x",
                                 "dur": 1}]}),
    json.dumps({"traceEvents": []}),
    json.dumps({"traceEvents": [{"name": "F s5 mb0 v0", "ph": "X", "pid": 0, "ts": 0,
                                 "dur": 1}]}),
    json.dumps({"traceEvents": [{"name": "F s0 mb0 v0", "ph": "X", "pid": 7, "ts": 0,
                                 "dur": 1}]}),
])
def test_malformed_trace_names_the_file(tmp_path: Path, content: str):
    manifest, programs = _programs(_compiled())
    path = tmp_path / "broken-trace.json"
    path.write_text(content)
    with pytest.raises(UserError, match="broken-trace.json"):
        real_run(path, manifest, programs)


def test_missing_trace_names_the_file(tmp_path: Path):
    manifest, programs = _programs(_compiled())
    with pytest.raises(UserError, match="nowhere.json"):
        real_run(tmp_path / "nowhere.json", manifest, programs)
