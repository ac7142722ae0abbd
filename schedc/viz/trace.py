"""Chrome / Perfetto trace JSON of a simulated run (open in ui.perfetto.dev).

One process per rank with two tracks: `compute` (every op on the rank's
stream) and `comm` (each send from post to arrival, each receive from post to
data). A flow arrow (ph s -> ph f) joins every send to its receive.
Timestamps are microseconds; a unit-cost run maps 1 unit to 1 ms so that the
viewer's labels stay readable.
"""

from __future__ import annotations

from typing import Any

from schedc.instructions import COMM_OPS
from schedc.simulate.run import Simulation

_TO_US = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3, "unit": 1e3}
COMPUTE_TID, COMM_TID = 0, 1


def trace_events(sim: Simulation) -> dict[str, Any]:
    tl = sim.timeline
    us = _TO_US.get(sim.costs.unit, 1.0)
    events: list[dict[str, Any]] = []
    for r, stream in enumerate(tl.streams):
        events.append({"ph": "M", "name": "process_name", "pid": r,
                       "args": {"name": f"rank {r}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": r,
                       "args": {"sort_index": r}})
        for tid, name in ((COMPUTE_TID, "compute"), (COMM_TID, "comm")):
            events.append({"ph": "M", "name": "thread_name", "pid": r, "tid": tid,
                           "args": {"name": name}})
        for i, ins in enumerate(stream):
            comm = ins.op in COMM_OPS
            events.append({
                "ph": "X", "name": ins.label(), "cat": ins.op, "pid": r,
                "tid": COMM_TID if comm and not tl.comm_on_clock else COMPUTE_TID,
                "ts": tl.starts[r][i] * us, "dur": (tl.ends[r][i] - tl.starts[r][i]) * us,
                "args": {k: v for k, v in ins.to_dict().items() if k != "op"} | {"index": i},
            })
    events += _flows(sim, us)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"schedule": sim.name, "unit": sim.costs.unit, "steps": sim.steps}}


def _flows(sim: Simulation, us: float) -> list[dict[str, Any]]:
    tl = sim.timeline
    tid = COMPUTE_TID if tl.comm_on_clock else COMM_TID
    out = []
    for n, (sr, sp, rr, rp) in enumerate(tl.messages):
        label = tl.streams[sr][sp].label()
        out.append({"ph": "s", "id": n, "name": label, "cat": "message", "pid": sr, "tid": tid,
                    "ts": tl.starts[sr][sp] * us})
        out.append({"ph": "f", "bp": "e", "id": n, "name": label, "cat": "message", "pid": rr,
                    "tid": tid, "ts": tl.ends[rr][rp] * us})
    return out
