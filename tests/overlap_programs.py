"""A hand-written program set where the overlap rule matters (tests of the
verifier, the simulator and the runtime share it).

Two ranks, two stages, three micro-batches, one step. Rank 0 runs GPipe's
forwards, each send a batch of its own; rank 1 runs 1F1B (a gradient goes
back before the next activation is received). Under K = 1 rank 0 waits for
its send of mb 1 while rank 1 waits for its gradient send of mb 0, which rank
0 receives only later: a deadlock. Under K = 2 both sends complete in the
background and the set is deadlock-free.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.overlap import Overlap
from schedc.presets import preset_spec
from schedc.program import Instr, Manifest, RankProgram

MBS = 3


def _c(op: str, stage: int, mb: int) -> Instr:
    return Instr(op, stage=stage, mb=mb, pipeline=0, version=0)


def _m(op: str, stage: int, mb: int, peer: int) -> Instr:
    return Instr(op, stage=stage, mb=mb, pipeline=0, peer=peer)


def streams() -> list[list[Instr]]:
    r0, r1 = [], []
    for mb in range(MBS):
        r0 += [_c("F", 0, mb), _m("SEND_ACT", 0, mb, 1)]
    for mb in range(MBS):
        r0 += [_m("RECV_GRAD", 0, mb, 1), _c("B", 0, mb), Instr("ACC", stage=0, mb=mb,
                                                               pipeline=0)]
        r1 += [_m("RECV_ACT", 1, mb, 0), _c("F", 1, mb), _c("B", 1, mb),
               _m("SEND_GRAD", 1, mb, 0), Instr("ACC", stage=1, mb=mb, pipeline=0)]
    for s, r in ((0, r0), (1, r1)):
        r.append(Instr("STEP", stage=s, pipeline=0, version=1, count=MBS))
    return [r0, r1]


def program_set(rule: Overlap) -> tuple[Manifest, list[RankProgram]]:
    """The set, its manifest (GPipe's spec) recording `rule`; unverified."""
    template = compile_spec(preset_spec("gpipe", stages=2, microbatches=MBS))
    programs = [RankProgram(rank=r, body=tuple(s))
                for r, s in enumerate(streams())]
    return replace(template.manifest, overlap=rule.to_dict()), programs


def write_set(directory: Path, rule: Overlap) -> Path:
    manifest, programs = program_set(rule)
    return write_programs(directory, manifest, programs)
