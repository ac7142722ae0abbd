"""Completeness of a run (schedc.verify): every compute op once per
micro-batch and stage, each micro-batch in its own pipeline, a whole number
of steps, and every stage stepping once per batch.

The runs a verify checks are the same sections (prologue, body repetitions,
epilogue) at different shifts. So each section's micro-batches are read once,
per (op, pipeline, stage) as a set of bits, and a run is checked by shifting
and joining those sets: a few big-integer operations per section, not a pass
over its instructions. Whatever that cannot settle (a duplicate, a
micro-batch of another pipeline, an op the schedule does not run, a missing
micro-batch, a section the run cuts) is read again instruction by
instruction, which names the instruction or the stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schedc.errors import VerifyError
from schedc.instructions import COMPUTE_OPS, schedule_compute_ops
from schedc.program import Instr, Manifest
from schedc.spec import Spec
from schedc.unroll import Unrolled, stream_parts

Where = tuple[str, int, int]  # (op, pipeline, stage)
Fail = Callable[[Unrolled, int, int, str], VerifyError]  # (run, rank, index, reason)
_COUNTED = frozenset(COMPUTE_OPS) | {"STEP"}


@dataclass
class _Section:
    """One section's compute ops as bit sets (bit mb: the op ran for mb)."""

    masks: dict[Where, int] = field(default_factory=dict)
    counts: dict[Where, int] = field(default_factory=dict)
    residues: dict[Where, set[int]] = field(default_factory=dict)  # mb % pipelines
    steps: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    regular: bool = True  # no op twice for one micro-batch, none negative


