"""Tokens of the schedule DSL, and a cursor over them.

A *word* is a run of ASCII letters, digits and `_ - + .`; it is then read as
an integer (`8`, `-1`), a float (`0.5`, `1e-3`) or a name (`zb-h1`, `1f1b`,
`max_inflight`). Punctuation is `{ } ( ) , ;`. `#` starts a comment that runs
to the end of the line. Line breaks (`\\n`, `\\r\\n`, `\\r`) are tokens: they
end statements. Spaces, tabs, form feeds and vertical tabs separate tokens.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from schedc.dsl.errors import DslError, Source

__all__ = ["Cursor", "Token", "tokenize", "describe"]

NAME, INT, FLOAT, PUNCT, NEWLINE, EOF = "name", "int", "float", "punct", "newline", "eof"

_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_-+.")
_PUNCT = frozenset("{}(),;")
_SPACE = frozenset(" \t\f\v")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_DIGITS = 18  # integers beyond 10**18 are rejected, never silently truncated


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int
    col: int
    value: int | float | str | None = None

    def is_(self, kind: str, text: str | None = None) -> bool:
        return self.kind == kind and (text is None or self.text == text)


def describe(tok: Token) -> str:
    """How a token is named in an error message."""
    if tok.kind == NEWLINE:
        return "end of line"
    if tok.kind == EOF:
        return "end of file"
    return repr(tok.text)


def tokenize(source: Source) -> list[Token]:
    """All tokens of `source`, ending with EOF. Raises DslError on a bad character."""
    text = source.text
    tokens: list[Token] = []
    i, line, col = 0, 1, 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i, col = i + 1, col + 1
        elif ch == "#":
            while i < n and text[i] not in "\r\n":
                i, col = i + 1, col + 1
        elif ch in "\r\n":
            tokens.append(Token(NEWLINE, "\n", line, col))
            i += 2 if text.startswith("\r\n", i) else 1
            line, col = line + 1, 1
        elif ch in _PUNCT:
            tokens.append(Token(PUNCT, ch, line, col))
            i, col = i + 1, col + 1
        elif ch in _WORD_CHARS:
            j = i
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            tokens.append(_word(source, text[i:j], line, col))
            col += j - i
            i = j
        else:
            raise source.error(f"unexpected character {_char_name(ch)}", line, col)
    tokens.append(Token(EOF, "", line, col))
    return tokens


def _char_name(ch: str) -> str:
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r}"
    return f"U+{ord(ch):04X}"


def _word(source: Source, word: str, line: int, col: int) -> Token:
    if _INT.fullmatch(word):
        if len(word.lstrip("+-")) > MAX_DIGITS:
            raise source.error(f"number {word[:20]}... is too large", line, col)
        return Token(INT, word, line, col, int(word))
    if _FLOAT.fullmatch(word):
        value = float(word)
        if value in (float("inf"), float("-inf")):
            raise source.error(f"number {word} is too large", line, col)
        return Token(FLOAT, word, line, col, value)
    if _NAME.fullmatch(word):
        return Token(NAME, word, line, col, word)
    raise source.error(f"malformed word {word!r}: not a number or a name", line, col)


class Cursor:
    """A position in a token list, with located errors."""

    def __init__(self, tokens: list[Token], source: Source) -> None:
        self.tokens = tokens
        self.source = source
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        if tok.kind != EOF:
            self.pos += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.peek().is_(kind, text):
            return self.next()
        return None

    def expect(self, kind: str, text: str | None, what: str) -> Token:
        tok = self.peek()
        if not tok.is_(kind, text):
            raise self.error(f"expected {what}, found {describe(tok)}", tok)
        return self.next()

    def skip_newlines(self, semicolons: bool = False) -> None:
        while self.peek().kind == NEWLINE or (semicolons and self.peek().is_(PUNCT, ";")):
            self.next()

    def error(self, message: str, tok: Token) -> DslError:
        return self.source.error(message, tok.line, tok.col)
