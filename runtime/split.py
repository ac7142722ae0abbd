"""Splitting a whole model into stages: `build_stage` functions for the runtime.

    build_stage = split_layers(layers)                     # balanced by parameter count
    build_stage = split_layers(layers, cuts=[3, 6, 9])     # stage s starts at layer cuts[s-1]
    build_stage = split_traced(model, (x,), ["layers.4"])  # PyTorch's tracer, SplitPoints

`split_layers` takes a list of layers or an `nn.Sequential`. Between two
layers (and two stages) flows a tensor or a tuple / list / dict of tensors; a
layer is called as the runtime calls a stage (runtime/boundary.py), with the
micro-batch's side inputs as keywords when there are any.

`split_traced` is for models that are not a sequence of layers: it hands the
model to `torch.distributed.pipelining.pipeline` with a `SplitPoint.BEGINNING`
at each named submodule, and stage s is PyTorch's traced submodule s.

Each call of a `build_stage` returns a deep copy of the stage's layers, so
every stage replica (several pipelines in one process, say) owns its weights.
The layers must be built identically on every rank (seed torch before building
them, as an SPMD script under torchrun does).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from torch import nn

from schedc.errors import UserError

from .boundary import call_stage

__all__ = ["SplitError", "balanced_cuts", "split_layers", "split_traced"]

BuildStage = Callable[[int, int], nn.Module]


class SplitError(UserError):
    """The model cannot be split as asked."""


class Chain(nn.Module):
    """Layers run in order; each layer's output is the next one's input."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, *args: object, **side: object) -> object:
        x = args[0] if len(args) == 1 else args
        for layer in self.layers:
            x = call_stage(layer, x, side or None)
        return x


def balanced_cuts(sizes: Sequence[int], num_stages: int) -> list[int]:
    """Cut points (first layer of stages 1..n-1) minimising the largest stage's
    parameter count (ties: the earliest cuts), each stage at least one layer."""
    n, k = len(sizes), num_stages
    if k > n:
        raise SplitError(f"cannot split {n} layers into {k} stages: each stage needs a layer")
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    inf = float("inf")
    # best[j][i]: the smallest max-stage size splitting layers[:i] into j stages.
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0
    for j in range(1, k + 1):
        for i in range(j, n - (k - j) + 1):
            for c in range(j - 1, i):
                cost = max(best[j - 1][c], prefix[i] - prefix[c])
                if cost < best[j][i]:
                    best[j][i], cut[j][i] = cost, c
    cuts, i = [], n
    for j in range(k, 1, -1):
        i = cut[j][i]
        cuts.append(i)
    return sorted(cuts)


def _check_cuts(cuts: Sequence[int], n_layers: int, num_stages: int) -> list[int]:
    cuts = list(cuts)
    if len(cuts) != num_stages - 1:
        raise SplitError(f"{len(cuts)} cut points give {len(cuts) + 1} stages, the programs "
                         f"have {num_stages}")
    if any(not 0 < c < n_layers for c in cuts) or cuts != sorted(set(cuts)):
        raise SplitError(f"cut points {cuts}: increasing layer indices in 1..{n_layers - 1}")
    return cuts


def split_layers(layers: Sequence[nn.Module] | nn.Sequential,
                 cuts: Sequence[int] | None = None) -> BuildStage:
    """`build_stage(s, n)` over `layers`: stage s holds layers [cut s-1, cut s)."""
    layers = list(layers)
    if not layers or not all(isinstance(m, nn.Module) for m in layers):
        raise SplitError("split_layers needs a non-empty list of nn.Module layers "
                         "(or an nn.Sequential)")
    sizes = [sum(p.numel() for p in m.parameters()) for m in layers]

    def build_stage(stage: int, num_stages: int) -> nn.Module:
        bounds = balanced_cuts(sizes, num_stages) if cuts is None else \
            _check_cuts(cuts, len(layers), num_stages)
        edges = [0, *bounds, len(layers)]
        return Chain(copy.deepcopy(layers[edges[stage] : edges[stage + 1]]))

    build_stage.__qualname__ = f"split_layers[{len(layers)} layers]"
    return build_stage


