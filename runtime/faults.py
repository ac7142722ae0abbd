"""Numerical faults: NaN or Inf in a loss or a gradient, and what to do about it.

Detection costs no extra pass: the last stage checks each loss it computes,
and every ACC flags a NaN or Inf in the micro-batch's gradient on the device,
inside the fused accumulation kernel (`schedc.kernels.accumulate(...,
flag=...)`, one int32 slot per ACC of the step). The flags are read once per
STEP (`StageReplica.nonfinite_mbs`), so a GPU run synchronises once per step,
not once per micro-batch. A loss on the GPU is likewise checked at the STEP of
its stage (on the CPU, where reading it costs nothing, at its forward).

Policy (`--on-nan`):

- `stop` (default): the STEP that would apply the poisoned gradient raises
  `NumericalFault` naming the step, stage and micro-batch; a non-finite loss
  stops the run at once, at its forward. Nothing is applied.
- `skip`: the step is skipped on every stage of every replica, consistently.
  The STEPs of a synchronous step are deferred to the end of the step's body
  (nothing reads a stage's weights after its STEP in the same body: checked
  at start-up), where every process votes: one all-reduce (MAX) of a flag
  over every process (`Transport.agree`), posted when no point-to-point
  operation is in flight. If any stage of any replica saw a non-finite loss or
  gradient, every stage skips: the accumulator is zeroed, weights and
  optimizer state stay, and the version advances so the program's later
  version checks hold. Asynchronous programs have no point where all stages
  stand between the same two steps, so `skip` is refused for them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from schedc.errors import UserError
from schedc.program import RankProgram

from . import hostread

STOP, SKIP = "stop", "skip"


class NumericalFault(RuntimeError):
    """A NaN or Inf under the `stop` policy."""


@dataclass
class Poison:
    """Non-finite values seen by one stage replica since its last STEP."""

    losses: list[int] = field(default_factory=list)  # mbs whose loss was not finite
    device_losses: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # unread

    def first_bad(self, replica) -> tuple[str, int] | None:
        """('loss' | 'gradient', mb) of the first non-finite value, or None: the
        losses' finiteness and the gradient flags in one read (one host sync per STEP)."""
        flags = replica.nonfinite_flags()
        if self.device_losses:
            finite = torch.isfinite(torch.stack([t.reshape(()) for _, t in self.device_losses]))
            ok, flag_values = hostread.read([finite, flags])
            self.losses += [mb for (mb, _), f in zip(self.device_losses, ok, strict=True)
                            if not f]
            self.device_losses.clear()
        else:
            (flag_values,) = hostread.read([flags])  # an empty tensor reads as []
        if self.losses:
            return "loss", self.losses[0]
        bad = replica.nonfinite_of(flag_values)
        return ("gradient", bad[0]) if bad else None

    def clear(self) -> None:
        self.losses.clear()
        self.device_losses.clear()


def fault_message(kind: str, mb: int, stage: int, pipeline: int, m: int) -> str:
    where = f"stage {stage}" + (f" (pipeline {pipeline})" if pipeline else "")
    return (f"non-finite {kind} (NaN or Inf) at step {mb // m + 1}, {where}, micro-batch {mb}; "
            "--on-nan skip would skip such steps")


def loss_is_finite(loss: torch.Tensor) -> bool:
    return math.isfinite(float(loss))


def check_skip_supported(program: RankProgram, synchronous: bool) -> None:
    """`--on-nan skip` defers STEPs to the end of their body: refuse programs
    where that would change what runs (asynchronous, or a stage used again
    after its STEP within the body)."""
    if not synchronous:
        raise UserError("--on-nan skip needs a synchronous (flush on) schedule: an "
                        "asynchronous pipeline never stands between two steps on every "
                        "stage at once; use --on-nan stop")
    stepped: set[tuple[int, int]] = set()
    for i, ins in enumerate(program.body):
        key = (ins.pipeline or 0, ins.stage)
        if key in stepped:
            raise UserError(f"--on-nan skip: rank {program.rank}, body {i} ({ins.label()}) "
                            "uses a stage after its STEP in the same step; use --on-nan stop")
        if ins.op == "STEP":
            stepped.add(key)


# ---- fault injection (tests, docs/reliability.md) ------------------------------------
# SCHEDC_INJECT="nan-grad@S:MB,nan-loss@MB,die-in-save@STEPS": make stage S's weight
# gradient of micro-batch MB NaN, the loss of MB NaN, or end the process (exit 137,
# as SIGKILL would) half-way through writing the checkpoint after STEPS steps (every
# rank; `die-in-save@STEPS:G` global rank G only). A suffix #A limits a fault to
# torchrun's restart attempt A (TORCHELASTIC_RESTART_COUNT; 0 outside torchrun):
# `die-in-save@10#0` dies once, and the restarted job goes on.
# Read once, when a run is built (`Injection.from_env`); the interpreter asks the
# resolved object, never the environment.
@dataclass(frozen=True)
class Injection:
    """The faults to inject into one run, and the restart attempt they apply to."""

    places: frozenset[str] = frozenset()  # "nan-grad@1:5", "nan-loss@2#0", ...
    attempt: str = "0"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Injection:
        env = os.environ if env is None else env
        spec = env.get("SCHEDC_INJECT", "")
        return cls(frozenset(part.strip() for part in spec.split(",") if part.strip()),
                   env.get("TORCHELASTIC_RESTART_COUNT", "0"))

    def __bool__(self) -> bool:
        return bool(self.places)

    def at(self, kind: str, *where: int) -> bool:
        if not self.places:
            return False
        want = f"{kind}@" + ":".join(str(w) for w in where)
        return want in self.places or f"{want}#{self.attempt}" in self.places


NO_INJECTION = Injection()


def injected(kind: str, *where: int) -> bool:
    """Outside the interpreter's loop (a checkpoint save): the environment now."""
    return Injection.from_env().at(kind, *where)
