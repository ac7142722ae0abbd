"""Program data types: the one contract between the compiler and the runtime.

A compiled schedule is one `RankProgram` per rank plus a `Manifest`. Programs are
plain data (no torch), written as JSON by `schedc.files`. `docs/programs.md` is
the reference for every instruction's meaning.

Periodic form: a rank runs `prologue`, then `body` N times, then `epilogue`.
Repetition k of the body (k = 0 .. N-1) shifts every micro-batch index by
k * period.microbatches and every weight version by k * period.steps; the
epilogue is written for N = 1 and is shifted by (N - 1) * period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter
from typing import Any

# The op facts live in the instruction table; these names are re-exported for
# the runtime and older imports.
from schedc.instructions import (
    ALL_OPS,
    COMM_OPS,
    COMPUTE_OPS,
    OPTIONAL_FIELDS,
    RECV_OPS,
    REQUIRED_FIELDS,
    SEND_OPS,
    WEIGHT_OPS,
)

FORMAT_VERSION = 1

__all__ = ["ALL_OPS", "COMM_OPS", "COMPUTE_OPS", "OPTIONAL_FIELDS", "RECV_OPS",
           "REQUIRED_FIELDS", "SEND_OPS", "WEIGHT_OPS", "FORMAT_VERSION", "Instr", "Period",
           "RankProgram", "Manifest"]

# Fields whose value shifts with the body repetition.
MB_SHIFTED = "mb"
VERSION_SHIFTED = "version"


@dataclass(frozen=True, slots=True, init=False)
class Instr:
    """One instruction. Unused fields are None and are not written to files.

    stage: the stage this rank works on (the producer for a send, the consumer
    for a receive). version: for F/B/I/W the weight version read; for STEP the
    version produced; for STASH/RELEASE/SWAP/LOOKAHEAD the version concerned.
    count: micro-batch gradients summed into the step (over all replicas).
    group: sorted ranks holding a replica of `stage` (ALLREDUCE).
    lookahead: the op reads (F) or points at (SWAP) extrapolated weights.
    """

    op: str
    stage: int | None = None
    mb: int | None = None
    pipeline: int | None = None
    version: int | None = None
    peer: int | None = None
    group: tuple[int, ...] | None = None
    count: int | None = None
    alpha: float | None = None
    lookahead: bool | None = None

    def __init__(self, op: str, stage: int | None = None, mb: int | None = None,
                 pipeline: int | None = None, version: int | None = None,
                 peer: int | None = None, group: tuple[int, ...] | None = None,
                 count: int | None = None, alpha: float | None = None,
                 lookahead: bool | None = None) -> None:
        # The slots set directly: a frozen dataclass's own __init__ goes
        # through object.__setattr__ per field, about three times slower (a
        # large compile makes millions of instructions).
        set_op, set_stage, set_mb, set_pipeline, set_version, set_peer, set_group, \
            set_count, set_alpha, set_lookahead = _SET
        set_op(self, op)
        set_stage(self, stage)
        set_mb(self, mb)
        set_pipeline(self, pipeline)
        set_version(self, version)
        set_peer(self, peer)
        set_group(self, group)
        set_count(self, count)
        set_alpha(self, alpha)
        set_lookahead(self, lookahead)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for name, value in zip(_NAMES, _VALUES(self)[1:], strict=True):
            if value is not None:
                out[name] = list(value) if name == "group" else value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Instr:
        kwargs = dict(data)
        if "group" in kwargs and kwargs["group"] is not None:
            kwargs["group"] = tuple(kwargs["group"])
        return Instr(**kwargs)

    def shifted(self, mb_shift: int, version_shift: int) -> Instr:
        """This instruction in a later repetition of the body."""
        return shift_all((self,), mb_shift, version_shift)[0]

    def label(self) -> str:
        """Short human form, e.g. `F s1 mb3 v0` or `SEND_ACT s1 mb3 ->2`."""
        parts = [self.op]
        if self.stage is not None:
            parts.append(f"s{self.stage}")
        if self.pipeline:
            parts.append(f"p{self.pipeline}")
        if self.mb is not None:
            parts.append(f"mb{self.mb}")
        if self.version is not None:
            parts.append(f"v{self.version}{'*' if self.lookahead else ''}")
        if self.peer is not None:
            parts.append(("->" if self.op in SEND_OPS else "<-") + str(self.peer))
        if self.group is not None:
            parts.append("{" + ",".join(map(str, self.group)) + "}")
        return " ".join(parts)


@dataclass(frozen=True)
class Period:
    """How one body repetition shifts micro-batch indices and versions."""

    microbatches: int
    steps: int


@dataclass(frozen=True)
class RankProgram:
    rank: int
    prologue: tuple[Instr, ...] = ()
    body: tuple[Instr, ...] = ()
    epilogue: tuple[Instr, ...] = ()

    def sections(self) -> dict[str, tuple[Instr, ...]]:
        return {"prologue": self.prologue, "body": self.body, "epilogue": self.epilogue}

    def unrolled(self, repeats: int, period: Period) -> list[Instr]:
        """The instruction stream for `repeats` body repetitions (the one
        unrolling every client uses: verifier, analysis, simulator)."""
        if repeats < 1:
            raise ValueError("a program runs its body at least once")
        out = list(self.prologue)
        for k in range(repeats):
            out.extend(shift_all(self.body, k * period.microbatches, k * period.steps))
        last = repeats - 1
        out.extend(shift_all(self.epilogue, last * period.microbatches, last * period.steps))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "rank": self.rank,
            **{name: [i.to_dict() for i in seq] for name, seq in self.sections().items()},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RankProgram:
        return RankProgram(
            rank=data["rank"],
            **{
                name: tuple(Instr.from_dict(i) for i in data.get(name, []))
                for name in ("prologue", "body", "epilogue")
            },
        )


def shift_all(seq: Sequence[Instr], dm: int, dv: int) -> list[Instr]:
    """Every instruction of `seq` shifted (`Instr.shifted`): micro-batch by dm,
    version by dv. A copy is made by setting the slots directly, not through
    dataclasses.replace (which was 60% of a large simulation); instructions
    with neither field are shared."""
    if not dm and not dv:
        return list(seq)
    out = []
    append = out.append
    new_instr = object.__new__
    op, stage, mb_, pipeline, version_, peer, group, count, alpha, lookahead = _SET
    for ins in seq:
        mb, version = ins.mb, ins.version
        if mb is None and version is None:
            append(ins)
            continue
        new = new_instr(Instr)
        op(new, ins.op)
        stage(new, ins.stage)
        mb_(new, mb if mb is None else mb + dm)
        pipeline(new, ins.pipeline)
        version_(new, version if version is None else version + dv)
        peer(new, ins.peer)
        group(new, ins.group)
        count(new, ins.count)
        alpha(new, ins.alpha)
        lookahead(new, ins.lookahead)
        append(new)
    return out


_shifted = shift_all  # the older name

# Instr.to_dict's field names after `op`, and a getter of all fields at once.
_NAMES = tuple(f.name for f in fields(Instr))[1:]
_VALUES = attrgetter("op", *_NAMES)

# The setter of every slot of Instr, in field order, bypassing the frozen
# __setattr__ (Instr.__init__ and shift_all's copies; a new field is a new
# line in both).
_SET = tuple(Instr.__dict__[f.name].__set__ for f in fields(Instr))
assert len(_SET) == 10, "Instr.__init__ and shift_all set ten fields"


@dataclass(frozen=True)
class Manifest:
    """What a program directory holds, beside the per-rank programs."""

    spec: dict[str, Any]
    spec_hash: str
    world_size: int
    num_stages: int
    num_pipelines: int
    stage_to_rank: tuple[tuple[int, ...], ...]  # [pipeline][stage] -> rank
    period: Period
    synchronous: bool
    analysis: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    format_version: int = FORMAT_VERSION
    # The overlap rule the programs were proven under (schedc/overlap.py); {} = K = 1.
    overlap: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data. Nested values are shared, not copied (an
        asynchronous analysis holds a row per micro-batch and stage)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["period"] = asdict(self.period)
        data["stage_to_rank"] = [list(m) for m in self.stage_to_rank]
        if not data["overlap"]:
            del data["overlap"]  # the default: older manifests are the same bytes
        return {"format": "schedc-programs", **data}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Manifest:
        kwargs = {k: v for k, v in data.items() if k != "format"}
        kwargs["stage_to_rank"] = tuple(tuple(m) for m in data["stage_to_rank"])
        kwargs["period"] = Period(**data["period"])
        return Manifest(**kwargs)

    def ranks_of_stage(self, stage: int) -> list[tuple[int, int]]:
        """(pipeline, rank) for every replica of `stage`."""
        return [(p, m[stage]) for p, m in enumerate(self.stage_to_rank)]
