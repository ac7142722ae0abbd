"""Unrolled instruction streams, and the way back from a stream index to the
section (prologue, body repetition k, epilogue) and index a person can find
in the program file."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from schedc.program import Instr, Period, RankProgram, shift_all


@dataclass(frozen=True)
class Unrolled:
    programs: tuple[RankProgram, ...]
    period: Period
    repeats: int
    streams: tuple[Sequence[Instr], ...]  # per rank; RunStream in the verifier's runs

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


class RunStream(Sequence[Instr]):
    """One rank's stream in a run, as its sections end to end, each with the
    shift it runs at: (instructions, micro-batch shift, version shift). An
    instruction is shifted when read (`[i]`, iteration), never stored shifted:
    the runs a verifier checks share the programs' own instructions (memory).
    Bulk readers take `parts(lo, hi)` and shift what they need themselves."""

    __slots__ = ("sections", "starts", "length")

    def __init__(self, sections: Iterable[tuple[Sequence[Instr], int, int]] = ()) -> None:
        self.sections: list[tuple[Sequence[Instr], int, int]] = []
        self.starts: list[int] = []  # stream index of each section's first instruction
        self.length = 0
        for seq, dm, dv in sections:
            self.append(seq, dm, dv)

    def append(self, seq: Sequence[Instr], dm: int = 0, dv: int = 0) -> None:
        self.sections.append((seq, dm, dv))
        self.starts.append(self.length)
        self.length += len(seq)

    def head(self, sections: int) -> RunStream:
        """The first `sections` sections, as a stream of their own."""
        return RunStream(self.sections[:sections])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.length))]
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(i)
        k = bisect_right(self.starts, i) - 1
        seq, dm, dv = self.sections[k]
        ins = seq[i - self.starts[k]]
        return ins.shifted(dm, dv) if dm or dv else ins

    def __iter__(self) -> Iterator[Instr]:
        for seq, dm, dv in self.sections:
            if dm or dv:
                yield from shift_all(seq, dm, dv)
            else:
                yield from seq

    def parts(self, lo: int = 0, hi: int | None = None
              ) -> Iterator[tuple[Sequence[Instr], int, int, int, int, int]]:
        """(seq, a, b, dm, dv, base) for each section overlapping lo..hi-1:
        stream index base + j holds seq[j], a <= j < b, shifted by (dm, dv)."""
        hi = self.length if hi is None else hi
        for (seq, dm, dv), start in zip(self.sections, self.starts, strict=True):
            a, b = max(lo - start, 0), min(hi - start, len(seq))
            if a < b:
                yield seq, a, b, dm, dv, start

    def unshifted(self, lo: int = 0, hi: int | None = None) -> list[Instr]:
        """Instructions lo..hi-1 as the programs hold them (unshifted): for
        readers of what a shift leaves alone (op, stage, peer, group)."""
        out: list[Instr] = []
        for seq, a, b, _, _, _ in self.parts(lo, hi):
            out.extend(seq[a:b])
        return out


def unshifted(stream: Sequence[Instr], lo: int = 0, hi: int | None = None) -> Sequence[Instr]:
    """`stream[lo:hi]` where only what a shift leaves alone is read."""
    if isinstance(stream, RunStream):
        return stream.unshifted(lo, hi)
    return stream[lo:hi]


def stream_parts(stream: Sequence[Instr], lo: int = 0, hi: int | None = None
                 ) -> Iterable[tuple[Sequence[Instr], int, int, int, int, int]]:
    """RunStream.parts of any stream (a plain one is one unshifted part)."""
    if isinstance(stream, RunStream):
        return stream.parts(lo, hi)
    return ((stream, lo, len(stream) if hi is None else hi, 0, 0, 0),)
