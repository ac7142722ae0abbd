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

from . import autoresume, checkpoint, hostread, restarts
from .config import RunConfig
from .costs import Measured, comm_mode, cost_profile, single_threaded
from .costs_host import host_facts
from .costs_link import measure_links
from .costs_split import SplitProbe, as_programmed
from .interpreter import ExecutionError, Interpreter
from .memory import peak_device_bytes
from .metrics import MetricsLog, Progress, write_trace
from .programs import Segment, after, body_piece, epilogue_piece, plan
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
    # Runs one piece of every local rank's stream (driver.py); final: to the end.
    driver: Callable[[dict[int, list[Instr]], bool], None]
    boundaries: dict = field(default_factory=dict)  # boundary -> (shape, dtype)
    meta: dict = field(default_factory=dict)  # what a checkpoint must agree on
    stage_numels: list[int] = field(default_factory=list)
    unit: str = "tokens"  # a step counts tokens, or samples where the data has none
    per_microbatch: int = 0  # tokens (samples) per micro-batch of one replica
    split: SplitProbe | None = None  # measuring a profile: B run as I, W (costs_split.py)


def _per_step(s: Session) -> int:
    return s.manifest.period.microbatches * s.per_microbatch * s.cfg.dp


class Trainer:
    """A run, one body repetition at a time: `step()` runs the next body (with
    the prologue before the first of a segment), `close()` the epilogue and
    what follows a run. Each returns the metrics lines that became complete on
    this process (the writer's; [] elsewhere). With `--save-every K`, every K
    bodies end a segment: epilogue, drain, checkpoint."""

    def __init__(self, s: Session, steps: int | None = None) -> None:
        self.s = s
        try:
            start = _resume(s)  # may adopt the checkpoint's options (runtime/autoresume.py)
        except BaseException as exc:
            _record_failure(s, None, exc)
            raise
        done = start is _DONE  # resumed at the requested steps: nothing to run
        start = None if done else start
        m = s.manifest.period.microbatches
        self.first_step = 0 if start is None else start.mb_base // m
        writer = s.control.is_writer
        if start is not None and writer and s.cfg.metrics is not None:
            autoresume.trim_metrics(Path(s.cfg.metrics), self.first_step)
        self.log = MetricsLog(s.cfg.metrics if writer and not done else None, m, s.cfg.dp,
                              _per_step(s), first_step=self.first_step,
                              append=start is not None, unit=s.unit)
        self.seg = start or Segment(0, 0)
        self.k = 0  # bodies run in the current segment
        steps = s.cfg.steps if steps is None else steps
        segs = plan(s.programs, s.manifest, steps, s.cfg.save_every, start)
        total = after(s.programs, s.manifest, segs[-1]).version_base if segs else 0
        self.bodies_left = 0 if done else max(steps - self.seg.first, 0)  # of the plan
        self.progress = Progress(total or self.first_step, _per_step(s),
                                 writer and not s.cfg.quiet and not done, unit=s.unit)
        self.log.on_line = lambda line: self.progress.update(line["step"], line["loss"])
        self.t0 = time.perf_counter()
        self.closed = done
        # Measuring a profile: some B run as I then W (costs_split.py); not under
        # --on-nan skip, whose step settling counts the body's instructions.
        s.split = SplitProbe() if s.cfg.costs_out is not None and \
            s.cfg.on_nan != "skip" else None

    def _piece(self, stream: list[Instr]) -> list[Instr]:
        return self.s.split.piece(stream) if self.s.split else stream

    def step(self) -> list[dict]:
        s, n = self.s, len(self.log.lines)
        try:
            s.driver({r: self._piece(body_piece(s.programs[r], s.manifest, self.seg, self.k))
                      for r in s.interps}, False)
            self.k += 1
            self.bodies_left -= 1
            if s.cfg.save_every and self.k == s.cfg.save_every:
                self._end_segment()
            else:
                _poll_losses(s, self.log)
        except BaseException as exc:
            _record_failure(s, self.seg, exc)
            raise
        return self.log.lines[n:]

    def _end_segment(self) -> None:
        s = self.s
        seg = Segment(self.seg.first, self.k, self.seg.mb_base, self.seg.version_base)
        s.driver({r: self._piece(epilogue_piece(s.programs[r], s.manifest, seg, self.k))
                  for r in s.interps}, True)
        _drain(s)
        _poll_losses(s, self.log)
        _gather_losses(s, self.log)
        done = after(s.programs, s.manifest, seg)
        save_root = s.cfg.save_dir or s.cfg.resume
        if s.cfg.save_every and save_root is not None:
            _save(s, Path(save_root), done)
        self.seg, self.k = done, 0

    def close(self) -> list[dict]:
        """Drain the pipeline, write what is left (idempotent)."""
        if self.closed:
            return []
        self.closed = True
        n = len(self.log.lines)
        if self.k:
            try:
                self._end_segment()
            except BaseException as exc:
                _record_failure(self.s, self.seg, exc)
                raise
        elapsed = time.perf_counter() - self.t0
        self.progress.close()
        self.log.close()
        _finish(self.s, elapsed)
        return self.log.lines[n:]

    @property
    def lines(self) -> list[dict]:
        return self.log.lines if self.s.control.is_writer else []


