"""The statement table: each DSL statement, the Spec field it sets, and how its
arguments are read and checked.

A reader takes the cursor just after the statement's keyword and returns a
`Statement`. Readers check types and ranges (an integer where one is needed,
`versions` at least 1, no negative bounds); relations between fields are left
to `Spec.validate()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schedc.dsl.lexer import EOF, FLOAT, INT, NAME, NEWLINE, PUNCT, Cursor, Token, describe
from schedc.errors import suggest
from schedc.spec import DP_MODES, ORDERS

__all__ = ["FIELDS", "MAX_RANKS", "Statement", "normalize", "suggest"]

MAX_RANKS = 1024  # stages and ranks above this are rejected (maps grow as ranks^2)
MAX_INT = 10**9
BOOLS = {"on": True, "true": True, "off": False, "false": False}


@dataclass(frozen=True)
class Statement:
    """One parsed statement: `field` = `value`, located at `keyword` and `at`."""

    field: str
    keyword: Token
    value: Any
    at: Token  # first token of the value: semantic errors point here
    stage: int | None = None  # max_inflight ... at stage S
    stage_tok: Token | None = None
    parts: tuple[Token, ...] = ()  # directions: where each entry starts


Reader = Callable[[Cursor, Token], Statement]


def normalize(keyword: str) -> str:
    """`max-inflight` and `max_inflight` are the same statement."""
    return keyword.replace("-", "_")


# ---- value readers -----------------------------------------------------------
def _int(cur: Cursor, what: str, low: int, high: int = MAX_INT) -> tuple[int, Token]:
    tok = cur.next()
    if tok.kind != INT:
        raise cur.error(f"{what} needs an integer, found {describe(tok)}", tok)
    assert isinstance(tok.value, int)
    if tok.value < low:
        raise cur.error(f"{what} must be at least {low}, got {tok.value}", tok)
    if tok.value > high:
        raise cur.error(f"{what} must be at most {high}, got {tok.value}", tok)
    return tok.value, tok


def _word(cur: Cursor, *words: str) -> Token | None:
    tok = cur.peek()
    if tok.kind == NAME and tok.text in words:
        return cur.next()
    return None


def _integer(low: int, high: int = MAX_INT, *, none: str | None = None) -> Reader:
    """An integer >= low; `none` names the word that means None (no bound)."""

    def read(cur: Cursor, kw: Token) -> Statement:
        field = normalize(kw.text)
        if none is not None and (tok := _word(cur, none)):
            return Statement(field, kw, None, tok)
        if none is not None and cur.peek().kind == NAME:
            tok = cur.peek()
            raise cur.error(f"{field} needs an integer or {none}, found {describe(tok)}", tok)
        value, tok = _int(cur, field, low, high)
        return Statement(field, kw, value, tok)

    return read


def _versions(cur: Cursor, kw: Token) -> Statement:
    if tok := _word(cur, "auto"):
        return Statement("versions", kw, "auto", tok)
    tok = cur.peek()
    if tok.kind != INT:
        raise cur.error(f"versions needs a positive integer or auto, found {describe(tok)}", tok)
    value, tok = _int(cur, "versions", 1)
    return Statement("versions", kw, value, tok)


def _bool(cur: Cursor, kw: Token) -> Statement:
    tok = cur.next()
    if tok.kind != NAME or tok.text not in BOOLS:
        field = normalize(kw.text)
        raise cur.error(f"{field} needs on, off, true or false, found {describe(tok)}", tok)
    return Statement(normalize(kw.text), kw, BOOLS[tok.text], tok)


def _order(cur: Cursor, kw: Token) -> Statement:
    tok = cur.next()
    if tok.kind == NAME and tok.text in ORDERS:
        return Statement("order", kw, tok.text, tok)
    if tok.kind in (NEWLINE, EOF) or tok.is_(PUNCT):
        raise cur.error(f"order needs a policy ({', '.join(ORDERS)})", tok)
    hint = suggest(tok.text, ORDERS)
    raise cur.error(f"unknown order {tok.text!r} (one of {', '.join(ORDERS)}){hint}", tok)


def _dp_mode(cur: Cursor, kw: Token) -> Statement:
    tok = cur.next()
    if tok.kind == NAME and tok.text in DP_MODES:
        return Statement("dp_mode", kw, tok.text, tok)
    hint = suggest(tok.text, DP_MODES) if tok.kind == NAME else ""
    raise cur.error(f"dp_mode needs one of {', '.join(DP_MODES)}, found {describe(tok)}{hint}",
                    tok)


def _number(*, auto: bool) -> Reader:
    """A finite number >= 0, `off`/`none` (None), or `auto` when allowed."""
    words = ("off", "none", "auto") if auto else ("off", "none")

    def read(cur: Cursor, kw: Token) -> Statement:
        field = normalize(kw.text)
        tok = cur.next()
        if tok.kind == NAME and tok.text in words:
            value = "auto" if tok.text == "auto" else None
            return Statement(field, kw, value, tok)
        if tok.kind not in (INT, FLOAT):
            raise cur.error(f"{field} needs a number or {', '.join(words)}, found "
                            f"{describe(tok)}", tok)
        value = float(tok.value)  # type: ignore[arg-type]
        if not math.isfinite(value) or value < 0:
            raise cur.error(f"{field} must be a number >= 0, got {tok.text}", tok)
        return Statement(field, kw, value, tok)

    return read


def _microbatches(cur: Cursor, kw: Token) -> Statement:
    value, tok = _int(cur, "microbatches", 1)
    if _word(cur, "per"):
        cur.expect(NAME, "step", "'step' after 'per' (microbatches N per step)")
    return Statement("microbatches", kw, value, tok)


def _ranks(cur: Cursor, kw: Token) -> Statement:
    if tok := _word(cur, "auto"):
        return Statement("ranks", kw, None, tok)
    value, tok = _int(cur, "ranks", 1, MAX_RANKS)
    return Statement("ranks", kw, value, tok)


def _max_inflight(cur: Cursor, kw: Token) -> Statement:
    if tok := _word(cur, "none"):
        return Statement("max_inflight", kw, None, tok)
    bound, tok = _int(cur, "max_inflight", 1)
    if not _word(cur, "at"):
        return Statement("max_inflight", kw, bound, tok)
    cur.expect(NAME, "stage", "'stage' after 'at' (max_inflight N at stage S)")
    stage, stage_tok = _int(cur, "stage", 0)
    return Statement("max_inflight", kw, bound, tok, stage, stage_tok)


# ---- directions ----------------------------------------------------------------
def _directions(cur: Cursor, kw: Token) -> Statement:
    first = cur.peek()
    if _word(cur, "auto"):
        if cur.peek().is_(PUNCT, ","):
            raise cur.error("directions auto must stand alone", cur.peek())
        return Statement("directions", kw, "auto", first)
    parts = [cur.peek()]
    items = [_one_direction(cur)]
    while cur.accept(PUNCT, ","):
        parts.append(cur.peek())
        items.append(_one_direction(cur))
    tok = cur.peek()
    if tok.kind == NAME and tok.text in ("down", "up", "v", "map", "auto"):
        raise cur.error("expected ',' between directions", tok)
    return Statement("directions", kw, tuple(items), first, parts=tuple(parts))


def _one_direction(cur: Cursor) -> str | tuple[int, ...]:
    tok = cur.next()
    if tok.kind == NAME and tok.text in ("down", "up", "v"):
        return tok.text
    if tok.is_(NAME, "auto"):
        raise cur.error("directions auto must stand alone", tok)
    if not tok.is_(NAME, "map"):
        hint = suggest(tok.text, ("down", "up", "v", "auto", "map")) if tok.kind == NAME else ""
        raise cur.error(
            f"expected a direction (down, up, v, auto or map(...)), found {describe(tok)}{hint}",
            tok)
    cur.expect(PUNCT, "(", "'(' after map")
    ranks = [_int(cur, "a rank in map(...)", 0, MAX_RANKS - 1)[0]]
    while cur.accept(PUNCT, ","):
        ranks.append(_int(cur, "a rank in map(...)", 0, MAX_RANKS - 1)[0])
    cur.expect(PUNCT, ")", "',' or ')' in map(...)")
    return tuple(ranks)


# ---- the table -------------------------------------------------------------------
FIELDS: dict[str, Reader] = {
    "stages": _integer(1, MAX_RANKS),
    "ranks": _ranks,
    "directions": _directions,
    "microbatches": _microbatches,
    "order": _order,
    "flush": _bool,
    "max_inflight": _max_inflight,
    "max_inconsistency": _integer(0, none="none"),
    "max_delay": _integer(0, none="none"),
    "max_activations": _integer(1, none="none"),
    "versions": _versions,
    "fixed_delay": _integer(0, none="none"),
    "lookahead": _number(auto=True),
    "split_backward": _bool,
    "max_deferred_w": _integer(0, none="none"),
    "error_feedback": _number(auto=False),
    "lr_warmup_by_delay": _integer(1, none="none"),
    "dp_mode": _dp_mode,
    "dp_fraction": _number(auto=False),
    "dp_period": _integer(1),
    "dp_beta": _number(auto=False),
    "dp_max_lateness": _integer(0),
}

# Words people reach for that are not statements, with what to write instead.
HINTS = {
    "name": "the name goes in the header: schedule NAME { ... }",
    "preset": "a preset goes in the header: schedule NAME from PRESET { ... }",
    "from": "a preset goes in the header: schedule NAME from PRESET { ... }",
    "chunks": "chunks per rank is stages / ranks: set stages and ranks",
    "pipelines": "each entry of 'directions' is one pipeline",
}

