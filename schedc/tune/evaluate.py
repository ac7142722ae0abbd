"""One candidate: compile (verified, cached), apply the caps, simulate.

The staleness caps read the compiler's analysis, so a candidate over them is
dropped before it is simulated; the memory cap reads the simulation (bytes
need the profile's sizes).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from schedc.compiler import compile_spec
from schedc.errors import UserError
from schedc.modulo import modulo_plan
from schedc.simulate import figures, simulate
from schedc.spec import Spec, SpecError
from schedc.tune.cache import CompileCache, Programs
from schedc.tune.profile import Profile
from schedc.tune.space import Candidate

ASYNC_STEPS = 4  # body repetitions simulated for an asynchronous schedule (as `simulate`)
OK = "ok"


@dataclass(frozen=True)
class Query:
    """What the user asked: ranks, batch, replicas and the caps (None: no cap)."""

    ranks: int
    batch: int  # global batch, samples per step over all replicas
    dp: int = 1
    memory: float | None = None  # bytes per rank
    max_delay: int | None = None
    max_inconsistency: int | None = None

    @property
    def replica_batch(self) -> int:
        return self.batch // self.dp


@dataclass
class Row:
    candidate: Candidate
    status: str = OK  # ok | over memory | over max delay | over max inconsistency | refused
    # | skipped | duplicate
    reason: str = ""
    stages: int = 0
    mb_size: int = 0
    step_time: float | None = None  # predicted, profile units
    throughput: float | None = None  # samples per unit, all replicas
    bubble: float | None = None  # steady-state bubble under the profile
    unit_bubble: float | None = None  # the compiler's, unit costs
    memory: list[float] = field(default_factory=list)  # per rank, bytes
    max_delay: int | None = None
    max_inconsistency: int | None = None
    programs_digest: str = ""  # equal for candidates that compile to the same programs
    seconds: tuple[float, float] = (0.0, 0.0)  # spent compiling, simulating (not in JSON)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def peak_memory(self) -> float | None:
        return max(self.memory) if self.memory else None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.candidate.label(), **self.candidate.to_dict(),
                "status": self.status, "reason": self.reason or None, "stages": self.stages,
                "microbatch_size": self.mb_size, "step_time": self.step_time,
                "throughput": self.throughput, "bubble": self.bubble,
                "unit_bubble": self.unit_bubble, "peak_memory_bytes": self.peak_memory,
                "memory_bytes_per_rank": self.memory or None, "max_delay": self.max_delay,
                "max_inconsistency": self.max_inconsistency}


def compile_candidate(cand: Candidate, ranks: int, cache: CompileCache | None = None
                      ) -> Programs:
    """The candidate's verified programs (SpecError/UserError when refused)."""
    return (cache or CompileCache()).get(cand.spec(ranks), compile_spec)


def needs_search(spec: Spec) -> bool:
    """The compiler builds this Spec by its search (schedc.fallback: several
    asynchronous pipelines without a modulo plan; compiler.compile_with's rule),
    which takes tens of seconds per candidate at 8 ranks, or minutes to refuse."""
    return not spec.flush and spec.num_pipelines > 1 and modulo_plan(spec) is None


def evaluate(cand: Candidate, query: Query, profile: Profile,
             cache: CompileCache | None = None, search: bool = False) -> Row:
    """One candidate's row; search=False skips those only the compiler's search builds."""
    row = Row(cand, stages=cand.stages(query.ranks),
              mb_size=query.replica_batch // cand.microbatches)
    start = time.perf_counter()
    try:
        spec = cand.spec(query.ranks).validate()
        if not search and needs_search(spec):
            row.status = "skipped"
            row.reason = "built only by the compiler's search (slow); --search-compiles"
            return row
        compiled = compile_candidate(cand, query.ranks, cache)
    except (SpecError, UserError) as exc:
        row.status, row.reason = "refused", _one_line(exc)
        return row
    analysis = compiled[0].analysis
    row.max_delay = analysis["max_delay"]
    row.max_inconsistency = analysis["max_inconsistency"]
    row.unit_bubble = analysis["steady_state_bubble_ratio"]
    row.programs_digest = hashlib.sha256(repr(compiled[1]).encode()).hexdigest()
    compiled_at = time.perf_counter()
    row.seconds = (compiled_at - start, 0.0)
    if query.max_delay is not None and row.max_delay > query.max_delay:
        row.status = "over max delay"
        return row
    if query.max_inconsistency is not None and row.max_inconsistency > query.max_inconsistency:
        row.status = "over max inconsistency"
        return row
    try:
        _simulate(row, compiled, query, profile)
    except UserError as exc:  # the simulator's deadlock: a bug, reported, not hidden
        row.status, row.reason = "refused", f"simulate: {_one_line(exc)}"
        return row
    finally:
        row.seconds = (row.seconds[0], time.perf_counter() - compiled_at)
    if query.memory is not None and row.peak_memory is not None \
            and row.peak_memory > query.memory:
        row.status = "over memory"
    return row


def candidate_costs(cand: Candidate, query: Query, profile: Profile):
    """The candidate's cost model (the profile scaled to its stages and micro-batch)."""
    return profile.costs(cand.stages(query.ranks), query.replica_batch // cand.microbatches,
                         query.dp)


def _simulate(row: Row, compiled: Programs, query: Query, profile: Profile) -> None:
    manifest, programs = compiled
    costs = candidate_costs(row.candidate, query, profile)
    steps = 1 if manifest.synchronous else ASYNC_STEPS
    fig = figures(simulate(manifest, list(programs), costs, steps=steps))
    mb_per_unit = fig.steady_state_throughput
    row.step_time = row.candidate.microbatches / mb_per_unit if mb_per_unit else None
    row.throughput = mb_per_unit * row.mb_size * query.dp
    row.bubble = fig.steady_state_bubble_ratio
    static = profile.static_of(manifest.num_stages)
    if fig.peak_memory_bytes is None and not any(static):
        return  # the profile gives no sizes: memory unknown
    held: list[float] = [0.0] * manifest.world_size
    for pipeline in manifest.stage_to_rank:
        for stage, rank in enumerate(pipeline):
            held[rank] += static[stage]
    row.memory = [(r.peak_activation_bytes or 0.0) + (r.weight_bytes or 0.0) + held[r.rank]
                  for r in fig.ranks]


def _one_line(exc: Exception) -> str:
    text = exc.render() if isinstance(exc, UserError) else str(exc)
    return text.removeprefix("schedc: error: ").splitlines()[0]
