"""Loading program files and cutting a run into segments.

A segment is prologue + K bodies + epilogue: the unit between two drain
points. A run without checkpoints is one segment of `steps` bodies; with
`--save-every K` it is consecutive segments of K bodies, so that asynchronous
schedules checkpoint where the pipeline is empty. Synchronous schedules have
empty prologues and epilogues, so segmenting them changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from schedc.errors import ProgramFileError
from schedc.program import Instr, Manifest, RankProgram


def load(directory: Path) -> tuple[Manifest, list[RankProgram]]:
    """The manifest and every rank's program (checked by `schedc.files` when present)."""
    try:
        from schedc.files import load_programs
    except ImportError:  # the compiler's loader is optional for the runtime
        return _load_plain(Path(directory))
    return load_programs(directory)


def _load_plain(directory: Path) -> tuple[Manifest, list[RankProgram]]:
    path = directory / "manifest.json"
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text()))
        programs = [
            RankProgram.from_dict(json.loads((directory / f"rank{r}.json").read_text()))
            for r in range(manifest.world_size)
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProgramFileError(str(path), f"cannot load programs: {exc}") from None
    return manifest, programs


@dataclass(frozen=True)
class Segment:
    """Bodies [first, first + count) of the run, between two drain points.

    mb_base / version_base: micro-batches consumed and optimizer steps taken
    by the segments before (an asynchronous segment's prologue and epilogue
    add fill and drain micro-batches and steps to its bodies').
    """

    first: int
    count: int
    mb_base: int = 0
    version_base: int = 0


def span(programs: list[RankProgram], manifest: Manifest, count: int) -> tuple[int, int]:
    """(micro-batches, optimizer steps) of a segment of `count` bodies: the
    largest of the unrolled stream, from one repetition (the body and the
    epilogue of the last repetition are shifted by count - 1 periods), so a
    long run costs no unrolling."""
    period, last = manifest.period, count - 1
    mbs, steps = 0, 0
    for program in programs:
        for shift, part in ((0, program.prologue), (last, program.body),
                            (last, program.epilogue)):
            for i in part:
                if i.mb is not None:
                    mbs = max(mbs, i.mb + shift * period.microbatches + 1)
                if i.op == "STEP":
                    steps = max(steps, i.version + shift * period.steps)
    return mbs, steps


def plan(programs: list[RankProgram], manifest: Manifest, steps: int, save_every: int,
         start: Segment | None = None) -> list[Segment]:
    """Segments covering bodies start.first .. steps-1, each at most save_every long."""
    first, mb_base, version_base = (0, 0, 0) if start is None else (
        start.first, start.mb_base, start.version_base)
    size = save_every if save_every > 0 else max(steps - first, 1)
    out = []
    while first < steps:
        count = min(size, steps - first)
        out.append(Segment(first, count, mb_base, version_base))
        mbs, taken = span(programs, manifest, count)
        first, mb_base, version_base = first + count, mb_base + mbs, version_base + taken
    return out


def after(programs: list[RankProgram], manifest: Manifest, seg: Segment) -> Segment:
    """Where the run stands after `seg` (first = bodies done), for checkpoints."""
    mbs, taken = span(programs, manifest, seg.count)
    return Segment(seg.first + seg.count, 0, seg.mb_base + mbs, seg.version_base + taken)


def segment_stream(program: RankProgram, manifest: Manifest, seg: Segment) -> list[Instr]:
    """The instruction stream of one segment, shifted past the segments before it."""
    stream = program.unrolled(seg.count, manifest.period)
    return [i.shifted(seg.mb_base, seg.version_base) for i in stream]


def body_piece(program: RankProgram, manifest: Manifest, seg: Segment, k: int) -> list[Instr]:
    """Body k of segment `seg`, after the prologue when k = 0: the slice of
    `segment_stream` a run executes per body repetition (the Python API's step)."""
    period = manifest.period
    head = list(program.prologue) if k == 0 else []
    body = [i.shifted(k * period.microbatches, k * period.steps) for i in program.body]
    return [i.shifted(seg.mb_base, seg.version_base) for i in head + body]


def epilogue_piece(program: RankProgram, manifest: Manifest, seg: Segment, count: int
                   ) -> list[Instr]:
    """The epilogue of segment `seg` after `count` bodies: the rest of `segment_stream`."""
    last, period = count - 1, manifest.period
    return [i.shifted(seg.mb_base + last * period.microbatches,
                      seg.version_base + last * period.steps) for i in program.epilogue]
