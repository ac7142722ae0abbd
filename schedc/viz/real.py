"""The timeline of a real run, read from the Chrome trace the runtime writes
(`--trace FILE`), drawn by the same code as a simulated one.

The runtime names every event by its instruction's label (`F s0 mb1 v0`), or
by the labels of a batch of sends and receives joined by " + ". Each event is
matched, rank by rank and in order, to the next instructions of the rank's
unrolled program with those labels (instructions the runtime does not time are
skipped), so the drawing carries the program's instructions and stream
indices, and a trace of another program is refused.

A `RealRun` has the attributes the timeline drawer reads from a `Simulation`
(timeline, costs.unit, manifest, name, steps), so `timeline_svg` takes either,
and both can stack in one figure. Plain data only: never imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schedc.errors import UserError
from schedc.program import Manifest, RankProgram
from schedc.simulate.engine import Timeline
from schedc.unroll import Unrolled

# Seconds per unit; the trace is in microseconds.
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


@dataclass(frozen=True)
class _Unit:
    unit: str


@dataclass
class RealRun:
    """A real run, shaped like a Simulation for the drawers.

    timeline.serial_comm is True: in a real run a rank waits for its sends and
    receives, so they are drawn on its row. labels: (rank, stream index) ->
    the event's full name where it covers several instructions (a batch).
    window: the body repetitions drawn, [first, last). indices[r][i]: the
    unrolled-program stream index of timeline.streams[r][i].
    """

    manifest: Manifest
    timeline: Timeline
    costs: _Unit
    name: str
    steps: int
    window: tuple[int, int]
    repeats: int
    labels: dict[tuple[int, int], str] = field(default_factory=dict)
    indices: list[list[int]] = field(default_factory=list)


def read_trace(path: str | Path) -> dict[int, list[dict[str, Any]]]:
    """Complete ("X") events per rank, in time order; UserError naming the file
    when it is not a trace of the runtime's form."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the trace: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a JSON trace: {exc}") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise UserError(f"{path}: not a Chrome trace (no traceEvents list)")
    out: dict[int, list[dict[str, Any]]] = {}
    for k, ev in enumerate(events):
        if not isinstance(ev, dict) or ev.get("ph") != "X":
            continue
        name, pid, ts, dur = ev.get("name"), ev.get("pid"), ev.get("ts"), ev.get("dur")
        ok = (isinstance(name, str) and isinstance(pid, int) and not isinstance(pid, bool)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) for v in (ts, dur)))
        if not ok or pid < 0 or dur < 0:
            raise UserError(f"{path}: event {k} is not a complete event with a name, "
                            f"a rank (pid), ts and dur >= 0: {json.dumps(ev)[:120]}")
        out.setdefault(pid, []).append(ev)
    if not out:
        raise UserError(f"{path}: the trace holds no complete (\"X\") events")
    for evs in out.values():
        evs.sort(key=lambda e: e["ts"])
    return out


def _repeats(events: dict[int, list[dict[str, Any]]], microbatches: int) -> int:
    """Body repetitions the run went through, from the highest micro-batch named."""
    top = -1
    for evs in events.values():
        for ev in evs:
            for word in ev["name"].split():
                if word.startswith("mb") and word[2:].isdigit():
                    top = max(top, int(word[2:]))
    return max(1, -(-(top + 1) // max(microbatches, 1)))


def _match(path: str | Path, rank: int, stream: Sequence, evs: list[dict[str, Any]]
           ) -> list[tuple[int, dict[str, Any]]]:
    """(stream index of the event's first instruction, event), in order."""
    out, pos = [], 0
    labels = [ins.label() for ins in stream]
    for ev in evs:
        first = None
        for label in ev["name"].split(" + "):
            start = pos
            while pos < len(labels) and labels[pos] != label:
                pos += 1
            if pos == len(labels):
                raise UserError(
                    f"{path}: rank {rank}: event {ev['name']!r} at ts {ev['ts']:.6g} us matches "
                    f"no later instruction of the program (after stream index {start}); "
                    "is this the trace of a run of these programs?")
            if first is None:
                first = pos
            pos += 1
        out.append((first, ev))
    return out


def real_run(path: str | Path, manifest: Manifest, programs: Sequence[RankProgram],
             window: tuple[int, int] | None = None, unit: str = "ms", name: str = "",
             ) -> RealRun:
    """The run recorded in trace `path` of these programs, as a drawable RealRun.

    window: body repetitions [a, b) to draw (with the prologue when a == 0 and
    the epilogue when b reaches the end); default: all. Times are rebased so the
    window starts at 0, in `unit` (s, ms or us).
    """
    if unit not in UNITS:
        raise UserError(f"unknown time unit {unit!r}: one of {', '.join(UNITS)}")
    events = read_trace(path)
    bad = sorted(r for r in events if r >= len(programs))
    if bad:
        raise UserError(f"{path}: events of rank {bad[0]}, but the programs have "
                        f"{len(programs)} ranks")
    repeats = _repeats(events, manifest.period.microbatches)
    a, b = window if window is not None else (0, repeats)
    if not 0 <= a < b or a >= repeats:
        raise UserError(f"{path}: window {a}:{b} is outside the run's {repeats} body "
                        f"repetition(s) (0:{repeats})")
    b = min(b, repeats)
    unrolled = Unrolled.of(programs, manifest.period, repeats)
    factor = 1e-6 / UNITS[unit]
    kept: list[list[tuple[int, dict[str, Any]]]] = []
    for r in range(len(programs)):
        matched = _match(path, r, unrolled.streams[r], events.get(r, []))
        kept.append([(i, ev) for i, ev in matched
                     if _in_window(unrolled, r, i, a, b, repeats)])
    starts = [ev["ts"] for row in kept for _, ev in row]
    if not starts:
        raise UserError(f"{path}: no events in body repetitions {a}:{b}")
    t0 = min(starts)
    streams, st, en, labels = [], [], [], {}
    for r, row in enumerate(kept):
        streams.append([unrolled.streams[r][i] for i, _ in row])
        st.append([(ev["ts"] - t0) * factor for _, ev in row])
        en.append([(ev["ts"] + ev["dur"] - t0) * factor for _, ev in row])
        for i, ev in row:
            if " + " in ev["name"]:
                labels[(r, i)] = ev["name"]
    # Stream indices in the drawing are those of the unrolled program.
    indices = [[i for i, _ in row] for row in kept]
    timeline = Timeline(streams, st, en, [], serial_comm=True)
    return RealRun(manifest, timeline, _Unit(unit), name or f"real run ({Path(path).name})",
                   b - a, (a, b), repeats, labels, indices)


def _in_window(unrolled: Unrolled, rank: int, index: int, a: int, b: int, repeats: int) -> bool:
    section, _ = unrolled.locate(rank, index)
    if section == "prologue":
        return a == 0
    if section == "epilogue":
        return b >= repeats
    body = len(unrolled.programs[rank].body)
    k = (index - len(unrolled.programs[rank].prologue)) // body
    return a <= k < b


def default_window(repeats: int) -> tuple[int, int]:
    """All of a short run; of a long one, 4 repetitions after the first (warm-up)."""
    return (0, repeats) if repeats <= 5 else (1, 5)
