"""The training loop around the interpreters, common to both transports.

A run is a sequence of segments (see `programs.py`). After each segment the
pipeline is drained: outstanding sends are waited for, losses gathered to the
writing process, and a checkpoint taken when one is due. The loop is the same
for one process holding every rank (in-process) and for one process per rank
(torchrun); `Control` hides the difference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from schedc.errors import UserError
from schedc.files import programs_hash
from schedc.program import Instr, Manifest, RankProgram

from . import autoresume, checkpoint, restarts
from .config import RunConfig
from .costs import cost_profile
from .interpreter import ExecutionError, Interpreter
from .memory import peak_device_bytes
from .metrics import MetricsLog, Progress, write_trace
from .programs import Segment, after, plan, segment_stream
from .watchdog import EXIT_FAULT, EXIT_HANG


class Control(Protocol):
    """Control-plane communication between this run's processes (not the pipeline's)."""

    is_writer: bool  # writes metrics, trace and costs
    is_rank0: bool  # commits checkpoints

    def gather(self, obj: object) -> list | None: ...

    def barrier(self) -> None: ...


@dataclass
class Session:
    cfg: RunConfig
    manifest: Manifest
    programs: list[RankProgram]
    interps: dict[int, Interpreter]  # program rank -> interpreter, on this process
    global_rank: Callable[[int], int]  # program rank -> global rank
    dp_index: int
    control: Control
    run_streams: Callable[[dict[int, list[Instr]]], None]
    boundaries: dict = field(default_factory=dict)  # boundary -> (shape, dtype)
    meta: dict = field(default_factory=dict)  # what a checkpoint must agree on
    stage_numels: list[int] = field(default_factory=list)


def _tokens_per_step(s: Session) -> int:
    return s.manifest.period.microbatches * s.cfg.micro_batch_size * s.cfg.seq_len * s.cfg.dp


def train(s: Session) -> list[dict]:
    """Run every segment; returns the metrics lines (on the writer; [] elsewhere)."""
    try:
        start = _resume(s)
    except BaseException as exc:
        _record_failure(s, None, exc)
        raise
    if start is _DONE:
        return []
    m = s.manifest.period.microbatches
    tokens = _tokens_per_step(s)
    first_step = 0 if start is None else start.mb_base // m
    if start is not None and s.control.is_writer and s.cfg.metrics is not None:
        autoresume.trim_metrics(Path(s.cfg.metrics), first_step)
    log = MetricsLog(s.cfg.metrics if s.control.is_writer else None, m, s.cfg.dp, tokens,
                     first_step=first_step, append=start is not None)
    segs = plan(s.programs, s.manifest, s.cfg.steps, s.cfg.save_every, start)
    total = after(s.programs, s.manifest, segs[-1]).version_base if segs else first_step
    progress = Progress(total, tokens, s.control.is_writer and not s.cfg.quiet)
    log.on_line = lambda line: progress.update(line["step"], line["loss"])
    _watch_losses(s, log)
    save_root = s.cfg.save_dir or s.cfg.resume
    t0 = time.perf_counter()
    for seg in segs:
        streams = {r: segment_stream(s.programs[r], s.manifest, seg) for r in s.interps}
        try:
            s.run_streams(streams)
            _drain(s)
            _gather_losses(s, log)
            if s.cfg.save_every and save_root is not None:
                _save(s, Path(save_root), after(s.programs, s.manifest, seg))
        except BaseException as exc:
            _record_failure(s, seg, exc)
            raise
    elapsed = time.perf_counter() - t0
    progress.close()
    log.close()
    _finish(s, elapsed)
    return log.lines if s.control.is_writer else []


def _watch_losses(s: Session, log: MetricsLog) -> None:
    """On the writing process, losses go to the log as they are computed."""
    if not s.control.is_writer:
        return
    for interp in s.interps.values():
        interp.on_loss = lambda mb, loss: log.add(s.dp_index, mb, float(loss))


def _drain(s: Session) -> None:
    for r, interp in s.interps.items():
        interp.transport.drain()
        left = interp.leftovers()
        if left:
            raise RuntimeError(f"rank {r}: state left at a drain point: {'; '.join(left)}")


def _gather_losses(s: Session, log: MetricsLog) -> None:
    mine = []
    for interp in s.interps.values():
        if not s.control.is_writer:  # the writer's own losses are in the log already
            mine.extend((s.dp_index, mb, float(loss)) for mb, loss in interp.record.losses)
        interp.record.losses.clear()
    gathered = s.control.gather(mine)
    if gathered is not None:
        for part in gathered:
            for dp_index, mb, loss in part:
                log.add(dp_index, mb, loss)


def _save(s: Session, root: Path, where: Segment) -> None:
    for r, interp in s.interps.items():
        checkpoint.save_rank(root, where.first, s.global_rank(r), interp.replicas)
    s.control.barrier()  # every rank's file is durable before the commit
    if s.control.is_rank0:
        checkpoint.commit(root, where.first, {
            **s.meta, "programs_hash": programs_hash(s.manifest),
            "mb_base": where.mb_base, "version_base": where.version_base,
        }, world=s.manifest.world_size * s.cfg.dp)
    s.control.barrier()


_DONE = Segment(-1, 0)  # resumed at the requested steps: nothing to run


def _resume(s: Session) -> Segment | None:
    """Where the run starts: a checkpoint (runtime/autoresume.py), or None."""
    say = autoresume.say if s.control.is_rank0 else (lambda _: None)
    found = autoresume.locate(s.cfg, say)
    if found is None:
        return None
    expected = {**s.meta, "programs_hash": programs_hash(s.manifest)}
    s.cfg = autoresume.reconcile(found, s.cfg, expected)
    s.meta = {**s.meta, "save_every": s.cfg.save_every}
    done = autoresume.check_steps(found, s.cfg.steps)
    say(autoresume.nothing_left_line(found) if done else autoresume.announce(found, s.cfg.steps))
    for r, interp in s.interps.items():
        checkpoint.load_rank(found.path, s.global_rank(r), interp.replicas)
    meta = found.meta
    return _DONE if done else Segment(meta["steps_done"], 0, meta["mb_base"],
                                      meta["version_base"])


def _record_failure(s: Session, seg: Segment | None, exc: BaseException) -> None:
    """Under torchrun: which step this rank died at (None: before training),
    and why (for `schedc run --max-restarts`'s last line)."""
    m = s.manifest.period.microbatches
    step = None if seg is None else seg.mb_base // m
    instr = getattr(exc, "instr", None)
    if instr is not None and instr.mb is not None:
        step = instr.mb // m
    if isinstance(exc, UserError):
        code = exc.exit_code
    elif isinstance(exc, ExecutionError) and exc.reason.startswith("timeout:"):
        code = EXIT_HANG
    else:
        code = EXIT_FAULT
    for r in s.interps:
        restarts.record_failure(s.cfg.save_dir or s.cfg.resume, s.global_rank(r), step, code,
                                  str(exc) or type(exc).__name__)


def _finish(s: Session, elapsed: float) -> None:
    timed = s.cfg.trace is not None or s.cfg.costs_out is not None
    if not timed:
        return
    events = {s.global_rank(r): i.record.events for r, i in s.interps.items()}
    peak = peak_device_bytes()
    gathered = s.control.gather((events, {s.global_rank(r): peak for r in s.interps}))
    if gathered is None:
        return
    merged: dict[int, list] = {}
    peaks: dict[int, int | None] = {}
    for part, part_peaks in gathered:
        merged.update(part)
        peaks.update(part_peaks)
    if s.cfg.trace is not None:
        write_trace(Path(s.cfg.trace), merged)
    if s.cfg.costs_out is not None:
        profile = cost_profile(s.manifest, merged, s.boundaries, s.stage_numels, peaks)
        Path(s.cfg.costs_out).write_text(json.dumps(profile, indent=1) + "\n")
