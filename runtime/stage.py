"""One stage replica's state: weight versions, gradients, optimizer state.

Weights live in flat fp32 buffers, one per version: `current` (the master
weights, updated in place by STEP), stash slots keyed by version, and a
look-ahead buffer. The module's parameters are views into whichever buffer is
*active*; SWAP re-points them (no bytes move).

The backward reads the active weights. Autograd normally saves the tensors a
backward needs when the forward runs and refuses to run if one was modified
in place since. Here every saved tensor that aliases a weight buffer is
saved *by reference* instead: a `saved_tensors_hooks` pack hook records its
view geometry (size, stride, offset) and the unpack hook rebuilds the view on
the buffer active when the backward runs. So:

- no-stash schedules (versions 1): B after a STEP reads the new weights, the
  intended semantics, instead of autograd's version-counter error;
- stash schedules: SWAP points at the stash slot before B, so B reads exactly
  the forward's version.

Where the programs never change a stage's weights between a forward and its
backward (synchronous programs: `wiring.weights_steady`), `by_reference` is off
and autograd saves as usual (no Python call per saved tensor).

Every weight buffer has the same layout, so a geometry taken on one buffer
is valid on any other. Tensors computed from the weights that are not views
of them (none in the built-in models) are saved by value, as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from . import hostread, weights
from .optim import FlatOptimizer, muon_split, pipemare_lr
from .weights import OptimConfig

CURRENT = "current"
LOOKAHEAD = "lookahead"


@dataclass(frozen=True)
class _WeightRef:
    """A saved tensor that is a view of the stage's weights, by geometry."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int


class VersionError(RuntimeError):
    """A compute op would read a weight version other than its instruction's."""


