"""Spec -> DSL text. `parse_text(format_spec(spec)) == spec` for every Spec that
validates (and whose name, lookahead and error_feedback the DSL can write).

Every field is written, in the Spec's field order, so the text is a complete
description; a Spec made from a known preset gets `from PRESET` in its header
(which then changes nothing, since every field is set, but keeps `spec.preset`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from schedc.presets import PRESETS
from schedc.spec import Spec

__all__ = ["format_spec", "format_value"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_NULL_WORD = {"ranks": "auto", "lookahead": "off", "error_feedback": "off",
              "lr_warmup_by_delay": "none"}
_ORDER = (
    "stages", "ranks", "directions", "microbatches", "order", "flush", "max_inflight",
    "max_inconsistency", "max_delay", "max_activations", "versions", "fixed_delay",
    "lookahead", "split_backward", "max_deferred_w", "error_feedback", "lr_warmup_by_delay",
    "dp_mode", "dp_fraction", "dp_period", "dp_beta", "dp_max_lateness",
)


def format_spec(spec: Spec) -> str:
    """The DSL text of `spec`. Raises ValueError for a name the DSL cannot write."""
    if not _NAME.fullmatch(spec.name) or _NUMBER.fullmatch(spec.name):
        raise ValueError(f"schedule name {spec.name!r} is not a DSL name ([A-Za-z0-9_-]+)")
    header = f"schedule {spec.name}"
    if spec.preset in PRESETS:
        header += f" from {spec.preset}"
    lines = [header + " {"]
    for field in _ORDER:
        value = getattr(spec, field)
        if field == "max_inflight" and value:
            lines += [f"  max_inflight {b} at stage {s}" for s, b in value]
        elif field == "microbatches":
            lines.append(f"  microbatches {value} per step")
        else:
            lines.append(f"  {field} {format_value(field, value)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_value(field: str, value: Any) -> str:
    """One field's value as DSL text (`max_inflight` as its whole-field form)."""
    if value is None:
        return _NULL_WORD.get(field, "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{field} {value} cannot be written in the DSL")
        return repr(value)
    if field == "directions" and not isinstance(value, str):
        return ", ".join(_direction(d) for d in value)
    if field == "max_inflight":
        return "none" if not value else "; ".join(f"{b} at stage {s}" for s, b in value)
    return str(value)


def _direction(direction: str | tuple[int, ...]) -> str:
    if isinstance(direction, str):
        return direction
    return "map(" + ", ".join(str(r) for r in direction) + ")"
