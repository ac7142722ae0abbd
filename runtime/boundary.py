"""What crosses a stage boundary, and how a stage is called.

A stage's input (stage 0: the data's `inputs`; stage s > 0: stage s - 1's
output) and output are a tensor, or a tuple / list / dict of tensors (nested
is fine). The module is called as

    module(x, **side)        x a tensor
    module(*x, **side)       x a tuple or list
    module(**x, **side)      x a dict

where `side` are the micro-batch's side inputs (an attention mask, position
ids): every stage reads them from its own copy of the data, so they never
travel down the pipeline.

Each boundary is agreed once at start-up (`build.probe`): its structure, every
leaf's shape and dtype, and whether the leaf needs a gradient (the sending
stage's output requires grad). Leaves that need none (masks, integer ids)
travel forward only. On the wire a boundary is one message each way: a single
tensor as itself; several packed into one uint8 buffer, each leaf's bytes at
an 8-byte aligned offset. The gradient message carries the gradients of the
leaves that need one, in leaf order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .transport import BoundarySpec

Tree = object  # a tensor, or a tuple / list / dict of trees
_ALIGN = 8


@dataclass(frozen=True)
class Leaf:
    shape: tuple[int, ...]
    dtype: torch.dtype
    grad: bool  # travels back with a gradient

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n

    def __str__(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')}{list(self.shape)}"


def leaves_of(tree: Tree) -> list:
    return pytree.tree_flatten(tree)[0]


def describe(tree: Tree) -> str:
    """`float32[2, 16, 32]`, or `(float32[2, 16, 32], bool[2, 16])` for several."""
    parts = [str(Leaf(tuple(t.shape), t.dtype, False)) if isinstance(t, torch.Tensor)
             else type(t).__name__ for t in leaves_of(tree)]
    return parts[0] if isinstance(tree, torch.Tensor) else "(" + ", ".join(parts) + ")"


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], tree: Tree) -> Tree:
    return pytree.tree_map(lambda t: fn(t) if isinstance(t, torch.Tensor) else t, tree)


def call_stage(module: nn.Module, x: Tree, side: dict | None) -> Tree:
    side = side or {}
    if isinstance(x, torch.Tensor):
        return module(x, **side)
    if isinstance(x, (tuple, list)):
        return module(*x, **side)
    if isinstance(x, dict):
        return module(**x, **side)
    raise TypeError(f"a stage input must be a tensor, tuple, list or dict, not "
                    f"{type(x).__name__}")


class Boundary:
    """The agreed form of boundary s (stage s -> s + 1)."""

    def __init__(self, tree: pytree.TreeSpec, leaves: tuple[Leaf, ...]) -> None:
        self.tree = tree
        self.leaves = leaves
        self.grad_leaves = tuple(leaf for leaf in leaves if leaf.grad)

    @classmethod
    def of(cls, out: Tree, stage: int) -> Boundary:
        """The boundary after `stage`, from its (probe) output."""
        flat, tree = pytree.tree_flatten(out)
        bad = [type(t).__name__ for t in flat if not isinstance(t, torch.Tensor)]
        if bad or not flat:
            raise ValueError(f"stage {stage} returns {describe(out)}: a stage's output must "
                             "be a tensor or a tuple / list / dict of tensors")
        leaves = tuple(Leaf(tuple(t.shape), t.dtype, bool(t.requires_grad)) for t in flat)
        if not any(leaf.grad for leaf in leaves):
            raise ValueError(f"stage {stage}'s output {describe(out)} needs no gradient (it "
                             "depends on no weight): nothing for the backward to send back")
        return cls(tree, leaves)

    def __repr__(self) -> str:  # what the ranks agree on
        return f"Boundary({self.tree}, {self.leaves})"

    def __str__(self) -> str:
        return describe(pytree.tree_unflatten(
            [torch.empty(leaf.shape, dtype=leaf.dtype, device="meta") for leaf in self.leaves],
            self.tree))

    # ---- the wire ----------------------------------------------------------------
    def act_spec(self) -> BoundarySpec:
        return _spec(self.leaves)

    def grad_spec(self) -> BoundarySpec:
        return _spec(self.grad_leaves)

    def pack_act(self, value: Tree) -> torch.Tensor:
        return _pack(leaves_of(value), self.leaves)

    def unpack_act(self, t: torch.Tensor) -> Tree:
        return pytree.tree_unflatten(_unpack(t, self.leaves), self.tree)

    def pack_grad(self, grads: list[torch.Tensor]) -> torch.Tensor:
        return _pack(grads, self.grad_leaves)

    def unpack_grad(self, t: torch.Tensor) -> list[torch.Tensor]:
        return _unpack(t, self.grad_leaves)

    # ---- the stage's side --------------------------------------------------------
    def as_input(self, value: Tree) -> Tree:
        """A received (or handed-over) value as the next stage's input: leaves
        that carry a gradient become leaves that require one."""
        flat = leaves_of(value)
        out = [t.requires_grad_(True) if leaf.grad else t
               for t, leaf in zip(flat, self.leaves, strict=True)]
        return pytree.tree_unflatten(out, self.tree)

    def grad_inputs(self, value: Tree) -> list[torch.Tensor]:
        """The input leaves whose gradient goes back (stage s + 1's side)."""
        return [t for t, leaf in zip(leaves_of(value), self.leaves, strict=True) if leaf.grad]

    def roots(self, out: Tree) -> list[torch.Tensor]:
        """The output leaves a backward starts from (stage s's side)."""
        return [t for t, leaf in zip(leaves_of(out), self.leaves, strict=True) if leaf.grad]


def _spec(leaves: tuple[Leaf, ...]) -> BoundarySpec:
    if len(leaves) == 1:
        return leaves[0].shape, leaves[0].dtype
    return (sum(_padded(leaf.nbytes) for leaf in leaves),), torch.uint8


def _padded(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _pack(tensors: list[torch.Tensor], leaves: tuple[Leaf, ...]) -> torch.Tensor:
    if len(leaves) == 1:
        return tensors[0]
    device = tensors[0].device
    buf = torch.zeros(sum(_padded(leaf.nbytes) for leaf in leaves), dtype=torch.uint8,
                      device=device)
    pos = 0
    for t, leaf in zip(tensors, leaves, strict=True):
        if tuple(t.shape) != leaf.shape or t.dtype != leaf.dtype:
            raise RuntimeError(f"message part {Leaf(tuple(t.shape), t.dtype, False)}, "
                               f"agreed {leaf} at start-up")
        if leaf.nbytes:
            buf[pos : pos + leaf.nbytes] = t.detach().contiguous().reshape(-1).view(torch.uint8)
        pos += _padded(leaf.nbytes)
    return buf


def _unpack(buf: torch.Tensor, leaves: tuple[Leaf, ...]) -> list[torch.Tensor]:
    if len(leaves) == 1:
        return [buf]
    out, pos = [], 0
    for leaf in leaves:
        part = buf[pos : pos + leaf.nbytes].clone()  # aligned, owns its memory
        out.append(part.view(leaf.dtype).reshape(leaf.shape))
        pos += _padded(leaf.nbytes)
    return out


class StageIO:
    """Every boundary of a run, as the interpreter uses them."""

    def __init__(self, boundaries: dict[int, Boundary], last: int, side: bool = False) -> None:
        self.boundaries = boundaries
        self.last = last
        self.side = side  # the data has side inputs: every stage reads its micro-batch

    def input(self, stage: int, value: Tree) -> Tree:
        return self.boundaries[stage - 1].as_input(value)

    def grad_inputs(self, stage: int, x: Tree) -> list[torch.Tensor]:
        """Leaves of stage `stage`'s input a backward computes gradients of."""
        return [] if stage == 0 else self.boundaries[stage - 1].grad_inputs(x)

    def roots(self, stage: int, out: Tree, grad: list[torch.Tensor] | None
              ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """(tensors, their gradients) a backward of `stage` starts from; the
        loss (gradient 1) at the last stage."""
        if stage == self.last:
            return [out], None
        return self.boundaries[stage].roots(out), grad

    def input_grads(self, stage: int, x: Tree) -> list[torch.Tensor]:
        """The gradient message of stage `stage` to stage - 1 (after a backward)."""
        xs = self.grad_inputs(stage, x)
        if len(xs) == 1 and xs[0].grad is None:
            raise RuntimeError("the stage's output does not depend on its input")
        return [t.grad if t.grad is not None else torch.zeros_like(t) for t in xs]


def detach(tree: Tree) -> Tree:
    return map_tensors(lambda t: t.detach(), tree)


def to_device(tree: Tree, device: torch.device) -> Tree:
    return map_tensors(lambda t: t.to(device), tree)


class Wire:
    """A transport that moves trees: each send packed into one tensor, each
    receive unpacked (the wrapped transport moves single tensors)."""

    def __init__(self, inner, boundaries: dict[int, Boundary]) -> None:
        self.inner = inner
        self.boundaries = boundaries

    def __getattr__(self, name: str):  # allreduce, agree, drain, ...: the inner's
        return getattr(self.inner, name)

    def _boundary(self, ins) -> tuple[Boundary, bool]:
        from .transport import boundary_of

        return self.boundaries[boundary_of(ins)], ins.op.endswith("GRAD")

    def _convert(self, batch: list, tensors: list, how: str) -> list:
        """Each message's tensor through its boundary's `how` ("pack" or
        "unpack") of an activation or a gradient; None stays None."""
        out = []
        for ins, t in zip(batch, tensors, strict=True):
            if t is not None:
                b, grad = self._boundary(ins)
                t = getattr(b, f"{how}_{'grad' if grad else 'act'}")(t)
            out.append(t)
        return out

    def post(self, batch: list, tensors: list) -> tuple:
        return self.inner.post(batch, self._convert(batch, tensors, "pack")), batch

    def wait(self, handle: tuple) -> list | None:
        inner, batch = handle
        got = self.inner.wait(inner)
        return None if got is None else self._convert(batch, got, "unpack")

    def pending(self, handle: tuple) -> int:
        fn = getattr(self.inner, "pending", None)
        return fn(handle[0]) if fn else 0