class StageReplica:
    """Stage `stage` of pipeline `pipeline` on one rank."""

    def __init__(self, module: nn.Module, stage: int, pipeline: int, optim: OptimConfig,
                 delay: int = 0, lookahead_alpha: float | None = None) -> None:
        """`delay`: the stage's delay (the manifest's max_delay), for PipeMare's
        warm-up; `lookahead_alpha`: replaces the programs' LOOKAHEAD alpha."""
        self.module = module
        self.stage = stage
        self.pipeline = pipeline
        self.optim = optim
        self.delay = delay
        self.lookahead_alpha = lookahead_alpha
        params = [p for p in module.parameters() if p.requires_grad]
        muon: list[nn.Parameter] = []
        if optim.name == "muon":  # flat layout [AdamW's | Muon's matrices]
            adamw, muon = muon_split(module, params)
            params = adamw + muon
        self.params = params
        self.current, self.offsets = weights.flatten_params(self.params)
        weights.repoint(self.params, self.current, self.offsets)
        self.version = 0  # updates applied to `current`
        self.stash: dict[int, torch.Tensor] = {}
        self._free: list[torch.Tensor] = []  # released stash buffers, reused
        self.lookahead: torch.Tensor | None = None
        self.lookahead_version: int | None = None
        self.active: str | int = CURRENT  # CURRENT, LOOKAHEAD, or a stash version
        self._acc = torch.zeros_like(self.current)  # read it as `acc` / `grad_sum()`
        k = len(params) - len(muon)
        self.optimizer = FlatOptimizer(
            optim, self.current, n_adamw=sum(p.numel() for p in params[:k]),
            muon_offsets=self.offsets[k:], muon_shapes=[p.shape for p in muon],
        )
        self.state = self.optimizer.state  # name -> flat fp32 buffer
        self._grad_pool: list[torch.Tensor] = []
        self._grad_views: dict[int, list[torch.Tensor]] = {}
        self._grad_bound: int | None = None
        self.pending: dict[int, torch.Tensor] = {}  # mb -> its weight gradient, until ACC
        self.direct_mbs: set[int] = set()  # mbs whose backward added into the accumulator
        # After a STEP the accumulator holds the old sum: the step's first ACC
        # overwrites it (no zeroing pass; see `accumulate`).
        self.acc_stale = False
        # NaN/Inf flags of the ACCs since the last STEP, on the device: slot k is
        # the k-th ACC; a flag equal to this step's tag (version + 1) means non-finite.
        self.nonfinite = torch.zeros(8, dtype=torch.int32, device=self.current.device)
        self.acc_mbs: list[int] = []  # micro-batches accumulated since the last STEP
        self._weight_ptrs = {self.current.untyped_storage().data_ptr()}
        self.weight_unpacks = 0  # saved weight views rebuilt by backwards (tests)
        # Save weights by reference (saved-tensor hooks): off where the programs never
        # change this stage's weights between a forward and its backward (wiring.py).
        self.by_reference = True

    # ---- versions ---------------------------------------------------------------
    @property
    def numel(self) -> int:
        return self.current.numel()

    def active_version(self) -> int:
        if self.active == CURRENT:
            return self.version
        if self.active == LOOKAHEAD:
            assert self.lookahead_version is not None
            return self.lookahead_version
        return int(self.active)

    def active_buffer(self) -> torch.Tensor:
        if self.active == CURRENT:
            return self.current
        if self.active == LOOKAHEAD:
            assert self.lookahead is not None
            return self.lookahead
        return self.stash[int(self.active)]

    def check_read(self, expected: int, lookahead: bool = False) -> int:
        """The version a compute op reads now; raise unless it is `expected`."""
        got = self.active_version()
        if got != expected or (self.active == LOOKAHEAD) != lookahead:
            kind = "look-ahead " if self.active == LOOKAHEAD else ""
            want = "look-ahead " if lookahead else ""
            raise VersionError(f"reads {kind}version {got}, instruction says {want}{expected}")
        return got

    def point_at(self, version: int, lookahead: bool = False) -> None:
        """SWAP: make the parameters views of the buffer holding `version`."""
        if lookahead:
            if self.lookahead_version != version:
                raise VersionError(
                    f"no look-ahead weights of version {version} "
                    f"(look-ahead buffer holds {self.lookahead_version})"
                )
            target: str | int = LOOKAHEAD
        elif version == self.version:
            target = CURRENT
        elif version in self.stash:
            target = version
        else:
            held = sorted(self.stash) + [self.version]
            raise VersionError(f"no weights of version {version} (held: {held})")
        if target != self.active:
            self.active = target
            weights.repoint(self.params, self.active_buffer(), self.offsets)

    def stash_current(self, version: int) -> None:
        """STASH: keep a copy of the current weights (at `version`)."""
        slot = self._stash_slot(version)
        weights.copy_(slot, self.current)
        self.stash[version] = slot

    def _stash_slot(self, version: int) -> torch.Tensor:
        """A free buffer to stash `version` in (filled by the caller)."""
        if version != self.version:
            raise VersionError(f"STASH of version {version}, current weights are {self.version}")
        if version in self.stash:
            raise VersionError(f"version {version} is already stashed")
        return self._free.pop() if self._free else self._new_buffer()

    def release(self, version: int) -> None:
        if version not in self.stash:
            raise VersionError(f"RELEASE of version {version}, not stashed ({sorted(self.stash)})")
        if self.active == version:
            self.point_at(self.version)
        self._free.append(self.stash.pop(version))

    def _new_buffer(self) -> torch.Tensor:
        buf = torch.empty_like(self.current)
        self._weight_ptrs.add(buf.untyped_storage().data_ptr())
        return buf

    # ---- saved tensors by reference ----------------------------------------------
    @contextmanager
    def weights_by_reference(self) -> Iterator[None]:
        """The forward's saved tensors, weights by reference (unless `by_reference` is
        off: the weights cannot change between this stage's forwards and backwards,
        and autograd's own saving is the same, without a Python call per tensor)."""
        if not self.by_reference:
            yield
            return
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield

    def _pack(self, t: torch.Tensor) -> object:
        if t.numel() and t.untyped_storage().data_ptr() in self._weight_ptrs:
            return _WeightRef(tuple(t.size()), tuple(t.stride()), t.storage_offset())
        # Detached: a node that saves its own output would otherwise hold, through
        # the packed tensor's grad_fn, a reference to itself, a cycle in C++ that
        # only running the node with the graph freed breaks. A split backward (I
        # with the graph kept, W on the weight side only) never runs I's nodes
        # again, so every micro-batch's graph would leak.
        return t.detach()

    def _unpack(self, saved: object) -> torch.Tensor:
        if isinstance(saved, _WeightRef):
            self.weight_unpacks += 1
            return self.active_buffer().as_strided(saved.size, saved.stride, saved.offset)
        assert isinstance(saved, torch.Tensor)
        return saved

    # ---- gradients ----------------------------------------------------------------
    def bind_grad(self, mb: int, direct: bool = False) -> None:
        """Point every parameter's .grad at a zeroed flat buffer owned by mb.

        Autograd then accumulates the backward's weight gradient into it in
        place, so the whole gradient is one flat buffer for ACC. `direct`
        (`direct_accumulation`: mb's ACC is the next compute on this rank): at
        the accumulator itself, so the backward's own in-place add is the ACC.
        """
        if direct:
            if mb in self.pending:
                raise VersionError(f"micro-batch {mb} has a gradient buffer already")
            buf = self.grad_sum()  # zeroed if it holds the last step's sum
            self.direct_mbs.add(mb)
        elif mb in self.pending:
            buf = self.pending[mb]
        else:
            buf = self._grad_pool.pop() if self._grad_pool else torch.zeros_like(self.current)
            self.pending[mb] = buf
        key = buf.untyped_storage().data_ptr()
        if self._grad_bound == key:
            return
        views = self._grad_views.get(key)
        if views is None:
            pairs = zip(self.params, self.offsets, strict=True)
            views = [buf[o : o + p.numel()].view(p.shape) for p, o in pairs]
            self._grad_views[key] = views
        for p, g in zip(self.params, views, strict=True):
            p.grad = g
        self._grad_bound = key

    def accumulate(self, mb: int) -> None:
        """ACC: acc += grad(mb) in one launch, zeroing grad(mb) in the same pass for
        reuse and flagging a NaN/Inf in it on the device (read once per STEP, by
        `nonfinite_mbs`). The first ACC after a STEP writes acc = 0 + grad(mb)."""
        direct = mb in self.direct_mbs
        buf = self.pending.pop(mb, None)
        if buf is None and not direct:
            raise VersionError(f"ACC of micro-batch {mb}: no weight gradient computed for it")
        slot = len(self.acc_mbs)
        if slot == self.nonfinite.numel():  # more ACCs per step than slots: grow
            grown = torch.zeros(2 * slot, dtype=torch.int32, device=self.nonfinite.device)
            grown[:slot].copy_(self.nonfinite)
            self.nonfinite = grown
        tag = self.version + 1
        if direct:  # the backward added into the accumulator: only the check is left
            self.direct_mbs.discard(mb)
            if not weights.all_finite(self._acc):
                self.nonfinite[slot] = tag
        else:
            weights.accumulate(self._acc, buf, zero_source=True, overwrite=self.acc_stale,
                               flag=(self.nonfinite, slot, tag))
            self.acc_stale = False
            self._grad_pool.append(buf)
        self.acc_mbs.append(mb)

    def direct_accumulation(self) -> bool:
        """Whether a backward whose ACC comes next may add into the accumulator
        itself (`bind_grad(direct=True)`): where the accumulator is a host buffer
        that the plain-torch path updates (reading its finiteness costs no device
        sync). The ACC then checks the accumulator (`weights.all_finite`), which
        holds a NaN or Inf exactly when an accumulated gradient did (or an
        element of the sum overflowed). Bit for bit the same sum: autograd adds
        into `.grad` in place, acc + g, where the ACC kernel adds acc + (0 + g),
        equal for every g (acc is never -0)."""
        return weights.host_accumulation(self._acc)

    def poison_gradient(self, mb: int) -> None:
        """Fault injection (`nan-grad@S:MB`): make mb's gradient, before its ACC, NaN."""
        buf = self.pending.get(mb)
        if buf is None and mb in self.direct_mbs:
            buf = self._acc
        if buf is not None and buf.numel():
            buf[:1] = float("nan")

    def grad_sum(self) -> torch.Tensor:
        """The accumulator as a value (ALLREDUCE, STEP, anyone writing it directly):
        zeroed first if it still holds the last step's sum (no ACC since a STEP)."""
        if self.acc_stale:
            self._acc.zero_()
            self.acc_stale = False
        return self._acc

    @property
    def acc(self) -> torch.Tensor:
        """The flat fp32 gradient accumulator (`grad_sum()`: never the stale sum)."""
        return self.grad_sum()

    def nonfinite_flags(self) -> torch.Tensor:
        """The device flags of the ACCs since the last STEP (unread; empty if none)."""
        k = len(self.acc_mbs) if self.numel else 0
        return self.nonfinite[:k]

    def nonfinite_of(self, flags: list[float]) -> list[int]:
        """Micro-batches accumulated since the last STEP whose gradient held a NaN or
        Inf, from the values of `nonfinite_flags()` (read by the caller: `faults.Poison`
        reads them with the losses' finiteness, the step's one host sync)."""
        tag = self.version + 1
        return [mb for mb, f in zip(self.acc_mbs, flags, strict=False) if f >= tag]

    def nonfinite_mbs(self) -> list[int]:
        """`nonfinite_of` the flags, read now (one host sync)."""
        flags = self.nonfinite_flags()
        return self.nonfinite_of(hostread.read([flags])[0]) if flags.numel() else []

    def clear_accumulated(self) -> None:
        """A STEP (run or skipped) consumed the accumulator: the next ACC overwrites it."""
        self.acc_mbs.clear()
        self.acc_stale = True

    # ---- optimizer ------------------------------------------------------------------
    def step(self, version: int, count: int, lookahead_alpha: float | None = None,
             stash: int | None = None) -> None:
        """STEP: current <- update(current, acc / count); the version becomes `version`.

        One fused launch: the division by `count` happens inside the kernel, a
        STASH of the current weights right before (`stash`: its version) is
        written by the same pass, and the accumulator is left for the next ACC
        to overwrite.
        """
        if version != self.version + 1:
            raise VersionError(f"STEP to version {version}, current weights are {self.version}")
        grad = self.grad_sum()
        stash_out = None
        if stash is not None:
            stash_out = self._stash_slot(stash)
        la_out = None
        if lookahead_alpha is not None:
            if self.lookahead is None:
                self.lookahead = self._new_buffer()
            la_out = self.lookahead
        if lookahead_alpha is not None and self.lookahead_alpha is not None:
            lookahead_alpha = self.lookahead_alpha  # --lookahead overrides the programs'
        lr = pipemare_lr(self.optim.lr, self.delay, version - 1, self.optim.lr_warmup_by_delay)
        with torch.no_grad():
            self.optimizer.step(self.current, grad, version, lr=lr, lookahead_out=la_out,
                                lookahead_alpha=lookahead_alpha or 0.0, grad_div=count,
                                stash_out=stash_out)
        if stash is not None:
            self.stash[stash] = stash_out
        self.clear_accumulated()
        self.version = version
        if lookahead_alpha is not None:
            self.lookahead_version = version
        self.point_at(version)  # after a STEP the current weights are active

    def skip_step(self, version: int) -> None:
        """A skipped STEP (--on-nan skip): zero the accumulator, keep weights and
        optimizer state, advance the version (later version checks expect it)."""
        if version != self.version + 1:
            raise VersionError(f"STEP to version {version}, current weights are {self.version}")
        self.clear_accumulated()
        self.version = version
        self.point_at(version)

    # ---- checkpoint ------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "current": self.current.cpu().clone(),
            "state": {k: v.cpu().clone() for k, v in self.state.items()},
            "stash": {v: b.cpu().clone() for v, b in self.stash.items()},
            "lookahead": None if self.lookahead is None else self.lookahead.cpu().clone(),
            "lookahead_version": self.lookahead_version,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.version = int(sd["version"])
        self.current.copy_(sd["current"])
        for k, v in sd["state"].items():
            self.state[k].copy_(v)
        for v, b in sd["stash"].items():
            slot = self._new_buffer()
            slot.copy_(b)
            self.stash[int(v)] = slot
        if sd["lookahead"] is not None:
            self.lookahead = self._new_buffer()
            self.lookahead.copy_(sd["lookahead"])
            self.lookahead_version = sd["lookahead_version"]
        self.active = CURRENT
        weights.repoint(self.params, self.current, self.offsets)
