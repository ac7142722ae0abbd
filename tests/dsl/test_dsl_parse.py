"""The grammar, preset overrides, formatting and error rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedc.dsl import DslError, format_spec, parse_file, parse_text
from schedc.errors import UserError
from schedc.presets import PRESETS, preset_spec
from schedc.spec import Spec


def err(text: str) -> DslError:
    with pytest.raises(DslError) as info:
        parse_text(text, "t.sched")
    return info.value


# ---- grammar -------------------------------------------------------------------
def test_minimal_schedule_gets_spec_defaults() -> None:
    assert parse_text("schedule s {}") == Spec(name="s")


def test_semicolons_comments_and_same_line_statements() -> None:
    a = parse_text("schedule s { stages 8; microbatches 16 }  # c")
    b = parse_text("schedule s {\n stages 8  microbatches 16\n}")
    c = parse_text("# head\n\nschedule s   # name\n{\n  stages 8 # x\n\n  microbatches 16;;\n}\n")
    assert a == b == c == Spec(name="s", stages=8, microbatches=16)


def test_crlf_and_cr_line_breaks() -> None:
    assert parse_text("schedule s {\r\n stages 8\r\n}\r\n").stages == 8
    assert parse_text("schedule s {\r stages 8\r}").stages == 8


def test_bools_numbers_auto_none() -> None:
    spec = parse_text(
        "schedule s {\n flush false\n versions auto\n lookahead 0.25\n"
        " error_feedback 1e-1\n max_delay 2\n max_inconsistency none\n}"
    )
    assert (spec.flush, spec.versions, spec.lookahead) == (False, "auto", 0.25)
    assert (spec.error_feedback, spec.max_delay, spec.max_inconsistency) == (0.1, 2, None)
    assert parse_text("schedule s { flush true; split_backward on; order zero-bubble }").flush


def test_dash_spellings() -> None:
    spec = parse_text("schedule s { flush off; max-inflight 2 at stage 1; split-backward off }")
    assert spec.max_inflight == ((1, 2),)


def test_directions_forms() -> None:
    assert parse_text("schedule s { directions up }").directions == ("up",)
    assert parse_text("schedule s { directions auto }").directions == "auto"
    spec = parse_text("schedule s { stages 8 ranks 4 order fill-drain\n"
                      " directions map(1, 0, 3, 2), down }")
    assert spec.directions == ((1, 0, 3, 2), "down")
    assert spec.resolved_directions()[0] == (1, 0, 3, 2, 1, 0, 3, 2)


def test_max_inflight_forms() -> None:
    spec = parse_text("schedule s { max_inflight 3 at stage 2\n max_inflight 1 at stage 0 }")
    assert spec.max_inflight == ((2, 3), (0, 1))
    spec = parse_text("schedule s { max_inflight 2\n max_inflight 5 at stage 3 }")
    assert spec.max_inflight == ((0, 2), (1, 2), (2, 2), (3, 5))
    spec = parse_text("schedule s from amdp { max_inflight none }")
    assert spec.max_inflight == ()


def test_ranks_auto_is_none() -> None:
    assert parse_text("schedule s { ranks auto }").ranks is None


# ---- presets -----------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_with_overrides(preset: str) -> None:
    extra = {"ranks": 4} if preset == "interleaved-1f1b" else {}
    body = "".join(f"; {k} {v}" for k, v in extra.items())
    spec = parse_text(f"schedule mine from {preset} {{ stages 8  microbatches 16{body} }}")
    expected = preset_spec(preset, stages=8, microbatches=16, **extra).with_(name="mine")
    assert spec == expected
    assert spec.preset == preset
    if preset == "interleaved-1f1b":
        extra, body = {"stages": 8, "ranks": 4}, "stages 8; ranks 4"
    plain = parse_text(f"schedule {preset} from {preset} {{ {body.lstrip('; ')} }}")
    assert plain == preset_spec(preset, **extra).validate()


def test_preset_derived_defaults_follow_overrides() -> None:
    spec = parse_text("schedule p from paci { stages 8  microbatches 2 }")
    assert spec.max_inconsistency == 4  # ceil(7 / 2)
    assert parse_text("schedule p from paci { stages 8; max_inconsistency 5 }") \
        .max_inconsistency == 5


def test_design_card_myzb() -> None:
    spec = parse_text("schedule myzb from zb-h1 { stages 8  microbatches 16 }")
    assert (spec.name, spec.stages, spec.microbatches) == ("myzb", 8, 16)
    assert spec.split_backward and spec.order == "zero-bubble"
    assert spec.max_deferred_w == 7  # ZB-H1's stages - 1, from the overridden stages


def test_max_deferred_w_parses_formats_and_needs_split_backward() -> None:
    spec = parse_text("schedule z { order zero-bubble\n split_backward on\n max_deferred_w 2 }")
    assert spec.max_deferred_w == 2
    assert "  max_deferred_w 2\n" in format_spec(spec) and parse_text(format_spec(spec)) == spec
    assert parse_text("schedule z { stages 2 }").max_deferred_w is None
    # the drain order back: the preset's bound overridden
    assert parse_text("schedule z from zb-h1 { max_deferred_w none }").max_deferred_w is None
    e = err("schedule s {\n  max_deferred_w 1\n}")
    assert (e.line, e.col) == (2, 18) and "needs split_backward on" in e.message


# ---- format --------------------------------------------------------------------
def test_format_spec_is_complete_and_round_trips() -> None:
    spec = preset_spec("amdp", stages=8).validate()
    text = format_spec(spec)
    assert text.startswith("schedule amdp from amdp {\n")
    assert "  directions auto\n" in text and "  max_inflight 3 at stage 0\n" in text
    again = parse_text(text)
    assert again == spec and again.preset == "amdp"


def test_format_rejects_unwritable_name() -> None:
    with pytest.raises(ValueError):
        format_spec(Spec(name="two words"))


# ---- errors --------------------------------------------------------------------
def test_error_render_exact() -> None:
    e = err("schedule s {\n  stages 4\n  order 1f2b\n}\n")
    assert isinstance(e, UserError) and e.exit_code == 2
    assert (e.line, e.col) == (3, 9)
    assert e.render() == (
        "t.sched:3:9: error: unknown order '1f2b' (one of fill-drain, 1f1b, interleaved, "
        "zero-bubble); did you mean '1f1b'?\n"
        "      order 1f2b\n"
        "            ^"
    )


def test_error_render_expands_tabs() -> None:
    e = err("schedule s {\n\tstages\t-1\n}")
    assert (e.line, e.col) == (2, 9)
    lines = e.render().splitlines()
    assert lines[1] == "    " + "        stages  -1"
    assert lines[2].index("^") == lines[1].index("-1")


def test_unknown_statement_did_you_mean() -> None:
    e = err("schedule s {\n  microbatchs 4\n}")
    assert (e.line, e.col) == (2, 3) and "did you mean 'microbatches'" in e.message


def test_set_twice_points_at_second() -> None:
    e = err("schedule s {\n stages 4\n flush on\n stages 8\n}")
    assert (e.line, e.col) == (4, 2) and "first at line 2" in e.message


def test_semantic_error_at_value_or_header() -> None:
    e = err("schedule s {\n stages 6\n ranks 4\n}")
    assert (e.line, e.col, e.message.split(":")[0]) == (3, 8, "ranks")
    e = err("schedule s {\n  order zero-bubble\n}")
    assert (e.line, e.col) == (1, 10) and "split_backward" in e.message
    e = err("schedule s from pipedream-2bw {\n  flush on\n}")
    assert (e.line, e.col) == (1, 10) and "preset 'pipedream-2bw'" in e.message
    assert e.message.startswith("fixed_delay: a fixed delay needs flush off")


def test_parse_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DslError, match="no such file") as info:
        parse_file(tmp_path / "missing.sched")
    assert str(tmp_path / "missing.sched") in info.value.render()
    with pytest.raises(DslError, match="is a directory"):
        parse_file(tmp_path)
    bad = tmp_path / "bad.sched"
    bad.write_bytes(b"schedule s {\n  stages \xff4\n}\n")
    with pytest.raises(DslError, match="not UTF-8") as info:
        parse_file(bad)
    assert (info.value.line, info.value.col) == (2, 10)
    assert info.value.render().startswith(f"{bad}:2:10: error: not UTF-8")


def test_parse_file_accepts_bom(tmp_path: Path) -> None:
    f = tmp_path / "bom.sched"
    f.write_bytes(b"\xef\xbb\xbfschedule s { stages 2 }")
    assert parse_file(f).stages == 2


def test_docs_list_every_statement() -> None:
    from schedc.dsl.fields import FIELDS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "dsl.md").read_text()
    for keyword in FIELDS:
        assert f"| `{keyword} " in docs, keyword
        assert f'"{keyword}"' in docs, keyword  # in the EBNF


def test_directions_v_parses_to_the_zbv_spec():
    spec = parse_text("schedule v { stages 8\n ranks 4\n directions v\n order zero-bubble\n"
                      " split_backward on\n microbatches 8 per step }", "v.sched")
    assert spec.directions == ("v",)
    assert spec.resolved_directions() == ((0, 1, 2, 3, 3, 2, 1, 0),)