class Completeness:
    """The completeness check of the runs of one program set."""

    def __init__(self, manifest: Manifest, fail: Fail) -> None:
        self.manifest, self.fail = manifest, fail
        self.split = bool(Spec.from_dict(manifest.spec).split_backward)
        self.kinds = schedule_compute_ops(self.split)
        self.sections: dict[int, tuple[Sequence[Instr], _Section]] = {}

    def check(self, un: Unrolled) -> None:
        """Raise VerifyError naming what is missing, doubled or misplaced."""
        if not self._settled(un):
            self._exact(un)

    # ---- by sections ------------------------------------------------------------------
    def _settled(self, un: Unrolled) -> bool:
        """The run is complete, shown section by section; False: not shown."""
        pipelines, kinds = self.manifest.num_pipelines, self.kinds
        joined: dict[Where, int] = {}
        steps: dict[tuple[int, int], int] = defaultdict(int)
        count, top = 0, -1
        for stream in un.streams:
            for seq, a, b, dm, _, _ in stream_parts(stream):
                part = self._section(seq)
                if a or b != len(seq) or not part.regular:
                    return False
                for where, mask in part.masks.items():
                    op, p, _ = where
                    if op not in kinds or any((x + dm) % pipelines != p
                                              for x in part.residues[where]):
                        return False
                    shifted, held = mask << dm, joined.get(where, 0)
                    if held & shifted:
                        return False
                    joined[where] = held | shifted
                    count += part.counts[where]
                    top = max(top, mask.bit_length() - 1 + dm)
                for key, n in part.steps.items():
                    steps[key] += n
        total = top + 1
        self._check_totals(un, total)
        if count != total * self.manifest.num_stages * len(kinds):
            return False  # something is missing: found and named by _exact
        self._check_steps(total, steps)
        return True

    def _section(self, seq: Sequence[Instr]) -> _Section:
        held = self.sections.get(id(seq))
        if held is not None and held[0] is seq:
            return held[1]
        part = _Section()
        pipelines = self.manifest.num_pipelines
        for ins in seq:
            if ins.op not in _COUNTED:
                continue
            if ins.op == "STEP":
                part.steps[(ins.pipeline, ins.stage)] += 1
                continue
            where, mb = (ins.op, ins.pipeline, ins.stage), ins.mb
            mask = part.masks.get(where, 0)
            if mb is None or mb < 0 or mask >> mb & 1:
                part.regular = False
                continue
            part.masks[where] = mask | 1 << mb
            part.counts[where] = part.counts.get(where, 0) + 1
            part.residues.setdefault(where, set()).add(mb % pipelines)
        self.sections[id(seq)] = (seq, part)  # the section held: its id stays
        return part

    # ---- instruction by instruction -------------------------------------------------
    def _exact(self, un: Unrolled) -> None:
        kinds, split, pipelines = self.kinds, self.split, self.manifest.num_pipelines
        # per (op, pipeline, stage), a byte per micro-batch: 1 once seen
        seen: dict[Where, bytearray] = {}
        steps: dict[tuple[int, int], int] = defaultdict(int)
        count, top = 0, -1
        for r, stream in enumerate(un.streams):
            for seq, a, b, dm, _, base in stream_parts(stream):
                for j in range(a, b):
                    ins = seq[j]
                    op = ins.op
                    if op == "STEP":
                        steps[(ins.pipeline, ins.stage)] += 1
                        continue
                    if op not in COMPUTE_OPS:
                        continue
                    i, mb, where = base + j, ins.mb + dm, (op, ins.pipeline, ins.stage)
                    if op not in kinds:
                        raise self.fail(un, r, i, f"{op} in a schedule whose backward is "
                                        f"{'split into I and W' if split else 'not split'}")
                    got = seen.setdefault(where, bytearray())
                    if mb >= len(got):
                        got.extend(bytes(mb + 1 - len(got) + len(got) // 2))
                    elif got[mb]:
                        raise self.fail(un, r, i, f"second {op} of micro-batch {mb} on stage "
                                        f"{ins.stage} (first at rank {_first(un, where, mb)})")
                    if ins.pipeline != mb % pipelines:
                        raise self.fail(un, r, i, f"micro-batch {mb} belongs to pipeline "
                                        f"{mb % pipelines}")
                    got[mb] = 1
                    count += 1
                    top = max(top, mb)
        total = top + 1
        self._check_totals(un, total)
        # Every op seen is distinct and in range (kind, pipeline of its mb, stage,
        # mb < total): as many as there should be means none is missing.
        if count != total * self.manifest.num_stages * len(kinds):
            self._name_missing(total, seen)
        self._check_steps(total, steps)

    def _name_missing(self, total: int, seen: dict[Where, bytearray]) -> None:
        manifest = self.manifest
        for mb in range(total):
            p = mb % manifest.num_pipelines
            for s in range(manifest.num_stages):
                for kind in self.kinds:
                    got = seen.get((kind, p, s), b"")
                    if mb >= len(got) or not got[mb]:
                        raise VerifyError(f"no {kind} for micro-batch {mb} on stage {s} "
                                          f"(pipeline {p})", rank=manifest.stage_to_rank[p][s])

    # ---- the run's totals -------------------------------------------------------------
    def _check_totals(self, un: Unrolled, total: int) -> None:
        manifest = self.manifest
        m = manifest.period.microbatches // manifest.period.steps
        if manifest.synchronous and total != un.repeats * manifest.period.microbatches:
            raise VerifyError(f"{total} micro-batches run in {un.repeats} synchronous bodies "
                              f"of {manifest.period.microbatches} each")
        if total % m:
            raise VerifyError(f"{total} micro-batches run, not a whole number of steps of {m}")

    def _check_steps(self, total: int, steps: dict[tuple[int, int], int]) -> None:
        manifest = self.manifest
        batches = total // (manifest.period.microbatches // manifest.period.steps)
        for p in range(manifest.num_pipelines):
            for s in range(manifest.num_stages):
                if steps[(p, s)] != batches:
                    raise VerifyError(
                        f"stage {s} (pipeline {p}) takes {steps[(p, s)]} steps for "
                        f"{batches} batches", rank=manifest.stage_to_rank[p][s])


def _first(un: Unrolled, where: Where, mb: int) -> int:
    """The rank whose stream holds op `where` for micro-batch mb first."""
    op, p, s = where
    return next(r for r, stream in enumerate(un.streams) for ins in stream
                if (ins.op, ins.pipeline, ins.stage, ins.mb) == (op, p, s, mb))
