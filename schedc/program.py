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

from dataclasses import asdict, dataclass, field, fields, replace
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


@dataclass(frozen=True)
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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if f.name == "group" else value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Instr:
        kwargs = dict(data)
        if "group" in kwargs and kwargs["group"] is not None:
            kwargs["group"] = tuple(kwargs["group"])
        return Instr(**kwargs)

    def shifted(self, mb_shift: int, version_shift: int) -> Instr:
        """This instruction in a later repetition of the body."""
        changes: dict[str, int] = {}
        if self.mb is not None and mb_shift:
            changes["mb"] = self.mb + mb_shift
        if self.version is not None and version_shift:
            changes["version"] = self.version + version_shift
        return replace(self, **changes) if changes else self

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
            out.extend(_shifted(self.body, k * period.microbatches, k * period.steps))
        last = repeats - 1
        out.extend(_shifted(self.epilogue, last * period.microbatches, last * period.steps))
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


def _shifted(seq: tuple[Instr, ...], dm: int, dv: int) -> list[Instr]:
    """`Instr.shifted` over a sequence, about 10x faster: shifted copies are made
    by copying the instance dict, not through dataclasses.replace (which was 60%
    of a large simulation). tests/simulate checks it equals `shifted`."""
    if not dm and not dv:
        return list(seq)
    out = []
    new_instr = object.__new__
    for ins in seq:
        if ins.mb is None and ins.version is None:
            out.append(ins)
            continue
        new = new_instr(Instr)
        d = new.__dict__
        d.update(ins.__dict__)
        if ins.mb is not None:
            d["mb"] = ins.mb + dm
        if ins.version is not None:
            d["version"] = ins.version + dv
        out.append(new)
    return out


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
        data = asdict(self)
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
