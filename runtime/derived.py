"""Tensors computed from the weights and saved for the backward: found at start-up.

A backward reads the weights active when it runs: every tensor autograd saves
that *is* a weight or a view of one is saved by reference (runtime/stage.py),
so under a schedule whose backward reads another version than its forward
(PACI, AMDP: the manifest's max_inconsistency > 0) the backward sees the
version the verifier proved. A tensor computed *from* the weights (weight
normalisation, a merged LoRA weight, a weight cast to another dtype) is not a
view: autograd would save its forward-time value, and the backward would mix
two versions. schedc refuses such a model at start-up, before any step, on
those schedules only (synchronous and stashing schedules read one version in
forward and backward, so a saved value is the right one).

Detection runs on the probe's forward (build.py, meta device): a
`TorchFunctionMode` follows which tensors derive from the micro-batch (the
stage's inputs and side inputs) and which from the weights alone, and a
saved-tensors pack hook looks at every tensor autograd saves. A saved tensor
that derives from the weights alone, or that an op computes internally from
weight arguments only, and that is not a weight or a view of one, is
weights-derived.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree


class _Follow(TorchFunctionMode):
    def __init__(self, params: list[torch.Tensor], data: list[torch.Tensor]) -> None:
        super().__init__()
        self.params = {id(p) for p in params}
        self.data = {id(t) for t in data}
        self.weighty: set[int] = set()
        self.keep: list[torch.Tensor] = list(data)  # ids stay unique while followed
        self.op: tuple[bool, bool, set[int], str] | None = None
        self.found: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        has_data = any(id(t) in self.data for t in tensors)
        has_weight = any(id(t) in self.params or id(t) in self.weighty for t in tensors)
        outer = self.op
        self.op = (has_data, has_weight, {id(t) for t in tensors},
                   getattr(func, "__name__", str(func)))
        try:
            out = func(*args, **kwargs)
        finally:
            self.op = outer
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.keep.append(t)
                if has_data:
                    self.data.add(id(t))
                elif has_weight:
                    self.weighty.add(id(t))
        return out

    def _is_weight(self, t: torch.Tensor) -> bool:
        base = t._base if t._base is not None else t
        return id(t) in self.params or id(base) in self.params

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.op is None or self.found or self._is_weight(t):
            return t
        has_data, has_weight, args, name = self.op
        internal = has_weight and not has_data and id(t) not in args
        if id(t) in self.weighty or (internal and t.is_floating_point()):
            shape = list(t.shape)
            self.found = f"{name} saves a {str(t.dtype).removeprefix('torch.')}{shape} tensor"
        return t


@contextmanager
def follow(module: nn.Module, data: list[torch.Tensor]) -> Iterator[_Follow]:
    """Run a stage's forward inside; `.found` then says what it saved, if anything."""
    mode = _Follow([p for p in module.parameters() if p.requires_grad], data)
    with mode, torch.autograd.graph.saved_tensors_hooks(mode.pack, lambda t: t):
        yield mode


def refusal(stage: int, found: str) -> str:
    return (f"stage {stage}: {found} computed from the stage's weights for its backward (weight "
            "normalisation, a merged LoRA weight, a cast weight): under this asynchronous "
            "schedule a backward reads newer weights than its forward, and such a tensor "
            "would keep the forward's version. Compute it from views of the parameters only, "
            "or use a synchronous or stashing schedule (docs/runtime.md, weights-derived "
            "tensors)")
