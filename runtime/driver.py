"""Driving the interpreters of a process, one piece of their streams at a time.

A run hands every rank its stream in pieces: the prologue and the first body,
each later body, and the epilogue at the end of a segment (programs.py,
`body_piece` / `epilogue_piece`): one piece per step of the Python API's loop.

- `LocalDriver` (every rank in this process): each rank's interpreter is a
  generator fed with pieces; the driver interleaves the ranks cooperatively
  (runtime/inprocess.py) until every rank has run out of instructions or waits
  for a message that a later piece of another rank sends (a rank of an
  asynchronous schedule may need another rank's next body). At a drain point
  (`final`) every rank must finish: a round in which no rank moves is a
  deadlock, reported with every rank's blocked instruction.
- `DistDriver` (one rank per process): runs its piece to the end; the
  transport blocks on messages.

An error names the instruction's index in the segment's stream, not the piece's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator

from schedc.program import Instr

from .interpreter import ExecutionError, Interpreter

Pieces = dict[int, list[Instr]]  # program rank -> its next piece


class DistDriver:
    def __init__(self, interps: dict[int, Interpreter]) -> None:
        self.interps = interps
        self.base: dict[int, int] = dict.fromkeys(interps, 0)

    def __call__(self, pieces: Pieces, final: bool = False) -> None:
        for r, piece in pieces.items():
            try:
                self.interps[r].run_to_end(piece)
            except ExecutionError as exc:
                raise ExecutionError(exc.rank, self.base[r] + exc.index, exc.instr,
                                     exc.reason) from exc.__cause__
            self.base[r] += len(piece)
        if final:
            self.base = dict.fromkeys(self.interps, 0)


class LocalDriver:
    def __init__(self, interps: dict[int, Interpreter]) -> None:
        self.interps = interps
        self.queues: dict[int, deque[list[Instr]]] = {r: deque() for r in interps}
        self.base: dict[int, int] = dict.fromkeys(interps, 0)  # segment index of the piece
        self.gens = {r: self._feed(r) for r in interps}

    def _feed(self, r: int) -> Generator[Instr | None, None, None]:
        interp, queue = self.interps[r], self.queues[r]
        while True:
            if not queue:
                yield None  # nothing to run until the next piece
                continue
            piece = queue.popleft()
            try:
                yield from interp.run(piece)
            except ExecutionError as exc:
                raise ExecutionError(exc.rank, self.base[r] + exc.index, exc.instr,
                                     exc.reason) from exc.__cause__
            self.base[r] += len(piece)

    def __call__(self, pieces: Pieces, final: bool = False) -> None:
        for r, piece in pieces.items():
            if piece:
                self.queues[r].append(piece)
        blocked: dict[int, Instr] = {}
        while True:
            moved, idle = False, 0
            for r in sorted(self.gens):
                before = self.interps[r].progress()
                got = next(self.gens[r])
                if got is None:
                    idle += 1
                    blocked.pop(r, None)
                else:
                    blocked[r] = got
                moved = moved or self.interps[r].progress() != before
            if idle == len(self.gens):
                break
            if not moved:
                if not final:
                    return  # waiting for messages of later pieces
                waits = "; ".join(f"rank {r} waits at {i.label()}"
                                  for r, i in sorted(blocked.items()))
                raise RuntimeError(f"in-process run deadlocked: {waits}")
        if final:
            self.base = dict.fromkeys(self.interps, 0)
