"""The cost model of each candidate, from one base profile.

A measured profile (`--costs`, docs/costs.md) was taken on S0 stages at one
micro-batch size b0. A candidate has S stages and micro-batches of b samples.
Its costs follow three rules (docs/tune.md, "The cost model"):

- depth: the model is a line from input (0) to output (1); measured stage k
  covers [k/S0, (k+1)/S0). A new stage covering [lo, hi) gets the share of
  every measured stage's op times, stored activations and weight bytes that
  its interval overlaps (so S = S0 gives the profile back, and a heavy last
  stage stays heavy at the end). A message's size is the size at the boundary
  where it is cut.
- micro-batch size: F, B, I and W times, and every activation and gradient
  size, scale as b / b0 (compute and activations grow with the samples);
  weight ops (ACC, STEP, STASH, SWAP, LOOKAHEAD, ALLREDUCE) and weight bytes do
  not; link latency and bandwidth are the profile's.
- B, I and W a profile does not give are left out, and the simulator derives
  them on each candidate stage (schedc/simulate/derive.py: at stage 0 I = 0 and
  W = B, elsewhere I = B / 2), noted in tune.json.

With `--dp D` each replica's STEP also waits for a ring all-reduce of the
stage's weight gradient over D replicas on the profile's link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from schedc.errors import UserError
from schedc.instructions import COMPUTE_OPS
from schedc.simulate.costs import CostModel, CostsError, load_costs
from schedc.simulate.derive import DERIVABLE, derive, explain

SCALED_OPS = COMPUTE_OPS  # per micro-batch compute: grows with its samples


@dataclass(frozen=True)
class Profile:
    """What every candidate's CostModel derives from.

    base: the profile on its own stages (per-stage times filled in); mb_size:
    samples per micro-batch it was measured at; static_bytes: per stage, memory
    a stage replica holds besides activations and weight copies (gradients and
    optimizer state; 0 when unknown); max_stages: the model's layers, when known.
    """

    base: CostModel
    mb_size: int
    origin: str
    kind: str = "measured"  # or "estimate"
    static_bytes: tuple[float, ...] = (0.0,)
    max_stages: int | None = None
    memory_bytes: float | None = None  # the device's memory, when known (default cap)
    dp_link: tuple[float, float] | None = None  # (latency, bandwidth) between replicas
    seq_len: int | None = None  # tokens per sample, when known
    notes: tuple[str, ...] = field(default=())

    @property
    def stages(self) -> int:
        return len(self.base.stage_times)

    @property
    def unit(self) -> str:
        return self.base.unit

    def costs(self, stages: int, mb_size: int, dp: int = 1) -> CostModel:
        """The cost model of a candidate with `stages` stages and `mb_size` samples."""
        return scale(self.base, stages, mb_size / self.mb_size, dp, self.dp_link)

    def static_of(self, stages: int) -> list[float]:
        """Per new stage: its share of the static bytes."""
        return _shares(_broadcast(self.static_bytes, self.stages, "static bytes", self.origin),
                       stages)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "origin": self.origin, "stages": self.stages,
                "microbatch_size": self.mb_size, "unit": self.unit,
                "scaling": "F/B/I/W times and activation/gradient sizes x (b / b0); weight "
                           "ops and sizes fixed; stages resampled by depth",
                "notes": list(self.notes)}


def load_measured(path: str, mb_size: int | None, ranks: int = 1) -> Profile:
    """A `schedc-costs` file; mb_size from the flag, else its `source.micro_batch_size`.

    Its stages are its per-stage lists' length; a profile without one (only
    `default` and single values) gives every stage's costs for one stage per
    rank, so it is taken as measured on `ranks` stages."""
    base = load_costs(path)
    if mb_size is None:
        mb_size = _recorded_mb_size(path)
    if mb_size is None:
        raise UserError(f"{path}: the profile does not record its micro-batch size: give "
                        "--profile-mb-size N (samples per micro-batch in the measured run)")
    if mb_size < 1:
        raise UserError(f"--profile-mb-size must be at least 1, got {mb_size}")
    base, notes = _complete(base, ranks)
    return Profile(base, mb_size, str(path), notes=tuple(notes))


def _recorded_mb_size(path: str) -> int | None:
    source = json.loads(Path(path).read_text()).get("source")
    value = source.get("micro_batch_size") if isinstance(source, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _complete(base: CostModel, default_stages: int) -> tuple[CostModel, list[str]]:
    """Per-stage times and sizes for every stage of the profile."""
    n = _profile_stages(base)
    notes: list[str] = []
    if n == 1 and default_stages > 1 and len(base.stage_times) <= 1:
        n = default_stages
        notes.append(f"no per-stage lists: the costs are each stage's at {n} stages (one "
                     "per rank)")
    times = base.stage_times or (base.default_times,) * n
    if len(times) == 1 and n > 1:
        times = times * n
    times = [dict(t) for t in times]
    rules = explain(replace(base, stage_times=tuple(times)).derivations(n))
    given = [{op for op in DERIVABLE if op in t} for t in times]
    if len({frozenset(g) for g in given}) > 1:
        # Given on some stages only: derived on the profile's own stages, so that the
        # depth resampling never mixes given and missing values.
        notes += [f"{line} (not measured)" for line in rules]
        for s, t in enumerate(times):
            for op in DERIVABLE:
                got = None if op in t else derive(op, t, s)
                if got is not None:
                    t[op] = got[0]
    else:
        # Missing everywhere: the simulator derives them on each candidate stage
        # (schedc/simulate/derive.py); told once, as on the profile's stages.
        notes += [f"{line} (not measured; derived on each candidate's stages)"
                  for line in rules]
    lists = {name: _broadcast(getattr(base, name), n, name, base.origin)
             for name in ("activation_bytes", "grad_bytes", "stored_activation_bytes",
                          "weight_bytes")}
    return replace(base, stage_times=tuple(times), **lists), notes


def _profile_stages(base: CostModel) -> int:
    """Its per-stage times' length, else its longest per-stage list's."""
    if len(base.stage_times) > 1:
        return len(base.stage_times)
    lengths = [len(v) for v in (
        base.activation_bytes, base.grad_bytes, base.stored_activation_bytes,
        base.weight_bytes) if v]
    return max(lengths, default=1)


def _broadcast(values: tuple[float, ...] | None, n: int, name: str, origin: str
               ) -> tuple[float, ...] | None:
    if values is None:
        return None
    if len(values) == 1:
        return tuple(values) * n
    if len(values) != n:
        raise CostsError(origin, f"{name} has {len(values)} entries but the profile has "
                                 f"{n} stages (give {n} or 1)")
    return tuple(values)


@cache
def _depth_weights(n0: int, stages: int) -> tuple[tuple[float, ...], ...]:
    """w[s][k]: the fraction of measured stage k that new stage s covers."""
    out = []
    for s in range(stages):
        lo, hi = Fraction(s, stages), Fraction(s + 1, stages)
        row = []
        for k in range(n0):
            a, b = max(lo, Fraction(k, n0)), min(hi, Fraction(k + 1, n0))
            row.append(float(max(b - a, Fraction(0)) * n0))
        out.append(tuple(row))
    return tuple(out)


def _shares(values: tuple[float, ...], stages: int) -> list[float]:
    """Per new stage: the depth-weighted share of per-stage quantities."""
    weights = _depth_weights(len(values), stages)
    return [sum(v * w for v, w in zip(values, row, strict=True) if w) for row in weights]


def _cut(values: tuple[float, ...], point: Fraction, output: bool) -> float:
    """The message size at depth `point`: at a measured boundary, the profile's
    (output of the stage before it, or input gradient of the stage after it);
    inside a measured stage, that of its nearest inner boundary."""
    n0 = len(values)
    x = point * n0
    k = int(x)
    if x == k:  # a measured boundary
        return values[k - 1] if output else values[min(k, n0 - 1)]
    if output:
        return values[k] if k < n0 - 1 else values[max(k - 1, 0)]
    return values[k + 1] if k + 1 < n0 else values[k]


def scale(base: CostModel, stages: int, ratio: float, dp: int = 1,
          dp_link: tuple[float, float] | None = None) -> CostModel:
    """`base` (complete, per stage) resampled to `stages` and micro-batch ratio b/b0."""
    ops = sorted({op for t in base.stage_times for op in t})
    per_op = {op: _shares(tuple(t.get(op, 0.0) for t in base.stage_times), stages)
              for op in ops}
    weights = _shares(base.weight_bytes, stages) if base.weight_bytes else None
    times = []
    for s in range(stages):
        t = {op: per_op[op][s] * (ratio if op in SCALED_OPS else 1.0) for op in ops}
        if dp > 1 and weights is not None:
            t["STEP"] = t.get("STEP", 0.0) + _ring(float(weights[s]), dp,
                                                   dp_link or (base.latency, base.bandwidth))
        times.append(t)
    act = grad = stored = None
    if base.activation_bytes:
        act = tuple(0.0 if s == stages - 1 else
                    _cut(base.activation_bytes, Fraction(s + 1, stages), True) * ratio
                    for s in range(stages))
    if base.grad_bytes:
        grad = tuple(0.0 if s == 0 else
                     _cut(base.grad_bytes, Fraction(s, stages), False) * ratio
                     for s in range(stages))
    if base.stored_activation_bytes:
        stored = tuple(x * ratio for x in _shares(base.stored_activation_bytes, stages))
    return replace(base, stage_times=tuple(times), default_times={},
                   activation_bytes=act, grad_bytes=grad, stored_activation_bytes=stored,
                   weight_bytes=tuple(weights) if weights else None)


def _ring(nbytes: float, n: int, link: tuple[float, float]) -> float:
    """A ring all-reduce of nbytes over n participants: 2(n-1) latencies and
    2(n-1)/n of the bytes on each link."""
    latency, bandwidth = link
    steps = 2 * (n - 1)
    return steps * latency + nbytes * steps / n / bandwidth
