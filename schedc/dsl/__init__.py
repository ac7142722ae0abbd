"""The schedule DSL: `.sched` text <-> Spec. Grammar and statements: docs/dsl.md.

    >>> from schedc.dsl import parse_text
    >>> parse_text("schedule s from 1f1b { stages 8; microbatches 16 }").stages
    8

Every input ends in a validated Spec or a DslError (`render()` gives
FILE:LINE:COL, the source line and a caret; `exit_code` 2).
"""

from __future__ import annotations

import os

from schedc.dsl.build import build_spec
from schedc.dsl.errors import DslError, Source
from schedc.dsl.format import format_spec
from schedc.dsl.parser import parse_document
from schedc.spec import Spec

__all__ = ["DslError", "format_spec", "parse_file", "parse_text"]


def parse_text(text: str, filename: str = "<string>") -> Spec:
    """Parse one `schedule` block and return its validated Spec."""
    source = Source(text, filename)
    try:
        return build_spec(parse_document(source), source)
    except DslError:
        raise
    except Exception as exc:  # a bug in the DSL: still no traceback for the user
        raise DslError(f"internal error: {type(exc).__name__}: {exc}", filename) from exc


def parse_file(path: str | os.PathLike[str]) -> Spec:
    """Read and parse a `.sched` file; unreadable files give a DslError naming them."""
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise DslError("cannot read: is a directory", filename) from None
    except FileNotFoundError:
        raise DslError("cannot read: no such file", filename) from None
    except OSError as exc:
        raise DslError(f"cannot read: {exc.strerror or exc}", filename) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(data, exc, filename) from None
    return parse_text(text, filename)


def _not_utf8(data: bytes, exc: UnicodeDecodeError, filename: str) -> DslError:
    """Locate the first byte that is not UTF-8."""
    good = data[: exc.start].decode("utf-8", errors="replace")
    source = Source(good + data[exc.start :].decode("utf-8", errors="replace"), filename)
    lines = good.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return source.error(
        f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded", len(lines), len(lines[-1]) + 1
    )
