"""A measured cost profile, in the `schedc-costs` format of docs/costs.md.

Per-stage op times are medians over the run's timed instructions (the
first segment's first occurrence of each op, which pays one-off allocation
costs, is kept: medians make it harmless). Message sizes come from the
shapes agreed at start-up, weight sizes from the stage models. SEND/RECV
times are not given: the simulator prices messages by latency and bandwidth,
and a receive's measured time is mostly waiting.
"""

from __future__ import annotations

import statistics

from schedc.program import Manifest

from .memory import memory_report

TIMED = ("F", "B", "I", "W", "ACC", "ALLREDUCE", "STEP", "STASH", "RELEASE", "SWAP", "LOOKAHEAD")


def cost_profile(manifest: Manifest, events: dict[int, list[tuple]], boundaries: dict,
                 stage_numels: list[int], peaks: dict[int, int | None] | None = None) -> dict:
    """events: global rank -> (op, label, stage, start s, duration s); peaks: global
    rank -> measured peak device bytes (None off CUDA)."""
    samples: list[dict[str, list[float]]] = [{} for _ in range(manifest.num_stages)]
    for evs in events.values():
        for op, _label, stage, _start, dur in evs:
            if op in TIMED:
                samples[stage].setdefault(op, []).append(dur)
    stages = [{op: statistics.median(v) for op, v in sorted(d.items())} for d in samples]
    sizes = [_bytes(boundaries.get(s)) for s in range(manifest.num_stages)]
    return {
        "format": "schedc-costs",
        "version": 1,
        "unit": "s",
        # Free-form provenance (the simulator ignores it): the run, and its measured
        # peak device memory against the compiler's predicted peaks (runtime/memory.py).
        "source": {"run": "schedc.runtime measured run",
                   "memory": memory_report(manifest, peaks or {}, stage_numels)},
        "stages": stages,
        "activation_bytes": sizes,  # output of stage s (0 at the last)
        "grad_bytes": [0] + sizes[:-1],  # input gradient stage s sends back (0 at stage 0)
        "weight_bytes_per_stage": [4 * n for n in stage_numels],
    }


def _bytes(spec) -> int:
    if spec is None:
        return 0
    shape, dtype = spec
    n = 1
    for d in shape:
        n *= d
    return n * dtype.itemsize
