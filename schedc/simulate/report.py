"""Figures as text for people: one summary, a per-rank table, histograms."""

from __future__ import annotations

from collections.abc import Sequence

from schedc.simulate.metrics import Figures


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def fmt_time(value: float, unit: str) -> str:
    return f"{value:.6g}" + ("" if unit == "unit" else f" {unit}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _histogram(name: str, hist: dict[int, int]) -> list[str]:
    if not hist:
        return [f"{name}: -"]
    total = sum(hist.values())
    out = [f"{name} (value: count of (mb, stage)):"]
    for value in sorted(hist):
        bar = "#" * max(1, round(30 * hist[value] / total))
        out.append(f"  {value:>3}: {hist[value]:>7}  {bar}")
    return out


def render(fig: Figures) -> str:
    u = fig.unit
    lo, hi = fig.steady_window
    lines = [
        f"simulated {fig.name or 'programs'}: {fig.steps} step(s), time unit: {u}",
        f"makespan                  {fmt_time(fig.makespan, u)}",
        f"bubble ratio              {fig.bubble_ratio:.4f}",
        f"steady-state throughput   {fig.steady_state_throughput:.6g} micro-batches / {u}",
        f"steady-state bubble ratio {fig.steady_state_bubble_ratio:.4f}"
        f"  (window {lo:.6g} .. {hi:.6g})",
        f"max inconsistency         {fig.max_inconsistency}",
        f"max delay                 {fig.max_delay}",
        "",
    ]
    header = ("rank", "busy", "bubble", "peak acts", "act bytes", "weight copies", "weight bytes")
    rows = [(str(r.rank), f"{r.busy:.6g}", f"{r.bubble_ratio:.4f}", str(r.peak_activations),
             fmt_bytes(r.peak_activation_bytes), str(r.weight_copies), fmt_bytes(r.weight_bytes))
            for r in fig.ranks]
    lines += _table(header, rows) + [""]
    lines += _histogram("inconsistency", fig.inconsistency_histogram)
    lines += _histogram("delay", fig.delay_histogram)
    return "\n".join(lines)


def render_comparison(figs: Sequence[Figures]) -> str:
    """One row per schedule: the figures that decide between them."""
    header = ("schedule", "makespan", "bubble", "steady thrpt", "steady bubble",
              "peak acts", "peak memory", "max incons", "max delay")
    rows = [(f.name, fmt_time(f.makespan, f.unit), f"{f.bubble_ratio:.4f}",
             f"{f.steady_state_throughput:.6g}", f"{f.steady_state_bubble_ratio:.4f}",
             str(max(r.peak_activations for r in f.ranks)), fmt_bytes(f.peak_memory_bytes),
             str(f.max_inconsistency), str(f.max_delay)) for f in figs]
    return "\n".join(_table(header, rows))
