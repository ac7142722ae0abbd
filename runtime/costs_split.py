"""The measured I/W split of a profiling run (`--costs-out`).

A run of a schedule without I and W (1F1B, GPipe, PACI, ...) would leave a
profile that cannot price ZB-H1. So while measuring, every second B of each
stage replica runs as its I followed at once by its W: the interpreter's own
split (runtime/split_backward.py), which computes bit for bit the gradients
of a B. The run's timings then hold B, I and W of every stage, measured side
by side under the same load, and the profile carries all three.

Only the stream handed to the interpreter changes (one B becomes I, W with the
same fields); the programs, the gradients and the weights do not.
"""

from __future__ import annotations

from dataclasses import replace

from schedc.program import Instr

EVERY = 2  # every EVERY-th B of a stage replica is split


class SplitProbe:
    """Rewrites pieces of one process's streams; counts B per (pipeline, stage)."""

    def __init__(self, every: int = EVERY) -> None:
        self.every = every
        self.seen: dict[tuple[int, int | None], int] = {}
        self.labels: dict[str, tuple[str, str]] = {}  # label of I -> (of its B, of its W)

    def piece(self, stream: list[Instr]) -> list[Instr]:
        out: list[Instr] = []
        for ins in stream:
            if ins.op != "B":
                out.append(ins)
                continue
            key = (ins.pipeline or 0, ins.stage)
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
            if n % self.every == self.every - 1:
                i, w = replace(ins, op="I"), replace(ins, op="W")
                self.labels[i.label()] = (ins.label(), w.label())
                out += [i, w]
            else:
                out.append(ins)
        return out

    def note(self) -> str:
        which = "every B" if self.every == 1 else f"1 B in {self.every}"
        return f"measured: {which} of each stage ran as I then W"


def as_programmed(events: list[tuple], labels: dict[str, tuple[str, str]]) -> list[tuple]:
    """A rank's timed events as the programs have them: each split B's I and W
    (adjacent) made one B event again, for the trace (`labels`: `SplitProbe.labels`)."""
    out: list[tuple] = []
    k = 0
    while k < len(events):
        op, label, stage, start, dur = events[k]
        pair = labels.get(label) if op == "I" else None
        if pair is not None and k + 1 < len(events) and events[k + 1][1] == pair[1]:
            w = events[k + 1]
            out.append(("B", pair[0], stage, start, w[3] + w[4] - start))
            k += 2
            continue
        out.append(events[k])
        k += 1
    return out
