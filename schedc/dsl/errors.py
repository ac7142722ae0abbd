"""DslError: a parse or semantic error in a `.sched` file, located by line:col.

`render()` is what the user sees:

    FILE:LINE:COL: error: MESSAGE
        the offending source line
        ^

Columns are 1-based and count characters (a tab is one column). The caret is
placed by display width, so tabs (expanded to 8) and wide characters line up.
"""

from __future__ import annotations

import re
import unicodedata

from schedc.errors import UserError

__all__ = ["DslError", "Source", "split_lines"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TAB = 8


def split_lines(text: str) -> list[str]:
    """The lines of `text` as the DSL counts them (breaks: \\n, \\r\\n, \\r)."""
    return _LINE_BREAK.split(text)


class DslError(UserError):
    """A `.sched` input error. line/col are None for whole-file errors."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        filename: str = "<string>",
        line: int | None = None,
        col: int | None = None,
        source_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.col = col
        self.source_line = source_line

    def __str__(self) -> str:
        where = self.filename
        if self.line is not None:
            where += f":{self.line}:{self.col}"
        return f"{where}: error: {self.message}"

    def render(self) -> str:
        text = str(self)
        if self.source_line is None or self.col is None:
            return text
        shown, _ = _display(self.source_line)
        _, pad = _display(self.source_line[: self.col - 1])
        return f"{text}\n    {shown}\n    {' ' * pad}^"


def _display(line: str) -> tuple[str, int]:
    """The line as printed (tabs expanded, control characters as '?') and its width."""
    out: list[str] = []
    width = 0
    for ch in line:
        if ch == "\t":
            step = _TAB - width % _TAB
            out.append(" " * step)
            width += step
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append("?")
            width += 1
        elif unicodedata.combining(ch):
            out.append(ch)
        else:
            out.append(ch)
            width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return "".join(out), width


class Source:
    """A text being parsed and its file name: makes located errors."""

    def __init__(self, text: str, filename: str = "<string>") -> None:
        self.text = text
        self.filename = filename
        self.lines = split_lines(text)

    def error(self, message: str, line: int, col: int) -> DslError:
        line = min(max(line, 1), len(self.lines))
        source_line = self.lines[line - 1]
        col = min(max(col, 1), len(source_line) + 1)
        return DslError(message, self.filename, line, col, source_line)
