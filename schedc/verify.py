"""Verify: prove lowered programs correct before anyone runs them.

Guarantees (docs/programs.md, "Rules the runtime may rely on"): completeness,
dependencies (including the weight version every compute op reads), deadlock
freedom, and the Spec's bounds.
Asynchronous programs are checked unrolled for several body repetitions, so
what is proven is the steady state as well as fill and drain. Every failure is
a VerifyError naming rank, section, instruction index and reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from operator import attrgetter

from schedc.completeness import Completeness
from schedc.errors import VerifyError
from schedc.instructions import FIELDS, TABLE
from schedc.overlap import Overlap
from schedc.program import Instr, Manifest, RankProgram
from schedc.runs import Runs, replay_versions
from schedc.spec import Spec
from schedc.unroll import Unrolled
from schedc.version_table import VersionTable

ASYNC_REPEATS = (1, 2, 3)


def verify(manifest: Manifest, programs: Sequence[RankProgram], timed: int | None = None
           ) -> VersionTable:
    """Check every guarantee; return the version table of the longest run
    checked. `timed`: also clock the run of that many bodies under unit
    costs, for the analysis (`table.runs.timing()`)."""
    if len(programs) != manifest.world_size:
        raise VerifyError(f"{len(programs)} rank programs for world size {manifest.world_size}")
    limit = _microbatch_limit(manifest, programs)
    for prog in programs:
        _check_fields(manifest, prog, limit)
    repeats = (1,) if manifest.synchronous else ASYNC_REPEATS
    # One replay of the longest run stands for every shorter one (schedc.runs).
    runs = Runs(manifest, programs, max(repeats[-1], timed or 0), timed is not None)
    spec = Spec.from_dict(manifest.spec)
    completeness = Completeness(manifest, _fail)  # reads each section once, for every run
    unbounded: list[Unrolled] = []  # runs whose bounds follow from the next run's
    for n in repeats:
        table = None  # the last run's table goes before this run's is made (memory)
        try:
            un = runs.run(n)
            completeness.check(un)
            table = runs.prove(n, last=n == repeats[-1])
            if table is None:  # (VersionCheck.check)
                unbounded.append(un)
                continue
            check_bounds(spec, manifest, un, table)
        except VerifyError as exc:
            _check_unbounded(spec, manifest, unbounded)  # an earlier run's error first
            exc.repeats = n  # the run that failed (the compiler folds on 1)
            raise
        unbounded.clear()
    runs.proven()
    assert table is not None
    if timed is not None:
        table.runs = runs
    return table


def _check_unbounded(spec: Spec, manifest: Manifest, unbounded: list[Unrolled]) -> None:
    """The bounds of runs whose bounds only a later run's proved, each from
    its own table (a later run failed: one of these may fail first)."""
    for un in unbounded:
        try:
            check_bounds(spec, manifest, un, replay_versions(manifest, un))
        except VerifyError as exc:
            exc.repeats = un.repeats
            raise


def prove_overlap(manifest: Manifest, programs: Sequence[RankProgram], rule: Overlap
                  ) -> Manifest:
    """The manifest recording `rule` (schedc/overlap.py), once every guarantee
    is proven under it (`schedc compile --posted-batches K`)."""
    if Overlap.from_dict(manifest.overlap) == rule:
        return manifest
    proven = replace(manifest, overlap=rule.to_dict())
    verify(proven, programs)
    return proven


def _fail(un: Unrolled, rank: int, index: int, reason: str) -> VerifyError:
    section, idx = un.locate(rank, index)
    return VerifyError(reason, rank=rank, index=idx, section=section,
                       instr=un.streams[rank][index].label())


# ---- structure ------------------------------------------------------------------
# Per op, the fields it does not take (in FIELDS order, for the message).
_NOT_TAKEN = {op: tuple(n for n in FIELDS if n not in row.fields) for op, row in TABLE.items()}


def _microbatch_limit(manifest: Manifest, programs: Sequence[RankProgram]) -> int:
    """A bound no sound program set reaches: the run of one body is complete,
    so its micro-batches (and a period's) are fewer than its instructions.
    Refusing what passes it keeps the unrolled runs' micro-batches (the
    replay's keys, the completeness bit sets) as small as the programs."""
    limit = sum(len(seq) for prog in programs for seq in prog.sections().values())
    if manifest.period.microbatches > limit:
        raise VerifyError(f"a period of {manifest.period.microbatches} micro-batches, more "
                          f"than the programs' {limit} instructions can run")
    return limit


def _check_fields(manifest: Manifest, prog: RankProgram, limit: int) -> None:
    sound: set[tuple] = set()  # shapes found sound on this rank
    for section, seq in prog.sections().items():
        for i, ins in enumerate(seq):
            if _shape(ins, limit) in sound:
                continue
            reason = _field_problem(manifest, prog.rank, ins, limit)
            if reason:
                raise VerifyError(reason, rank=prog.rank, index=i, section=section,
                                  instr=ins.op)
            sound.add(_shape(ins, limit))


# What _field_problem reads of an instruction, but the micro-batch: an
# instruction of a shape already found sound is sound (0 <= mb < limit).
_SHAPE_FIELDS = ("op", "pipeline", "stage") + tuple(n for n in FIELDS if n != "mb")
_shape_of = attrgetter(*_SHAPE_FIELDS)


def _shape(ins: Instr, limit: int) -> tuple:
    return _shape_of(ins), None if ins.mb is None else 0 <= ins.mb < limit


def _field_problem(manifest: Manifest, rank: int, ins: Instr, limit: int) -> str | None:
    row = TABLE.get(ins.op)
    if row is None:
        return f"unknown op {ins.op!r}"
    for name in row.required:
        if getattr(ins, name) is None:
            return f"{ins.op} needs field {name!r}"
    for name in _NOT_TAKEN[ins.op]:
        if getattr(ins, name) is not None:
            return f"{ins.op} does not take field {name!r}"
    if not 0 <= ins.pipeline < manifest.num_pipelines:
        return f"pipeline {ins.pipeline} out of range"
    if not 0 <= ins.stage < manifest.num_stages:
        return f"stage {ins.stage} out of range"
    if manifest.stage_to_rank[ins.pipeline][ins.stage] != rank:
        return f"stage {ins.stage} of pipeline {ins.pipeline} is not on rank {rank}"
    if ins.mb is not None and ins.mb < 0:
        return "negative micro-batch"
    if ins.mb is not None and ins.mb >= limit:
        return f"micro-batch {ins.mb}, more than the programs' {limit} instructions can run"
    return None


# ---- bounds -------------------------------------------------------------------------
def check_bounds(spec: Spec, manifest: Manifest, un: Unrolled, table: VersionTable) -> None:
    for (p, s), (peak, where) in table.inflight_peaks.items():
        bound = spec.inflight_bound(s)
        if bound is not None and peak > bound:
            raise _fail(un, where[0], where[1],
                        f"max_inflight {bound} at stage {s} exceeded: {peak} micro-batches "
                        f"in flight (pipeline {p})")
    if spec.max_activations is not None:
        for r, (peak, idx) in enumerate(table.activation_peaks):
            if peak > spec.max_activations:
                raise _fail(un, r, idx, f"max_activations {spec.max_activations} exceeded: "
                            f"{peak} micro-batches alive on rank {r}")
    _check_non_negative(un, table)
    if spec.max_inconsistency is not None:
        _check_version_bound(un, table.worst_inconsistency(), spec.max_inconsistency,
                             "max_inconsistency", "inconsistency")
    if spec.max_delay is not None:
        _check_version_bound(un, table.worst_delay(), spec.max_delay, "max_delay", "delay")
    if isinstance(spec.versions, int):
        for (p, s), (copies, where) in table.version_peaks.items():
            if copies > spec.versions:
                raise _fail(un, where[0], where[1],
                            f"versions {spec.versions} exceeded: stage {s} (pipeline {p}) "
                            f"keeps {copies} weight versions")


def _check_non_negative(un: Unrolled, table: VersionTable) -> None:
    """A version read before it was produced is impossible; say so if it happens."""
    for what, later in (("inconsistency", "backward"), ("delay", "applied")):
        first = table.first_negative(later)  # the least key with one
        if first is not None:
            value, (p, s, mb), where = first
            raise _fail(un, where[0], where[1], f"negative {what} {value} for micro-batch "
                        f"{mb} at stage {s} (pipeline {p})")


def _check_version_bound(un: Unrolled, worst, bound: int | None, name: str, what: str) -> None:
    if bound is None or worst is None:
        return
    value, (p, s, mb), where = worst
    if value > bound:
        raise _fail(un, where[0], where[1],
                    f"{name} {bound} exceeded: {what} {value} for micro-batch {mb} at stage "
                    f"{s} (pipeline {p})")