def train(s: Session) -> list[dict]:
    """Run every planned body; returns the metrics lines (on the writer; [] elsewhere)."""
    t = Trainer(s)
    while t.bodies_left > 0:
        t.step()
    t.close()
    return t.lines


def _poll_losses(s: Session, log: MetricsLog) -> None:
    """On the writing process, losses go to the log as they are computed."""
    if not s.control.is_writer:
        return
    for mb, loss in _read_losses(s):
        log.add(s.dp_index, mb, loss)


def _read_losses(s: Session) -> list[tuple[int, float]]:
    """(mb, loss) of every loss the process's ranks computed since the last read, in
    one read (`hostread`: one host sync on a GPU); the records emptied."""
    pairs = [pair for interp in s.interps.values() for pair in interp.record.losses]
    for interp in s.interps.values():
        interp.record.losses.clear()
    values = hostread.read([loss.reshape(1) for _, loss in pairs]) if pairs else []
    return [(mb, v[0]) for (mb, _), v in zip(pairs, values, strict=True)]


def _drain(s: Session) -> None:
    for r, interp in s.interps.items():
        interp.drain()
        left = interp.leftovers()
        if left:
            raise RuntimeError(f"rank {r}: state left at a drain point: {'; '.join(left)}")


def _gather_losses(s: Session, log: MetricsLog) -> None:
    mine = []
    read = _read_losses(s)
    if not s.control.is_writer:  # the writer's own losses are in the log already
        mine.extend((s.dp_index, mb, loss) for mb, loss in read)
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
    """Under torchrun: which step this rank died at (numbered from 1, as in the
    metrics; None: before training), and why (for `schedc run --max-restarts`'s
    last line)."""
    m = s.manifest.period.microbatches
    step = None if seg is None else seg.mb_base // m + 1
    instr = getattr(exc, "instr", None)
    if instr is not None and instr.mb is not None:
        step = instr.mb // m + 1
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
    on_cpu = all(r.current.device.type == "cpu"
                 for i in s.interps.values() for r in i.replicas.values())
    by_cpu = on_cpu and single_threaded()  # else an op's CPU is spread over threads
    cpu = {s.global_rank(r): i.record.cpu for r, i in s.interps.items()} if by_cpu else None
    peak = peak_device_bytes()
    host = host_facts(len(s.interps)) if on_cpu else None  # before the ping-pong
    # Every process measures its links to its neighbours (costs_link.py).
    links = measure_links(s.interps, s.boundaries) if s.cfg.costs_out is not None else []
    labels = s.split.labels if s.split else {}
    gathered = s.control.gather((events, cpu, {s.global_rank(r): peak for r in s.interps},
                                 links, labels))
    if gathered is None:
        return
    merged: dict[int, list] = {}
    merged_cpu: dict[int, list] | None = {} if by_cpu else None
    peaks: dict[int, int | None] = {}
    all_links: list[dict] = []
    split: dict[str, tuple[str, str]] = {}
    for part, part_cpu, part_peaks, part_links, part_labels in gathered:
        merged.update(part)
        split.update(part_labels)
        if merged_cpu is not None:
            merged_cpu.update(part_cpu)
        peaks.update(part_peaks)
        all_links += part_links
    if s.cfg.trace is not None:  # the programs' instructions, split B's made whole
        write_trace(Path(s.cfg.trace), {r: as_programmed(evs, split) for r, evs in merged.items()})
    if s.cfg.costs_out is not None:
        measured = Measured(merged_cpu, all_links, s.split.note() if s.split else None,
                            host, comm_mode(s.interps))
        profile = cost_profile(s.manifest, merged, s.boundaries, s.stage_numels, peaks, measured)
        profile["source"].update(_micro_batch_source(s))
        Path(s.cfg.costs_out).write_text(json.dumps(profile, indent=1) + "\n")


def _micro_batch_source(s: Session) -> dict:
    """What one measured micro-batch held, so that `schedc tune` can rescale the
    profile's times without being told (`source.micro_batch_size`: samples)."""
    out: dict = {f"{s.unit}_per_microbatch": s.per_microbatch}
    if s.unit == "samples":
        out["micro_batch_size"] = s.per_microbatch
    elif s.per_microbatch == s.cfg.micro_batch_size * s.cfg.seq_len:
        out["micro_batch_size"] = s.cfg.micro_batch_size
    return out
