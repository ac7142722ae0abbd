"""Small helpers: compile presets once, read compute sequences and tables."""

from __future__ import annotations

import functools

from schedc.compiler import Compiled, compile_spec
from schedc.presets import preset_spec
from schedc.program import COMPUTE_OPS, RankProgram


@functools.cache
def compiled(name: str, stages: int, microbatches: int, ranks: int | None = None) -> Compiled:
    kw = {"stages": stages, "microbatches": microbatches}
    if ranks is not None:
        kw["ranks"] = ranks
    return compile_spec(preset_spec(name, **kw))


def compute_seq(prog: RankProgram) -> list[tuple[str, int, int]]:
    """(kind, stage, mb) of every compute instruction of the body, in order."""
    return [(i.op, i.stage, i.mb) for i in prog.body if i.op in COMPUTE_OPS]


def stage_rows(c: Compiled, pipeline: int = 0) -> list[dict]:
    return c.manifest.analysis["stages"][pipeline]


def versions(c: Compiled, pipeline: int, stage: int) -> dict[int, tuple[int, int, int]]:
    """mb -> (forward version, backward version, applied to)."""
    rows = c.manifest.analysis["versions"]["by_stage"][f"{pipeline}/{stage}"]
    return {mb: (f, b, a) for mb, f, b, a in rows}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if a > 0 else 0


def one_f_one_b_bubble(p: int, m: int) -> float:
    return (p - 1) / (m + p - 1)


