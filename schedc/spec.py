"""The Spec: a validated, immutable description of a pipeline schedule.

Every schedule, named preset or custom DSL file, is one Spec. Field meanings
are documented where they are declared; `docs/dsl.md` gives the same fields in
DSL form. `Spec.validate()` raises `SpecError` naming the offending field, so
the DSL front end can point at the line that set it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

ORDERS = ("fill-drain", "1f1b", "interleaved", "zero-bubble")
NAMED_DIRECTIONS = ("down", "up")
DP_MODES = ("sync", "async-sparse")
Direction = str | tuple[int, ...]  # "down", "up", or stage -> rank map of one chunk


class SpecError(ValueError):
    """A semantic error in a Spec, naming the field that causes it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Spec:
    name: str = "custom"
    # Total stages of one pipeline (every pipeline has the same stages).
    stages: int = 4
    # Ranks (devices). Defaults to `stages`; stages / ranks chunks per rank.
    ranks: int | None = None
    # One entry per concurrent pipeline: "down" puts stage i on rank i mod R,
    # "up" on rank R-1-(i mod R); a tuple gives the rank of stages 0..R-1 of
    # the first chunk, later chunks repeat it. "auto" (AMDP) picks p/2 maps.
    directions: tuple[Direction, ...] | str = ("down",)
    # Micro-batches per optimizer step, over all pipelines; micro-batch j runs
    # on pipeline j mod (number of pipelines).
    microbatches: int = 8
    # The per-rank ordering policy.
    order: str = "1f1b"
    # True: drain before every optimizer step (synchronous). False: run on
    # across steps (asynchronous); each stage steps once per `microbatches`.
    flush: bool = True
    # Per-stage bound on micro-batches between F and B (per pipeline), as
    # ((stage, bound), ...). Unlisted stages default to the policy's own.
    max_inflight: tuple[tuple[int, int], ...] = ()
    # Bounds the verifier proves; None = not bounded.
    max_inconsistency: int | None = None
    max_delay: int | None = None
    max_activations: int | None = None  # per rank, micro-batches alive at once
    # Weight versions kept per stage replica: 1 = no stash (a backward reads
    # the current weights); n >= 2 = the backward reads its forward's version,
    # with at most n copies; "auto" = as many as that needs.
    versions: int | str = 1
    # Forwards of the b-th step's micro-batches read version max(0, b - d):
    # PipeDream-2BW's constant delay. None: forwards read the current version.
    fixed_delay: int | None = None
    # Forwards read w + alpha*(w - w_prev); "auto" sets alpha per stage to its
    # steady-state delay. None: off.
    lookahead: float | str | None = None
    # Split each backward into I (input gradient) and W (weight gradient).
    split_backward: bool = False
    # With split_backward: a stage starts a forward only while fewer than its
    # in-flight bound + N micro-batches await their W (a micro-batch's state is
    # held from F to W), so Ws trail their Is by at most about N. ZB-H1 takes
    # N = stages - 1. None: Ws may wait to the drain (memory grows with m).
    max_deferred_w: int | None = None
    # Error-feedback correction g + lambda*(g - g_prev) before the optimizer
    # (runtime option carried with the schedule). None: off.
    error_feedback: float | None = None
    # PipeMare learning-rate warm-up by delay: over the first K steps a stage
    # with delay tau uses lr * tau**-(1 - min(k/K, 1)). None: off.
    lr_warmup_by_delay: int | None = None
    # Data parallelism across pipeline replicas (`--dp D` at run time): "sync"
    # all-reduces gradients at every step; "async-sparse" (AsyncMesh) steps on
    # local gradients and every `dp_period` steps averages a `dp_fraction` of
    # the parameters, up to `dp_max_lateness` steps late, corrected by an EMA
    # (coefficient `dp_beta`) of each replica's own drift.
    dp_mode: str = "sync"
    dp_fraction: float = 1.0
    dp_period: int = 1
    dp_beta: float = 0.9
    dp_max_lateness: int = 0
    # Free-form origin (preset name) for people; not part of the semantics.
    preset: str | None = field(default=None, compare=False)

    # ---- derived -------------------------------------------------------------
    @property
    def num_ranks(self) -> int:
        return self.ranks if self.ranks is not None else self.stages

    @property
    def chunks(self) -> int:
        return self.stages // self.num_ranks

    @property
    def num_pipelines(self) -> int:
        return len(self.resolved_directions())

    @property
    def v_shaped(self) -> bool:
        """V-shaped placement: two chunks per rank, down then back up."""
        return self.directions in ("v", ("v",))

    @property
    def stashes(self) -> bool:
        """True when a backward reads its forward's version."""
        return self.versions != 1

    def inflight_bound(self, stage: int) -> int | None:
        for s, bound in self.max_inflight:
            if s == stage:
                return bound
        return None

    def resolved_directions(self) -> tuple[tuple[int, ...], ...]:
        """Stage -> rank map of every pipeline (all chunks)."""
        from schedc.directions import resolve_directions

        return resolve_directions(self.directions, self.stages, self.num_ranks)

    # ---- validation ------------------------------------------------------------
    def validate(self) -> Spec:
        _check_positive(self, "stages", "microbatches")
        r = self.num_ranks
        if r < 1:
            raise SpecError("ranks", f"must be at least 1, got {r}")
        if self.stages % r:
            raise SpecError("ranks", f"stages ({self.stages}) must be a multiple of ranks ({r})")
        if self.order not in ORDERS:
            raise SpecError("order", f"unknown order {self.order!r}; one of {', '.join(ORDERS)}")
        self._validate_directions()
        self._validate_order()
        self._validate_bounds()
        self._validate_versions()
        self._validate_corrections()
        return self

    def _validate_corrections(self) -> None:
        for name in ("lookahead", "error_feedback"):
            value = getattr(self, name)
            if isinstance(value, int | float) and not (0 <= value < float("inf")):
                raise SpecError(name, "must be a finite number >= 0")
        if self.lr_warmup_by_delay is not None and self.lr_warmup_by_delay < 1:
            raise SpecError("lr_warmup_by_delay", "must be at least 1 step")
        if self.dp_mode not in DP_MODES:
            raise SpecError("dp_mode", f"unknown mode {self.dp_mode!r}; one of "
                            f"{', '.join(DP_MODES)}")
        if not 0 < self.dp_fraction <= 1:
            raise SpecError("dp_fraction", "must be in (0, 1]")
        if self.dp_period < 1:
            raise SpecError("dp_period", "must be at least 1")
        if not 0 <= self.dp_beta < 1:
            raise SpecError("dp_beta", "must be in [0, 1)")
        if self.dp_max_lateness < 0:
            raise SpecError("dp_max_lateness", "must be at least 0")

    def _validate_directions(self) -> None:
        try:
            self.resolved_directions()
        except ValueError as exc:
            raise SpecError("directions", str(exc)) from None

    def _validate_order(self) -> None:
        if self.order == "zero-bubble" and not self.split_backward:
            raise SpecError("split_backward", "order zero-bubble needs split_backward on")
        if self.max_deferred_w is not None:
            if not isinstance(self.max_deferred_w, int) or self.max_deferred_w < 0:
                raise SpecError("max_deferred_w", "must be an integer at least 0, got "
                                f"{self.max_deferred_w!r}")
            if not self.split_backward:
                raise SpecError("max_deferred_w", "bounds deferred W passes: needs "
                                "split_backward on")
        if self.order == "interleaved":
            self._validate_interleaved()
        if self.v_shaped:
            if self.order != "zero-bubble" or not self.flush:
                raise SpecError("order", "direction v (V-shaped placement) runs order "
                                "zero-bubble, synchronous (flush on)")
        elif self.chunks > 1 and self.order not in ("fill-drain", "interleaved"):
            raise SpecError(
                "order", f"order {self.order} needs one stage per rank (stages == ranks)"
            )

    def _validate_interleaved(self) -> None:
        """Megatron's depth-first order, as written, covers this form only."""
        if self.chunks < 2:
            raise SpecError("order", "interleaved needs at least 2 chunks per rank "
                            "(stages = chunks x ranks)")
        if self.directions not in (("down",), "down"):
            raise SpecError("directions", "interleaved runs one pipeline, direction down")
        if not self.flush:
            raise SpecError("flush", "interleaved is synchronous (flush on)")
        if self.split_backward:
            raise SpecError("split_backward", "interleaved does not split the backward; "
                            "use order zero-bubble for I/W")
        if self.microbatches % self.num_ranks:
            raise SpecError("microbatches", f"interleaved needs a multiple of ranks "
                            f"({self.num_ranks}) micro-batches per step")

    def _validate_bounds(self) -> None:
        for s, bound in self.max_inflight:
            if not 0 <= s < self.stages:
                raise SpecError("max_inflight", f"stage {s} out of range 0..{self.stages - 1}")
            if bound < 1:
                raise SpecError("max_inflight", f"bound at stage {s} must be at least 1")
        for name in ("max_inconsistency", "max_delay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SpecError(name, "must be at least 0")
        if self.max_activations is not None and self.max_activations < 1:
            raise SpecError("max_activations", "must be at least 1")

    def _validate_versions(self) -> None:
        v = self.versions
        if not (v == "auto" or (isinstance(v, int) and v >= 1)):
            raise SpecError("versions", f"must be a positive integer or auto, got {v!r}")
        if self.fixed_delay is not None:
            if self.fixed_delay < 0:
                raise SpecError("fixed_delay", "must be at least 0")
            if self.flush and self.fixed_delay > 0:
                raise SpecError("fixed_delay", "a fixed delay needs flush off")
            if not self.stashes:
                raise SpecError("fixed_delay", "a fixed delay needs versions >= 2 or auto")
        if self.lookahead is not None:
            if self.flush:
                raise SpecError("lookahead", "look-ahead applies to asynchronous schedules only")
            if not (self.lookahead == "auto" or isinstance(self.lookahead, int | float)):
                raise SpecError("lookahead", "must be a number or auto")
        if self.flush and self.stashes and self.versions != "auto":
            raise SpecError("versions", "a synchronous (flush on) schedule keeps one version")

    # ---- data ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _LATER_FIELDS:  # unset, as in files written before they existed
            if data[name] is None:
                del data[name]
        data["max_inflight"] = [list(p) for p in self.max_inflight]
        if not isinstance(self.directions, str):
            data["directions"] = [d if isinstance(d, str) else list(d) for d in self.directions]
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Spec:
        known = {f.name for f in fields(Spec)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(sorted(unknown)[0], "unknown field")
        kwargs = dict(data)
        if "max_inflight" in kwargs:
            kwargs["max_inflight"] = tuple(tuple(p) for p in kwargs["max_inflight"])
        if "directions" in kwargs and not isinstance(kwargs["directions"], str):
            kwargs["directions"] = tuple(
                d if isinstance(d, str) else tuple(d) for d in kwargs["directions"]
            )
        return Spec(**kwargs)

    def hash(self) -> str:
        semantic = {k: v for k, v in self.to_dict().items() if k not in ("name", "preset")}
        blob = json.dumps(semantic, sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def with_(self, **changes: Any) -> Spec:
        return replace(self, **changes)


# Fields added after program files were first written: left out of to_dict (and
# so of the hash) while unset, so earlier files keep their spec_hash and load.
_LATER_FIELDS = ("max_deferred_w",)


def _check_positive(spec: Spec, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not isinstance(value, int) or value < 1:
            raise SpecError(name, f"must be a positive integer, got {value!r}")
