"""Document -> validated Spec, with semantic errors located in the source.

Each statement sets one Spec field; setting a field twice is an error at the
second statement. A `from PRESET` header starts from `preset_spec(PRESET, ...)`
with the file's fields as overrides (so a preset's derived defaults follow the
file's stages and microbatches); without it the Spec's own defaults apply.
`Spec.validate()` errors are located at the statement that set the field, or
at the schedule's name when the field was not set in the file.
"""

from __future__ import annotations

from typing import Any

from schedc.directions import resolve_directions
from schedc.dsl.errors import DslError, Source
from schedc.dsl.fields import Statement, suggest
from schedc.dsl.format import format_value
from schedc.dsl.lexer import Token
from schedc.dsl.parser import Document
from schedc.presets import PRESETS, preset_spec
from schedc.spec import Spec, SpecError

__all__ = ["build_spec"]


def build_spec(doc: Document, source: Source) -> Spec:
    _check_preset(doc, source)
    overrides, where = _collect(doc.statements, source)
    parts = {s.field: s.parts for s in doc.statements if s.parts}
    inflight = [s for s in doc.statements if s.field == "max_inflight"]
    overrides.pop("max_inflight", None)
    if doc.preset is not None:
        spec = preset_spec(doc.preset.text, **overrides).with_(name=doc.name.text)
    else:
        spec = Spec(name=doc.name.text, **overrides)
    if inflight:
        spec = spec.with_(max_inflight=_inflight(inflight, spec.stages, source))
    try:
        return spec.validate()
    except SpecError as exc:
        if exc.field == "directions" and "directions" in parts:
            where["directions"] = _bad_direction(spec, parts["directions"])
        raise _locate(exc, spec, doc, where, source) from None


def _error(source: Source, message: str, tok: Token) -> DslError:
    return source.error(message, tok.line, tok.col)


def _check_preset(doc: Document, source: Source) -> None:
    if doc.preset is not None and doc.preset.text not in PRESETS:
        name = doc.preset.text
        raise _error(source, f"unknown preset {name!r} (one of {', '.join(PRESETS)})"
                     f"{suggest(name, list(PRESETS))}", doc.preset)


def _collect(
    statements: tuple[Statement, ...], source: Source
) -> tuple[dict[str, Any], dict[str, Token]]:
    """Field values and where each was set; a field set twice is an error."""
    values: dict[str, Any] = {}
    where: dict[str, Token] = {}
    for stmt in statements:
        if stmt.field == "max_inflight":
            where.setdefault("max_inflight", stmt.at)
            values["max_inflight"] = True
            continue
        if stmt.field in where:
            first = where[stmt.field]
            raise _error(source, f"{stmt.field} is set twice (first at line {first.line})",
                         stmt.keyword)
        values[stmt.field] = stmt.value
        where[stmt.field] = stmt.at
    return values, where


def _inflight(
    statements: list[Statement], stages: int, source: Source
) -> tuple[tuple[int, int], ...]:
    """max_inflight statements -> ((stage, bound), ...).

    `max_inflight N at stage S` lines keep their order. `max_inflight N` sets
    every stage (those with their own line keep theirs; the result is sorted).
    `max_inflight none` clears a preset's bounds and must stand alone.
    """
    per_stage: dict[int, int] = {}
    blanket: Statement | None = None
    for stmt in statements:
        if stmt.value is None:
            if len(statements) > 1:
                raise _error(source, "max_inflight none cannot be combined with other "
                             "max_inflight statements", stmt.keyword)
            return ()
        if stmt.stage is None:
            if blanket is not None:
                raise _error(source, "max_inflight for every stage is set twice "
                             f"(first at line {blanket.keyword.line})", stmt.keyword)
            blanket = stmt
            continue
        assert stmt.stage_tok is not None
        if stmt.stage in per_stage:
            raise _error(source, f"max_inflight at stage {stmt.stage} is set twice",
                         stmt.keyword)
        if stmt.stage >= stages:
            raise _error(source, f"max_inflight: stage {stmt.stage} out of range "
                         f"0..{stages - 1} (stages {stages})", stmt.stage_tok)
        per_stage[stmt.stage] = stmt.value
    if blanket is None:
        return tuple(per_stage.items())
    return tuple((s, per_stage.get(s, blanket.value)) for s in range(stages))


def _bad_direction(spec: Spec, parts: tuple[Token, ...]) -> Token:
    """The direction entry that makes `spec.directions` invalid (else the first)."""
    seen: set[tuple[int, ...]] = set()
    for direction, tok in zip(spec.directions, parts, strict=False):
        try:
            (full,) = resolve_directions((direction,), spec.stages, spec.num_ranks)
        except ValueError:
            return tok
        if full in seen:
            return tok
        seen.add(full)
    return parts[0]


def _locate(
    exc: SpecError, spec: Spec, doc: Document, where: dict[str, Token], source: Source
) -> DslError:
    field = exc.field
    if field in where:
        return _error(source, f"{field}: {exc.message}", where[field])
    origin = f"preset {doc.preset.text!r}" if doc.preset is not None else "the defaults"
    value = getattr(spec, field, None)
    shown = format_value(field, value) if hasattr(spec, field) else "?"
    return _error(
        source,
        f"{field}: {exc.message} (not set in this schedule; "
        f"{field} {shown} comes from {origin})",
        doc.name,
    )