def split_traced(model: nn.Module, example_args: tuple, split_points: Sequence[str],
                 example_kwargs: dict | None = None) -> BuildStage:
    """`build_stage(s, n)` from `torch.distributed.pipelining.pipeline`: the
    model is traced once (torch.export) on one micro-batch's example inputs and
    cut before each submodule named in `split_points` (n = len + 1 stages).

    PyTorch's split may feed a later stage values of earlier ones (the model's
    input to a residual two stages on, say); here every such value is carried
    down the pipeline: stage s returns the tuple of values later stages read
    (those that need no gradient travel forward only)."""
    traced: dict[str, object] = {}

    def pipe() -> object:
        if "pipe" not in traced:
            from torch.distributed.pipelining import SplitPoint, pipeline

            spec = {name: SplitPoint.BEGINNING for name in split_points}
            try:
                traced["pipe"] = pipeline(model, mb_args=tuple(example_args),
                                          mb_kwargs=example_kwargs, split_spec=spec)
            except Exception as exc:  # noqa: BLE001 - PyTorch's tracer, whatever it raises
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                raise SplitError(f"torch.distributed.pipelining.pipeline cannot split the "
                                 f"model at {list(split_points)}: {type(exc).__name__}: "
                                 f"{first}") from None
        return traced["pipe"]

    def build_stage(stage: int, num_stages: int) -> nn.Module:
        p = pipe()
        if p.num_stages != num_stages:
            raise SplitError(f"{len(split_points)} split points give {p.num_stages} stages, "
                             f"the programs have {num_stages}")
        return _TracedStage(p.split_gm, stage, num_stages)

    build_stage.__qualname__ = f"split_traced[{type(model).__name__}]"
    return build_stage


class _TracedStage(nn.Module):
    """Stage s of a traced split: runs its part of the top-level graph on the
    values carried in, returns the values carried on (or, last, the output)."""

    def __init__(self, gm: nn.Module, stage: int, num_stages: int) -> None:
        super().__init__()
        nodes = list(gm.graph.nodes)
        where: dict[object, int] = {}  # node -> stage that makes it (-1: an input)
        calls = 0
        for node in nodes:
            if node.op == "placeholder":
                where[node] = -1
            elif node.op == "call_module":
                where[node] = calls
                calls += 1
            elif node.op == "call_function":  # getitem of a stage's tuple output
                where[node] = max(where[a] for a in node.all_input_nodes)
        self.output = next(n for n in nodes if n.op == "output")

        def live_after(s: int) -> list:
            last = num_stages
            return [n for n in nodes if n in where and where[n] <= s and any(
                where.get(u, last) > s for u in n.users)]

        self.stage, self.last = stage, stage == num_stages - 1
        self.inputs = [n for n in nodes if n.op == "placeholder"] if stage == 0 \
            else live_after(stage - 1)
        self.mine = [n for n in nodes if where.get(n) == stage]
        self.carried = None if self.last else live_after(stage)
        name = next(n.target for n in self.mine if n.op == "call_module")
        self.name = name
        self.add_module(name, copy.deepcopy(gm.get_submodule(name)))

    def forward(self, *args: object) -> object:
        from torch.fx.node import map_arg

        env = dict(zip(self.inputs, args, strict=True))
        for node in self.mine:
            a = map_arg(node.args, env.__getitem__)
            kw = map_arg(node.kwargs, env.__getitem__)
            fn = getattr(self, node.target) if node.op == "call_module" else node.target
            env[node] = fn(*a, **kw)
        if self.last:  # the model's output (PyTorch's split wraps one value in a tuple)
            out = map_arg(self.output.args[0], env.__getitem__)
            return out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
        out = tuple(env[n] for n in self.carried)
        return out[0] if len(out) == 1 else out
