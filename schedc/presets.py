"""Named schedules: each preset is a Spec with defaults, derived from the
stage and micro-batch counts so that bounds stay true when those change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schedc.errors import suggest
from schedc.spec import Spec, SpecError


def _gpipe(s: int, m: int) -> dict[str, Any]:
    return {"order": "fill-drain"}


def _one_f_one_b(s: int, m: int) -> dict[str, Any]:
    return {"order": "1f1b"}


def _interleaved(s: int, m: int) -> dict[str, Any]:
    return {"order": "interleaved"}


def _zb_h1(s: int, m: int) -> dict[str, Any]:
    return {"order": "zero-bubble", "split_backward": True}


def _chimera(s: int, m: int) -> dict[str, Any]:
    return {"order": "1f1b", "directions": ("down", "up")}


def _pipedream(s: int, m: int) -> dict[str, Any]:
    return {"order": "1f1b", "flush": False, "versions": "auto", "max_inconsistency": 0}


def _pipedream_2bw(s: int, m: int) -> dict[str, Any]:
    return {
        "order": "1f1b", "flush": False, "versions": 2, "fixed_delay": 1,
        "max_inconsistency": 0, "max_delay": 1,
    }


def _paci(s: int, m: int) -> dict[str, Any]:
    return {"order": "1f1b", "flush": False, "versions": 1, "max_inconsistency": -(-(s - 1) // m)}


def _amdp(s: int, m: int) -> dict[str, Any]:
    return {
        "order": "1f1b", "flush": False, "versions": 1, "directions": "auto",
        "max_inflight": ((0, 2),), "max_inconsistency": 1, "max_delay": 1,
    }


PRESETS: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "gpipe": _gpipe,
    "1f1b": _one_f_one_b,
    "interleaved-1f1b": _interleaved,
    "zb-h1": _zb_h1,
    "chimera": _chimera,
    "pipedream": _pipedream,
    "pipedream-2bw": _pipedream_2bw,
    "paci": _paci,
    "amdp": _amdp,
}
DEFAULT_MICROBATCHES = {"pipedream": 1}


def preset_spec(name: str, **overrides: Any) -> Spec:
    """The preset `name` with `overrides` applied (stages, microbatches, ...)."""
    if name not in PRESETS:
        raise SpecError("preset", f"unknown preset {name!r} (one of {', '.join(PRESETS)})"
                                  f"{suggest(name, list(PRESETS))}")
    stages = overrides.get("stages", 4)
    microbatches = overrides.get("microbatches", DEFAULT_MICROBATCHES.get(name, 8))
    fields = {"name": name, "stages": stages, "microbatches": microbatches, "preset": name}
    fields.update(PRESETS[name](stages, microbatches))
    fields.update(overrides)
    return Spec(**fields)
