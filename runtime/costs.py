"""A measured cost profile, in the `schedc-costs` format of docs/costs.md.

Per-stage op times are medians over the run's timed instructions (the
first segment's first occurrence of each op, which pays one-off allocation
costs, is kept: medians make it harmless). ACC is timed where it follows a
whole B when the run has such ACCs: there the backward adds straight into the
accumulator and ACC costs almost nothing, as in every schedule that does not
split its backward, while after the split probe's W (below) it adds a whole
gradient; a median over both would price neither. I and W come from the run's own
split (costs_split.py: some B ran as I then W); an op the run did not time
is derived by the simulator's rules (`schedc.simulate.derive`) and the rule
is written under `derived`. Message sizes come from the shapes agreed at
start-up, weight sizes from the stage models. SEND/RECV times are not given:
the simulator prices messages by the `link` measured by ping-pong
(costs_link.py), and a receive's measured time is mostly waiting.
`overhead.instruction` is the median gap between one timed instruction's end
and the next one's start on a rank: the interpreter's own time per
instruction, which no op's time holds. `overhead.message` is what a batch of
the runtime costs per message beyond the library's own calls (which the
ping-pong's latency holds). On a CPU with one torch thread per rank every
time is the rank's thread CPU time (what the op costs, not what other
processes on the same cores took from it: the simulator models that sharing
from `cores`); with more threads, and on CUDA, the wall clock (around a
synchronized op on CUDA).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch

from schedc.instructions import TIMED_OPS
from schedc.program import Manifest
from schedc.simulate.derive import DERIVABLE, derive

from .costs_host import sharing_efficiency
from .costs_link import library_cpu, link_figures
from .memory import memory_report
from .transport import DistTransport


@dataclass
class Measured:
    """What a run measured beside its instructions' wall-clock times."""

    # global rank -> per event (thread CPU time at its start, its CPU time); None on
    # CUDA, where an op's host CPU time says nothing of its device time
    cpu: dict[int, list[tuple[float, float]]] | None = None
    links: list[dict] = field(default_factory=list)  # costs_link.measure_links
    split_note: str | None = None  # how I and W were measured (costs_split.py)
    host: dict | None = None  # costs_host.host_facts: cores, threads, ranks, background
    comm: str | None = None  # "serial" or "overlap" (comm_mode)


def cost_profile(manifest: Manifest, events: dict[int, list[tuple]], boundaries: dict,
                 stage_numels: list[int], peaks: dict[int, int | None] | None = None,
                 measured: Measured | None = None) -> dict:
    """events: global rank -> (op, label, stage, start s, duration s); peaks: global
    rank -> measured peak device bytes (None off CUDA)."""
    m = measured or Measured()
    spans = _spans(events, m.cpu)
    samples: list[dict[str, list[float]]] = [{} for _ in range(manifest.num_stages)]
    after: dict[str, list[list[float]]] = {k: [[] for _ in range(manifest.num_stages)]
                                           for k in ("B", "W")}  # ACCs by their op before
    for rank, evs in events.items():
        last = None  # the rank's previous compute op
        for (op, _label, stage, _start, _dur), (_t0, dur) in zip(evs, spans[rank], strict=True):
            if op in TIMED_OPS:
                samples[stage].setdefault(op, []).append(dur)
                if op == "ACC" and last in after:
                    after[last][stage].append(dur)
            if op != "COMM":
                last = op
    for d, direct in zip(samples, after["B"], strict=True):
        if direct:  # an ACC right after a whole B: the runtime's own case (below)
            d["ACC"] = direct
    stages = [{op: statistics.median(v) for op, v in sorted(d.items())} for d in samples]
    derived = _derive(stages, m.split_note)
    _acc_after_w(stages, after, derived)
    sizes = [_bytes(boundaries.get(s)) for s in range(manifest.num_stages)]
    profile = {
        "format": "schedc-costs",
        "version": 1,
        "unit": "s",
        # Free-form provenance (the simulator ignores it): the run, its clock, the
        # measured links, and its measured peak device memory against the
        # compiler's predicted peaks (runtime/memory.py).
        "source": {"run": "schedc.runtime measured run",
                   "times": "thread CPU time" if m.cpu is not None else "wall clock",
                   "memory": memory_report(manifest, peaks or {}, stage_numels),
                   "links": m.links},
        "stages": stages,
        "derived": derived,
        "overhead": {"instruction": instruction_overhead(spans),
                     "message": message_overhead(events, spans, library_cpu(m.links))},
        "activation_bytes": sizes,  # output of stage s (0 at the last)
        "grad_bytes": [0] + sizes[:-1],  # input gradient stage s sends back (0 at stage 0)
        "weight_bytes_per_stage": [4 * n for n in stage_numels],
    }
    link = link_figures(m.links)
    if link is not None:
        profile["link"] = link
    if m.host is not None:
        host = dict(m.host)
        cores = host.pop("slots", None)
        if cores is not None:
            profile["cores"] = cores
            if m.cpu is not None:
                capacity = cores - len(events) * host.get("background", 0.0)
                efficiency = sharing_efficiency(events, m.cpu, capacity)
                if efficiency is not None:
                    host["efficiency"] = round(efficiency, 4)
        profile["host"] = host
    if m.comm is not None:
        profile["comm"] = m.comm
    return profile


