"""Every file in examples/ parses to the Spec it documents, and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedc.directions import auto_directions
from schedc.dsl import format_spec, parse_file, parse_text
from schedc.presets import preset_spec
from schedc.spec import Spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _preset(preset: str, name: str, **overrides: object) -> Spec:
    return preset_spec(preset, **overrides).with_(name=name)


EXPECTED: dict[str, Spec] = {
    "1f1b4": _preset("1f1b", "1f1b4", stages=4, microbatches=8),
    "demo2": _preset("1f1b", "demo2", stages=2, microbatches=4),
    "gpipe4": _preset("gpipe", "gpipe4", stages=4, microbatches=8),
    "interleaved8x4": _preset("interleaved-1f1b", "interleaved8x4", stages=8, ranks=4),
    "zbh1": _preset("zb-h1", "zbh1", stages=4, microbatches=8),
    "chimera4": _preset("chimera", "chimera4", stages=4, microbatches=8),
    "pipedream4": _preset("pipedream", "pipedream4", stages=4, microbatches=1),
    "pipedream2bw4": _preset("pipedream-2bw", "pipedream2bw4", stages=4, microbatches=8),
    "paci8": _preset("paci", "paci8", stages=8, microbatches=8),
    "amdp8": _preset("amdp", "amdp8", stages=8, ranks=8, microbatches=8),
    "amdp4_explicit": _preset(
        "amdp", "amdp4_explicit", stages=4, directions=((0, 1, 2, 3), (3, 2, 1, 0))
    ),
    "design_card": Spec(
        name="amdp8", stages=8, ranks=8, directions=("down", "up"), microbatches=8,
        order="1f1b", flush=False, max_inflight=((0, 2),), max_inconsistency=1, versions=1,
    ),
    "async_lookahead4": Spec(
        name="async_lookahead4", stages=4, ranks=4, directions=("down",), microbatches=8,
        order="1f1b", flush=False, max_inflight=((0, 4), (1, 2), (2, 2), (3, 2)),
        max_delay=1, max_activations=4, versions=2, fixed_delay=1, lookahead="auto",
        error_feedback=0.5, split_backward=False,
    ),
}

REQUIRED = [
    "1f1b4", "gpipe4", "interleaved8x4", "zbh1", "chimera4", "pipedream4", "pipedream2bw4",
    "paci8", "amdp8", "amdp4_explicit", "design_card",
]


def test_required_examples_exist() -> None:
    present = {p.stem for p in EXAMPLES.glob("*.sched")}
    assert set(REQUIRED) <= present
    assert present - set(REQUIRED), "at least one custom example written without a preset"


def test_every_example_is_checked() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.sched")} == set(EXPECTED)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_example_parses_to_expected_spec(stem: str) -> None:
    spec = parse_file(EXAMPLES / f"{stem}.sched")
    assert spec == EXPECTED[stem]
    assert spec.validate() is spec
    assert parse_text(format_spec(spec)) == spec


def test_amdp8_auto_matches_the_reference_maps() -> None:
    spec = parse_file(EXAMPLES / "amdp8.sched")
    ref = {tuple(f(r) for r in range(8)) for f in (
        lambda r: r, lambda r: (11 - r) % 8, lambda r: (r + 4) % 8, lambda r: 7 - r)}
    assert set(spec.resolved_directions()) == ref


def test_amdp4_explicit_equals_auto() -> None:
    spec = parse_file(EXAMPLES / "amdp4_explicit.sched")
    assert spec.resolved_directions() == auto_directions(4)
    auto = parse_text("schedule a from amdp { stages 4 }")
    assert spec.resolved_directions() == auto.resolved_directions()


def test_design_card_text_verbatim() -> None:
    text = (EXAMPLES / "design_card.sched").read_text()
    assert "directions down, up          # two concurrent pipelines" in text
    assert "microbatches 8 per step" in text
