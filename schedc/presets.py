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
    # W trails its I by at most s - 1: the bubble of Ws deferred to the drain, with
    # the state held for W bounded by 2s - 1 - stage micro-batches, not m.
    return {"order": "zero-bubble", "split_backward": True, "max_deferred_w": s - 1}


def _zbv(s: int, m: int) -> dict[str, Any]:
    """ZB-V (PyTorch's ScheduleZBVZeroBubble): V-shaped placement, two chunks per
    rank (so ranks = stages / 2 unless given), zero-bubble order with I/W split."""
    return {"order": "zero-bubble", "split_backward": True, "directions": "v",
            "ranks": max(1, s // 2)}


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
    # AMDP's "two micro-batches in flight at stage 0" is Megatron's warm-up of
    # two: the third forward starts before the first backward. schedc counts
    # the forward being started too (as 1F1B's p - s), hence 3.
    return {
        "order": "1f1b", "flush": False, "versions": 1, "directions": "auto",
        "max_inflight": ((0, 3),), "max_inconsistency": 1, "max_delay": 1,
    }


PRESETS: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "gpipe": _gpipe,
    "1f1b": _one_f_one_b,
    "interleaved-1f1b": _interleaved,
    "zb-h1": _zb_h1,
    "zbv": _zbv,
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
