"""Presets are Specs whose declared bounds follow the stage and micro-batch counts."""

from __future__ import annotations

import pytest

from schedc.compiler import compile_spec
from schedc.presets import PRESETS, preset_spec
from schedc.spec import Spec, SpecError

NAMES = ["gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "chimera", "pipedream",
         "pipedream-2bw", "paci", "amdp", "zbv"]


def test_every_documented_preset_exists():
    assert sorted(PRESETS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_compiles_and_verifies_at_defaults(name):
    kw = {"ranks": 2} if name == "interleaved-1f1b" else {}
    c = compile_spec(preset_spec(name, **kw))
    assert c.manifest.spec["preset"] == name
    assert c.manifest.synchronous == (name not in ("pipedream", "pipedream-2bw", "paci", "amdp"))
    assert len(c.programs) == c.manifest.world_size


def test_overrides_win_and_derived_bounds_follow():
    assert preset_spec("paci", stages=8, microbatches=2).max_inconsistency == 4
    assert preset_spec("paci", stages=8, microbatches=2, max_inconsistency=9).max_inconsistency == 9
    assert preset_spec("pipedream").microbatches == 1
    spec = preset_spec("amdp", stages=8)
    assert spec.inflight_bound(0) == 3 and spec.inflight_bound(1) is None


def test_unknown_preset_and_bad_fields_are_spec_errors():
    with pytest.raises(SpecError) as e:
        preset_spec("dualpipe")
    assert e.value.field == "preset"
    with pytest.raises(SpecError) as e:
        Spec(stages=6, ranks=4).validate()
    assert e.value.field == "ranks"
    with pytest.raises(SpecError) as e:
        preset_spec("1f1b", stages=8, ranks=4).validate()
    assert e.value.field == "order"
    with pytest.raises(SpecError) as e:
        preset_spec("gpipe", versions=2).validate()
    assert e.value.field == "versions"


def test_unset_later_fields_leave_earlier_files_alone():
    """max_deferred_w came after program files were first written: unset, it is not
    in to_dict (so not in the hash), and a spec dict without it loads as unset."""
    spec = preset_spec("1f1b", stages=4)
    assert "max_deferred_w" not in spec.to_dict()
    assert Spec.from_dict(spec.to_dict()) == spec and spec.max_deferred_w is None
    zb = preset_spec("zb-h1", stages=4)
    assert zb.to_dict()["max_deferred_w"] == 3 and Spec.from_dict(zb.to_dict()) == zb
    assert zb.hash() != zb.with_(max_deferred_w=None).hash()


@pytest.mark.parametrize("value,words", [(-1, "at least 0"), (1.5, "integer")])
def test_max_deferred_w_is_checked(value, words):
    with pytest.raises(SpecError, match=words) as e:
        preset_spec("zb-h1", max_deferred_w=value).validate()
    assert e.value.field == "max_deferred_w"
    with pytest.raises(SpecError, match="needs split_backward on"):
        preset_spec("1f1b", max_deferred_w=1).validate()


def test_spec_hash_ignores_name_only():
    a = preset_spec("1f1b", stages=4)
    assert a.hash() == a.with_(name="other").hash()
    assert a.hash() != a.with_(microbatches=9).hash()
    assert Spec.from_dict(a.to_dict()) == a
