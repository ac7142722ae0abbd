"""Metrics (JSON lines), the progress line, and the Chrome trace of a run.

Losses come from the last stage of every pipeline (and every data-parallel
replica); the loss of optimizer step k (numbered from 1, like the weight
version it produces: step k makes version k) is the mean over the
micro-batches (k-1)*m .. k*m - 1 of every replica, summed in (mb, replica)
order. A line is
written as soon as all of a step's losses are known to the writing process;
the rest arrive when losses are gathered at the next drain point.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .memory import peak_device_bytes


class MetricsLog:
    def __init__(self, path: Path | None, microbatches: int, dp: int, tokens_per_step: int,
                 first_step: int = 0, append: bool = False, unit: str = "tokens") -> None:
        """unit: what a step counts, "tokens" or (a model without tokens) "samples"."""
        self.m = microbatches
        self.unit = unit
        self.dp = dp
        self.tokens_per_step = tokens_per_step
        self.next_step = first_step
        self.pending: dict[int, dict[tuple[int, int], float]] = {}
        self.lines: list[dict] = []
        self._file = open(path, "a" if append else "w") if path else None  # noqa: SIM115
        self._t0 = time.perf_counter()
        self._t_last = self._t0
        self.on_line = None  # called with each line written

    def add(self, dp_index: int, mb: int, loss: float) -> None:
        self.pending.setdefault(mb // self.m, {})[(mb, dp_index)] = loss
        self._flush()

    def _flush(self) -> None:
        while len(self.pending.get(self.next_step, ())) == self.m * self.dp:
            parts = self.pending.pop(self.next_step)
            total = 0.0
            for key in sorted(parts):
                total += parts[key]
            now = time.perf_counter()
            line = {
                "step": self.next_step + 1,
                "loss": total / len(parts),
                self.unit: self.tokens_per_step,
                "time_s": round(now - self._t0, 6),
            }
            peak = peak_device_bytes()
            if peak is not None:  # CUDA: the caching allocator's peak so far
                line["peak_mem_bytes"] = peak
            self._t_last = now
            self.lines.append(line)
            if self._file:
                self._file.write(json.dumps(line) + "\n")
                self._file.flush()
            if self.on_line is not None:
                self.on_line(line)
            self.next_step += 1

    def close(self) -> None:
        if self._file:
            self._file.close()


class Progress:
    """`step k/N  loss x  tokens/s y` on stderr: redrawn on a terminal, else a line per 5 s."""

    def __init__(self, total: int, tokens_per_step: int, enabled: bool,
                 unit: str = "tokens") -> None:
        self.total = total
        self.unit = unit
        self.tokens_per_step = tokens_per_step
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._t0 = time.perf_counter()
        self._shown = 0.0
        self._steps = 0

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        self._steps = max(self._steps, step)
        now = time.perf_counter()
        if not self.tty and now - self._shown < 5 and self._steps < self.total:
            return
        self._shown = now
        rate = self._steps * self.tokens_per_step / max(now - self._t0, 1e-9)
        text = f"step {self._steps}/{self.total}  loss {loss:.4f}  {rate:,.0f} {self.unit}/s"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def write_trace(path: Path, events: dict[int, list[tuple]]) -> None:
    """Chrome trace (chrome://tracing, Perfetto): one process row per rank."""
    t0 = min((e[3] for evs in events.values() for e in evs), default=0.0)
    out = []
    for rank, evs in sorted(events.items()):
        out.append({"name": "process_name", "ph": "M", "pid": rank,
                    "args": {"name": f"rank {rank}"}})
        for op, label, stage, start, dur in evs:
            out.append({"name": label, "cat": op, "ph": "X", "pid": rank, "tid": 0,
                        "ts": (start - t0) * 1e6, "dur": dur * 1e6, "args": {"stage": stage}})
    path.write_text(json.dumps({"traceEvents": out, "displayTimeUnit": "ms"}))
