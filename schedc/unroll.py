"""Unrolled instruction streams, and the way back from a stream index to the
section (prologue, body repetition k, epilogue) and index a person can find
in the program file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedc.program import Instr, Period, RankProgram


@dataclass(frozen=True)
class Unrolled:
    programs: tuple[RankProgram, ...]
    period: Period
    repeats: int
    streams: tuple[tuple[Instr, ...], ...]

    @staticmethod
    def of(programs: Sequence[RankProgram], period: Period, repeats: int) -> Unrolled:
        streams = tuple(tuple(p.unrolled(repeats, period)) for p in programs)
        return Unrolled(tuple(programs), period, repeats, streams)

    def epilogue_start(self, rank: int) -> int:
        """Stream index on `rank` where the epilogue starts: a longer run is the
        same stream up to there (schedc.runs)."""
        prog = self.programs[rank]
        return len(prog.prologue) + self.repeats * len(prog.body)

    def locate(self, rank: int, index: int) -> tuple[str, int]:
        """(section, index within it) of stream position `index` on `rank`."""
        prog = self.programs[rank]
        if index < len(prog.prologue):
            return "prologue", index
        index -= len(prog.prologue)
        body = len(prog.body)
        if body and index < body * self.repeats:
            k, i = divmod(index, body)
            return ("body" if self.repeats == 1 else f"body (repetition {k})"), i
        return "epilogue", index - body * self.repeats
