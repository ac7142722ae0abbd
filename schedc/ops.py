"""Compute operations of a schedule, before lowering.

An `Op` names one unit of work of the dependency graph: a forward, backward,
input-backward or weight-backward of one micro-batch on one stage replica, or a
stage's optimizer step (kind "S", mb = the step's batch index, pipeline = -1:
one step node stands for the step of every replica of the stage).
"""

from __future__ import annotations

from typing import NamedTuple

STEP_KIND = "S"


class Op(NamedTuple):
    kind: str
    pipeline: int
    stage: int
    mb: int

    def label(self) -> str:
        if self.kind == STEP_KIND:
            return f"STEP s{self.stage} b{self.mb}"
        pipe = f"p{self.pipeline}" if self.pipeline else ""
        return f"{self.kind}{pipe} s{self.stage} mb{self.mb}"


def step_op(stage: int, batch: int) -> Op:
    return Op(STEP_KIND, -1, stage, batch)
