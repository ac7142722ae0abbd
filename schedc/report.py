"""Text for people: the analysis summary and the per-rank program grid."""

from __future__ import annotations

from collections.abc import Sequence

from schedc.instructions import TABLE
from schedc.overlap import Overlap
from schedc.program import COMPUTE_OPS, Instr, Manifest, RankProgram

# Each op's cell in the grid, from the instruction table (its name when it has none).
_SHORT = {op: row.short or op for op, row in TABLE.items()}


def summary(manifest: Manifest) -> str:
    a = manifest.analysis
    spec = manifest.spec
    kind = "synchronous" if manifest.synchronous else "asynchronous"
    lines = [
        f"schedule {spec.get('name')}: {kind}, {manifest.num_stages} stages on "
        f"{manifest.world_size} ranks, {manifest.num_pipelines} pipeline(s), "
        f"{manifest.period.microbatches // manifest.period.steps} micro-batches per step",
        f"  bubble ratio {a['bubble_ratio']:.4f} (steady state "
        f"{a['steady_state_bubble_ratio']:.4f}), makespan {a['makespan']:g} "
        f"[{a['cost_model']}]",
        f"  max inconsistency {a['max_inconsistency']}, max delay {a['max_delay']}",
        "  per rank: peak activations "
        + " ".join(str(r["peak_activations"]) for r in a["ranks"])
        + "; weight copies " + " ".join(str(r["weight_copies"]) for r in a["ranks"]),
    ]
    rule = Overlap.from_dict(manifest.overlap)
    if rule.overlapped:
        lines.append(f"  deadlock-free under {rule.describe()}")
    return "\n".join(lines)


def _cell(ins: Instr, versions: bool, pipelines: int) -> str:
    if ins.op in COMPUTE_OPS:
        pipe = "abcdefghijklmnopqrstuvwxyz"[ins.pipeline % 26] if pipelines > 1 else ""
        text = f"{ins.op}{pipe}{ins.mb}"
        if versions:
            text += f"@{ins.version}{'*' if ins.lookahead else ''}"
        return text
    short = _SHORT.get(ins.op, ins.op)
    if ins.mb is not None:
        return f"{short}{ins.mb}"
    if ins.op == "STEP":
        return f"S{ins.stage}>{ins.version}"
    return f"{short}{ins.stage}"


def grid(manifest: Manifest, programs: Sequence[RankProgram], comms: bool = False,
         ranks: Sequence[int] | None = None) -> str:
    """One row per rank and section; compute ops (and with comms, the rest)."""
    versions = not manifest.synchronous
    chosen = [programs[r] for r in (ranks if ranks is not None else range(len(programs)))]
    rows: list[tuple[str, list[str]]] = []
    for section in ("prologue", "body", "epilogue"):
        for prog in chosen:
            seq = prog.sections()[section]
            cells = [_cell(i, versions, manifest.num_pipelines) for i in seq
                     if comms or i.op in COMPUTE_OPS or i.op == "STEP"]
            if cells or section == "body":
                rows.append((f"{section[:4]} r{prog.rank}", cells))
    width = max((len(c) for _, cells in rows for c in cells), default=1)
    head = max(len(h) for h, _ in rows)
    out = []
    last_section = None
    for head_text, cells in rows:
        if head_text[:4] != last_section and last_section is not None:
            out.append("")
        last_section = head_text[:4]
        out.append(head_text.ljust(head) + " | " + " ".join(c.ljust(width) for c in cells))
    legend = ("F/B/I/W<pipeline letter><mb>" + ("@version (* = look-ahead)" if versions else "")
              + "; S<stage>><version> = optimizer step")
    if comms:
        legend += "; >a/<a send/recv activation, >g/<g gradient, + ACC, AR all-reduce, " \
                  "st stash, sw swap, rl release, la look-ahead"
    return "\n".join(out) + "\n\n" + legend