def comm_mode(interps: dict) -> str:
    """How this run's transport holds a rank: "serial" over gloo (gloo sends a
    message only once its receiver has posted the receive, so a send the rank
    waits for holds it until then; which sends it waits for is the overlap
    rule's, --posted-batches); else "overlap" (NCCL waits on the device,
    in-process sends never block)."""
    for interp in interps.values():
        t = getattr(interp.transport, "inner", interp.transport)
        if isinstance(t, DistTransport) and t.device.type == "cpu":
            return "serial"
    return "overlap"


def single_threaded() -> bool:
    """One torch thread: an op's thread CPU time is the whole op's."""
    return torch.get_num_threads() == 1


def _spans(events: dict[int, list[tuple]], cpu: dict[int, list[tuple[float, float]]] | None
           ) -> dict[int, list[tuple[float, float]]]:
    """Per rank, per event: (start, duration) on the clock the profile uses."""
    if cpu is not None:
        return {r: list(cpu[r]) for r in events}
    return {r: [(e[3], e[4]) for e in evs] for r, evs in events.items()}


def _derive(stages: list[dict[str, float]], split_note: str | None) -> dict[str, str]:
    """Fill in B, I, W the run did not time (in place); op -> how each was obtained."""
    notes: dict[str, str] = {}
    if split_note and any("I" in t and "B" in t for t in stages):
        ratios = ", ".join(f"{t['I'] / t['B']:.2f}" if t.get("B") and "I" in t else "-"
                           for t in stages)
        notes["I"] = notes["W"] = f"{split_note} (I/B per stage: {ratios})"
    for op in DERIVABLE:
        rules: set[str] = set()
        for s, times in enumerate(stages):
            got = None if op in times else derive(op, times, s)
            if got is not None:
                times[op] = got[0]
                rules.add(got[1])
        if rules:
            notes[op] = "; ".join(sorted(rules))
    return notes


def _acc_after_w(stages: list[dict[str, float]], after: dict[str, list[list[float]]],
                 notes: dict[str, str]) -> None:
    """An ACC after a W costs more than one after a B where W's gradient is not
    added in place (stage 0, whose I ran the whole backward); in the zero-bubble
    schedules every W's ACC comes right after it, so the difference is counted
    in W's time (in place)."""
    extra = []
    for s, times in enumerate(stages):
        b, w = after["B"][s], after["W"][s]
        more = statistics.median(w) - statistics.median(b) if b and w and "W" in times else 0.0
        if more > 0:
            times["W"] += more
            extra.append(f"{1e3 * more:.2f} ms at stage {s}")
    if extra:
        note = "W holds what its ACC costs beyond an ACC after a B (" + ", ".join(extra) + ")"
        notes["W"] = f"{notes['W']}; {note}" if "W" in notes else note


def message_overhead(events: dict[int, list[tuple]], spans: dict[int, list[tuple]],
                     library: float) -> float:
    """The runtime's own time per message beyond the library's (`library`: the
    ping-pong's CPU per message): the median over the run's batches of their
    time per message (packing, checks, posting, taking the results), less the
    library's part, at least 0."""
    per_message = [dur / (label.count(" + ") + 1)
                   for r, evs in events.items()
                   for (op, label, *_), (_t0, dur) in zip(evs, spans[r], strict=True)
                   if op == "COMM"]
    return max(statistics.median(per_message) - library, 0.0) if per_message else 0.0


def instruction_overhead(spans: dict[int, list[tuple[float, float]]]) -> float:
    """Median over ranks of the median gap between consecutive timed instructions."""
    per_rank = []
    for evs in spans.values():
        ordered = sorted((start, start + dur) for start, dur in evs)
        gaps = [max(b[0] - a[1], 0.0) for a, b in zip(ordered, ordered[1:], strict=False)]
        if gaps:
            per_rank.append(statistics.median(gaps))
    return statistics.median(per_rank) if per_rank else 0.0


def _bytes(spec) -> int:
    if spec is None:
        return 0
    shape, dtype = spec
    n = 1
    for d in shape:
        n *= d
    return n * dtype.itemsize
