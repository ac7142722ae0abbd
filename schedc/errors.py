"""Errors that reach the user as a message and an exit status, not a traceback."""

from __future__ import annotations


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """"; did you mean 'x'?" when a choice is close to `word`, else "" (every
    "did you mean" of the DSL and the command line)."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class UserError(Exception):
    """An error caused by the user's input; `render()` is what they see."""

    exit_code = 2

    def render(self) -> str:
        return f"schedc: error: {self}"


class VerifyError(UserError):
    """A compiled or loaded program breaks a guarantee.

    rank/index locate the instruction (index within the unrolled stream of the
    section named by `section`) when the failure belongs to one instruction.
    """

    def __init__(
        self,
        reason: str,
        rank: int | None = None,
        index: int | None = None,
        section: str | None = None,
        instr: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rank = rank
        self.index = index
        self.section = section
        self.instr = instr

    def render(self) -> str:
        where = ""
        if self.rank is not None:
            where = f"rank {self.rank}"
            if self.index is not None:
                where += f", {self.section or 'instruction'} {self.index}"
            if self.instr:
                where += f" ({self.instr})"
            where += ": "
        return f"schedc: verify error: {where}{self.reason}"


class ProgramFileError(UserError):
    """A program directory that cannot be loaded: names the file and field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
