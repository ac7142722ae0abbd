"""Recursive-descent parser: tokens -> `Document` (header + statements).

    file      = { NL } schedule { NL } EOF
    schedule  = "schedule" NAME [ "from" NAME ] { NL } "{" body "}"
    body      = { NL | ";" | statement end }
    end       = NL | ";" | before "}" | before the next statement's keyword

Statement arguments are read by the readers in `fields.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from schedc.dsl.errors import Source
from schedc.dsl.fields import FIELDS, HINTS, Statement, normalize, suggest
from schedc.dsl.lexer import EOF, NAME, NEWLINE, PUNCT, Cursor, Token, describe, tokenize

__all__ = ["Document", "parse_document"]


@dataclass(frozen=True)
class Document:
    """A parsed `schedule` block, before it becomes a Spec."""

    name: Token
    preset: Token | None
    statements: tuple[Statement, ...]


def parse_document(source: Source) -> Document:
    cur = Cursor(tokenize(source), source)
    cur.skip_newlines(semicolons=True)
    head = cur.peek()
    if not head.is_(NAME, "schedule"):
        raise cur.error(f"expected 'schedule NAME {{' to start the file, found {describe(head)}",
                        head)
    doc = _schedule(cur)
    cur.skip_newlines(semicolons=True)
    tail = cur.peek()
    if tail.is_(NAME, "schedule"):
        raise cur.error("only one schedule per file (put each schedule in its own file)", tail)
    if tail.kind != EOF:
        raise cur.error(f"unexpected {describe(tail)} after the schedule's closing '}}'", tail)
    return doc


def _schedule(cur: Cursor) -> Document:
    keyword = cur.next()
    name = cur.expect(NAME, None, "a schedule name after 'schedule'")
    preset = None
    if cur.accept(NAME, "from"):
        preset = cur.expect(NAME, None, "a preset name after 'from'")
    cur.skip_newlines()
    cur.expect(PUNCT, "{", "'{' to open the schedule body")
    statements = _body(cur)
    if cur.peek().kind == EOF:
        raise cur.error(
            f"missing '}}' to close the schedule opened at line {keyword.line}", cur.peek()
        )
    cur.next()
    return Document(name, preset, tuple(statements))


def _body(cur: Cursor) -> list[Statement]:
    statements: list[Statement] = []
    while True:
        cur.skip_newlines(semicolons=True)
        tok = cur.peek()
        if tok.is_(PUNCT, "}") or tok.kind == EOF:
            return statements
        statements.append(_statement(cur))
        _end_of_statement(cur, statements[-1])


def _statement(cur: Cursor) -> Statement:
    tok = cur.next()
    if tok.kind != NAME:
        raise cur.error(f"expected a statement, found {describe(tok)}", tok)
    keyword = normalize(tok.text)
    reader = FIELDS.get(keyword)
    if reader is None:
        raise cur.error(_unknown(tok.text), tok)
    if cur.peek().kind in (NEWLINE, EOF) or cur.peek().is_(PUNCT, ";"):
        raise cur.error(f"{keyword} needs a value", cur.peek())
    return reader(cur, tok)


def _unknown(word: str) -> str:
    if word in HINTS:
        return f"unknown statement {word!r}: {HINTS[word]}"
    if word == "schedule":
        return "a schedule cannot contain another schedule"
    return f"unknown statement {word!r}{suggest(normalize(word), list(FIELDS))}"


def _end_of_statement(cur: Cursor, stmt: Statement) -> None:
    tok = cur.peek()
    if tok.kind in (NEWLINE, EOF) or tok.is_(PUNCT, ";") or tok.is_(PUNCT, "}"):
        return
    if tok.kind == NAME and normalize(tok.text) in FIELDS:
        return  # `{ stages 8  microbatches 16 }`: the next statement on the same line
    raise cur.error(
        f"expected the end of the {stmt.field} statement (a new line or ';'), "
        f"found {describe(tok)}",
        tok,
    )
