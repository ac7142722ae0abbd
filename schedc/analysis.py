"""The compiler's analysis, written to manifest.json under `analysis`.

Unit costs (F = 1, B = 2, or I = W = 1 when split), zero latency. Synchronous
programs are analysed over one step; asynchronous ones over prologue +
ANALYSIS_REPEATS bodies + epilogue, and their steady state over the body
alone, measured once the timing has become periodic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import attrgetter, sub
from typing import Any

from schedc.instructions import COMPUTE_OPS, unit_cost
from schedc.program import Instr, Manifest, RankProgram
from schedc.timing import Timing, unit_timing
from schedc.unroll import Unrolled
from schedc.version_table import Replica, VersionTable

ANALYSIS_REPEATS = 4
STEADY_REPEATS = 8
SETTLED_REPEATS = 4  # repetitions 1 and 2 compared, 3 next to the epilogue


def analyse(manifest: Manifest, programs: Sequence[RankProgram], table: VersionTable
            ) -> dict[str, Any]:
    repeats = analysed_repeats(manifest)
    timing = _timed_run(manifest, programs, table, repeats)[1]  # the run's streams go
    makespan = timing.makespan
    ranks = manifest.world_size
    busy = sum(_section_busy(prog.prologue) + repeats * _section_busy(prog.body)
               + _section_busy(prog.epilogue) for prog in programs)
    bubble = 1.0 - busy / (ranks * makespan) if makespan else 0.0
    steady = bubble if manifest.synchronous else steady_state_bubble(
        manifest, programs, _settled_period(programs, timing, repeats))
    del timing  # before the per-key figures are made (memory)
    incons, delays = table.by_replica("backward"), table.by_replica("applied")
    return {
        "cost_model": "unit: F=1, B=2, I=W=1, others 0, zero latency",
        "analysed_repeats": repeats,
        "makespan": makespan,
        "bubble_ratio": bubble,
        "steady_state_bubble_ratio": steady,
        "ranks": _rank_figures(manifest, table),
        "stages": _stage_figures(manifest, table, _histograms(incons), _histograms(delays)),
        "max_inconsistency": max((max(d) for _, _, d in incons), default=0),
        "max_delay": max((max(d) for _, _, d in delays), default=0),
        "data_parallel": _dp_figures(manifest),
        **({} if manifest.synchronous else {"versions": _version_table(table)}),
    }


def _timed_run(manifest: Manifest, programs: Sequence[RankProgram], table: VersionTable,
               repeats: int) -> tuple[Unrolled, Timing]:
    """The run of `repeats` bodies and its unit timing: the verifier's replay
    times it when asked to (verify's `timed`)."""
    runs, table.runs = table.runs, None
    if runs is not None and runs.longest == repeats:
        return runs.timing()
    un = Unrolled.of(programs, manifest.period, repeats)
    return un, unit_timing(un.streams)


def analysed_repeats(manifest: Manifest) -> int:
    """The bodies of the run the analysis times."""
    return 1 if manifest.synchronous else ANALYSIS_REPEATS


def _dp_figures(manifest: Manifest) -> dict[str, Any]:
    """Parameter bytes each replica exchanges per step, as a fraction of a
    synchronous all-reduce of the gradients (1.0)."""
    spec = manifest.spec
    if spec.get("dp_mode", "sync") == "sync":
        return {"mode": "sync", "exchanged_fraction_per_step": 1.0}
    fraction = spec["dp_fraction"] / spec["dp_period"]
    return {"mode": spec["dp_mode"], "fraction": spec["dp_fraction"],
            "period": spec["dp_period"], "max_lateness": spec["dp_max_lateness"],
            "beta": spec["dp_beta"], "exchanged_fraction_per_step": fraction}


def steady_state_bubble(manifest: Manifest, programs: Sequence[RankProgram],
                        settled: float | None = None) -> float:
    """Idle fraction of the repeated body alone, once timing is periodic: the
    body's time is measured between repetitions STEADY_REPEATS - 2 and
    STEADY_REPEATS - 1 of a longer run. `settled`: that time already known
    (`_settled_period`), so the long run is not timed."""
    busy = sum(_section_busy(prog.body) for prog in programs)
    period = settled
    if period is None:
        un = Unrolled.of(programs, manifest.period, STEADY_REPEATS)
        timing = unit_timing(un.streams)
        period = 0.0
        for r, prog in enumerate(programs):
            body = len(prog.body)
            last = len(prog.prologue) + body * (STEADY_REPEATS - 1) - 1
            period = max(period, timing.end[r][last] - timing.end[r][last - body])
    return 1.0 - busy / (len(programs) * period) if period else 0.0


def _settled_period(programs: Sequence[RankProgram], timing: Timing, repeats: int
                    ) -> float | None:
    """The body's time, where `timing` (of `repeats` repetitions) shows it has
    become periodic: every instruction of every rank starts and ends exactly
    one period after its copy in the repetition before, from repetition 1 to
    repetition 2 (repetition 0 may still hold the warm-up's transient, the
    last one is next to the epilogue). Under unit costs the timing is a longest
    path over a graph that repeats with the body, so from there on every
    repetition repeats the last one, and a longer run measures this period
    (tests/compiler/test_construct.py compares the two on a grid). None where
    the timing has not settled: the long run is timed."""
    if repeats < SETTLED_REPEATS:
        return None
    period: float | None = None
    for r, prog in enumerate(programs):
        body, lo = len(prog.body), len(prog.prologue) + len(prog.body)
        if not body:
            continue
        for seq in (timing.start[r], timing.end[r]):
            if period is None:
                period = seq[lo + body] - seq[lo]
            steps = list(map(sub, seq[lo + body:lo + 2 * body], seq[lo:lo + body]))
            if steps.count(period) != body:
                return None
    return period


def _rank_figures(manifest: Manifest, table: VersionTable) -> list[dict[str, int]]:
    out = []
    for r in range(manifest.world_size):
        replicas = [(p, s) for p, m in enumerate(manifest.stage_to_rank)
                    for s, rank in enumerate(m) if rank == r]
        copies = sum(table.copy_peaks.get(rep, (1, None))[0] for rep in replicas)
        out.append({
            "rank": r,
            "stages": [[p, s] for p, s in replicas],
            "peak_activations": table.activation_peaks[r][0],
            "weight_copies": copies,
        })
    return out


Histograms = dict[Replica, dict[int, int]]


def _histograms(made: list[tuple[Replica, list[int], list[int]]]) -> Histograms:
    """Per replica with keys: how many of them have each value."""
    return {rep: dict(Counter(values)) for rep, _, values in made}


def _stage_figures(manifest: Manifest, table: VersionTable, incons: Histograms,
                   delays: Histograms) -> list[list[dict[str, Any]]]:
    out = []
    for p in range(manifest.num_pipelines):
        row = []
        for s in range(manifest.num_stages):
            hist, dhist = incons.get((p, s), {}), delays.get((p, s), {})
            row.append({
                "stage": s,
                "rank": manifest.stage_to_rank[p][s],
                "max_inconsistency": max(hist, default=0),
                "max_delay": max(dhist, default=0),
                "max_inflight": table.inflight_peaks.get((p, s), (0, None))[0],
                "weight_copies": table.copy_peaks.get((p, s), (1, None))[0],
                "inconsistency_histogram": {str(k): v for k, v in sorted(hist.items())},
                "delay_histogram": {str(k): v for k, v in sorted(dhist.items())},
            })
        out.append(row)
    return out


def _version_table(table: VersionTable) -> dict[str, Any]:
    """Per pipeline and stage with keys: [mb, forward version, backward
    version, applied to], by micro-batch (the table's key order)."""
    by_stage = {}
    for (p, s), cols in table.replicas():  # every forward has all three (by_replica)
        slots = cols.slots()
        if slots:
            by_stage[f"{p}/{s}"] = list(map(list, zip(
                cols.mbs(slots), *(map(column.__getitem__, slots)
                                   for column in (cols.forward, cols.backward, cols.applied)),
                strict=True)))
    return {"columns": ["mb", "forward", "backward", "applied_to"], "by_stage": by_stage}


def _section_busy(seq: Sequence[Instr]) -> float:
    """Unit-cost compute time of a section; a run's is its sections' (costs do
    not depend on the body's shift), so the run's streams are not read."""
    return sum(unit_cost(op) * n for op, n in Counter(map(_OP, seq)).items()
               if op in COMPUTE_OPS)


_OP = attrgetter("op")
