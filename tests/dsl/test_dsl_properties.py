"""Properties: format/parse round-trips every valid Spec, and no input, however
broken, raises anything but a DslError located inside the text."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schedc.dsl import DslError, format_spec, parse_text
from schedc.dsl.errors import split_lines
from schedc.presets import PRESETS
from schedc.spec import Spec, SpecError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.sched"))
EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]
CORPUS_TEXTS = [
    p.read_text(encoding="utf-8") for p in sorted((Path(__file__).parent / "corpus").glob("*"))
]

NAMES = st.from_regex(r"[a-z_][a-z0-9_-]{0,12}", fullmatch=True)
NUMBERS = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
OPTIONAL_BOUND = st.none() | st.integers(0, 5)


def _directions(ranks: int, chunks: int) -> st.SearchStrategy[object]:
    one = st.sampled_from(["down", "up"]) | st.permutations(range(ranks)).map(tuple)
    listed = st.lists(one, min_size=1, max_size=3).map(tuple)
    return listed | st.just("auto") if ranks >= 2 and chunks == 1 else listed


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    ranks, chunks = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    stages = ranks * chunks
    orders = ["fill-drain", "interleaved"] if chunks > 1 else ["fill-drain", "1f1b", "zero-bubble"]
    order = draw(st.sampled_from(orders))
    flush = draw(st.booleans())
    split = order == "zero-bubble" or draw(st.booleans())
    versions = draw(st.sampled_from([1, "auto"]) if flush else st.integers(1, 4) | st.just("auto"))
    spec = Spec(
        name=draw(NAMES),
        stages=stages,
        ranks=draw(st.sampled_from([ranks, None])) if chunks == 1 else ranks,
        directions=draw(_directions(ranks, chunks)),
        microbatches=draw(st.integers(1, 64)),
        order=order,
        flush=flush,
        max_inflight=tuple(draw(st.lists(
            st.tuples(st.integers(0, stages - 1), st.integers(1, 4)), unique_by=lambda p: p[0]
        ))),
        max_inconsistency=draw(OPTIONAL_BOUND),
        max_delay=draw(OPTIONAL_BOUND),
        max_activations=draw(st.none() | st.integers(1, 16)),
        versions=versions,
        fixed_delay=draw(OPTIONAL_BOUND),
        lookahead=None if flush else draw(st.none() | st.just("auto") | NUMBERS),
        split_backward=split,
        max_deferred_w=draw(st.none() | st.integers(0, 8)) if split else None,
        error_feedback=draw(st.none() | NUMBERS),
        preset=draw(st.none() | st.sampled_from(sorted(PRESETS))),
    )
    try:
        spec.validate()
    except SpecError:
        assume(False)
    return spec


@settings(max_examples=300)
@given(specs())
def test_format_parse_round_trip(spec: Spec) -> None:
    text = format_spec(spec)
    again = parse_text(text)
    assert again == spec
    assert again.preset == spec.preset
    assert format_spec(again) == text


def _check(text: str) -> None:
    """`text` parses to a valid Spec or fails with a well-located DslError."""
    try:
        spec = parse_text(text, "fuzz.sched")
    except DslError as err:
        assert not err.message.startswith("internal error"), err.message
        lines = split_lines(text)
        assert err.line is not None and err.col is not None
        assert 1 <= err.line <= len(lines), (err.line, len(lines))
        assert 1 <= err.col <= len(lines[err.line - 1]) + 1
        rendered = err.render().split("\n")
        assert rendered[0].startswith(f"fuzz.sched:{err.line}:{err.col}: error: ")
        assert len(rendered) == 3 and rendered[2].endswith("^")
        return
    assert isinstance(spec, Spec)
    spec.validate()


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    _check(text)


WORDS = [
    "schedule", "from", "{", "}", "(", ")", ",", ";", "\n", "\r\n", "\t", " ", "#", "map",
    "down", "up", "auto", "none", "on", "off", "per", "step", "at", "stage", "0", "1", "2",
    "4", "8", "-1", "0.5", "1e3", "1.2.3", "-", "zb-h1", "amdp", "1f1b", "interleaved",
    "zero-bubble", "fill-drain", *PRESETS, "stages", "ranks", "directions", "microbatches",
    "order", "flush", "max_inflight", "max-inflight", "max_inconsistency", "max_delay",
    "max_activations", "versions", "fixed_delay", "lookahead", "split_backward",
    "max_deferred_w", "error_feedback", "é", "\x00", "\u2028", "\x0c", "=",
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(WORDS), max_size=40))
def test_token_soup(words: list[str]) -> None:
    _check(" ".join(words))
    _check("schedule s {\n" + " ".join(words) + "\n}\n")


def _mutate(text: str, ops: list[tuple[int, int, int, str]]) -> str:
    chars = list(text)
    for kind, i, j, ch in ops:
        if not chars:
            chars = [ch]
            continue
        i, j = i % len(chars), j % len(chars)
        if kind == 0:
            del chars[i]
        elif kind == 1:
            chars.insert(i, chars[i])
        elif kind == 2:
            chars[i], chars[j] = chars[j], chars[i]
        elif kind == 3:
            chars.insert(i, ch)
        else:
            chars[i:j] = []
    return "".join(chars)


MUTATIONS = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 10**6), st.integers(0, 10**6),
              st.sampled_from(list("{}(),;#\n\t -.0123456789abz\r\x00é"))),
    min_size=1, max_size=6,
)


@settings(max_examples=800)
@given(st.sampled_from(EXAMPLE_TEXTS + CORPUS_TEXTS), MUTATIONS)
def test_mutated_files(text: str, ops: list[tuple[int, int, int, str]]) -> None:
    _check(_mutate(text, ops))


@given(specs(), MUTATIONS)
def test_mutated_formatted_specs(spec: Spec, ops: list[tuple[int, int, int, str]]) -> None:
    _check(_mutate(format_spec(spec), ops))
