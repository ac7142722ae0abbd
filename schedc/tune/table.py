"""The ranked table for people, and the whole of it as JSON (DIR/tune.json)."""

from __future__ import annotations

import re
from typing import Any

from schedc.tune.evaluate import Row
from schedc.tune.search import Result

FORMAT, VERSION = "schedc-tune", 1
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_POWERS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
           "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_size(text: str) -> float:
    """Bytes from '40GiB', '40GB', '512MiB', '1e9' or '123' (argparse type)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 40GiB, 80GB, 512MiB)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    return float(m.group(1)) * _POWERS[unit]


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_time(t: float | None, unit: str) -> str:
    if t is None:
        return "-"
    if unit not in _SCALE:
        return f"{t:.4g}"
    seconds = t * _SCALE[unit]
    for name, size in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= size:
            return f"{seconds / size:.4g} {name}"
    return f"{seconds / 1e-9:.4g} ns"


def throughput_unit(unit: str) -> str:
    return "samples/s" if unit in _SCALE else "samples/unit"


def per_second(x: float | None, unit: str) -> float | None:
    return None if x is None else x / _SCALE.get(unit, 1.0)


HEADER = ("#", "candidate", "mb", "step time", "{tp}", "bubble", "peak mem/rank",
          "delay", "incons")


def render(result: Result, top: int | None = None) -> str:
    """The ranked candidates (the first `top`), one line each, then the drops."""
    unit = result.profile.unit
    rows = result.ranked[:top] if top else result.ranked
    header = [h.format(tp=throughput_unit(unit)) for h in HEADER]
    body = [[str(i + 1), r.candidate.label(), str(r.mb_size), fmt_time(r.step_time, unit),
             f"{per_second(r.throughput, unit):.4g}", f"{r.bubble:.3f}",
             fmt_bytes(r.peak_memory), str(r.max_delay), str(r.max_inconsistency)]
            for i, r in enumerate(rows)]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) if j == 1 else c.rjust(w)
                       for j, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
             for line in [header, *body]]
    if top and len(result.ranked) > top:
        lines.append(f"... {len(result.ranked) - top} more in tune.json")
    return "\n".join(lines)


def summary(result: Result) -> str:
    """One line: how many candidates, and why the others were dropped."""
    n = len(result.rows)
    parts = [f"{len(result.ranked)} within the caps"]
    words = {"refused": "refused by the compiler",
             "skipped": "skipped (only the compiler's search builds them: --search-compiles)"}
    words["duplicate"] = "with the same programs as another"
    for status in ("over memory", "over max delay", "over max inconsistency", "refused",
                   "skipped", "duplicate"):
        k = result.counts.get(status, 0)
        if k:
            parts.append(f"{k} {words.get(status, status)}")
    return f"{n} candidates: " + ", ".join(parts)


def to_json(result: Result) -> dict[str, Any]:
    q = result.query
    best = result.best
    return {
        "format": FORMAT, "version": VERSION,
        "query": {"ranks": q.ranks, "global_batch": q.batch, "dp": q.dp,
                  "memory_bytes": q.memory, "max_delay": q.max_delay,
                  "max_inconsistency": q.max_inconsistency},
        "profile": result.profile.describe(),
        "ranking": "predicted throughput, highest first (ties: peak memory, max delay, "
                   "max inconsistency, label)",
        "units": {"step_time": result.profile.unit,
                  "throughput": f"samples per {result.profile.unit}",
                  "memory": "bytes"},
        "best": best.candidate.label() if best else None,
        "counts": dict(sorted(result.counts.items())),
        "candidates": [_row(r, i) for i, r in enumerate(result.rows)],
    }


def _row(r: Row, i: int) -> dict[str, Any]:
    return {"rank": i + 1 if r.ok else None, **r.to_dict()}
