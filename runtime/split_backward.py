"""The zero-bubble split of a backward pass into I and W, without recomputation.

`backward_input` (I) computes the gradient of the stage input and, on the way,
keeps what the weight gradient needs: the output gradients of the autograd
nodes where a weight's branch joins the input's path (a linear layer's
`AddmmBackward`, a norm's `NativeLayerNormBackward`, ...). `backward_weight`
(W) starts from exactly those nodes with the kept gradients, so it runs only
the weight side of the graph: I + W does the work of one B.

Each weight's gradient is computed by the same node function, from the same
inputs, as in a full backward, and lands in `.grad` by the same in-place add,
so a split backward is bit for bit a B. The idea and the graph walk follow
`torch.distributed.pipelining._backward` (`stage_backward_input` /
`stage_backward_weight`); the runtime keeps its own copy because that module
is private and writes `.grad` differently.

One refinement over that walk: a join node whose weights are all its own
next nodes and vectors (a norm's scale and shift, a bias added alone) computes
their gradients from the work it does for the input gradient anyway (a
reduction over rows), and a second run of the node in W would redo that work
(a layer norm's backward twice). I therefore lets such a node compute its
weight gradients too, keeps them, and W adds them into `.grad` (the add
`AccumulateGrad` does): the node runs once, as in B. A weight that is a
matrix or reached through other nodes (a linear layer's) stays in W, so the
matrix products of W still run in W.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.autograd.graph import GradientEdge, Node

__all__ = ["WeightWork", "backward_input", "backward_weight"]


@dataclass
class _Group:
    params: list[Node]  # AccumulateGrad nodes of the group's weights
    nodes: list[Node]  # where the group's weight branches join the input's path
    grads: list[tuple[torch.Tensor | None, ...] | None] = field(default_factory=list)
    in_i: bool = False  # vector weights of the join node itself: computed by I


@dataclass
class WeightWork:
    """What I kept for W: the weight groups and the gradients at their join nodes,
    and the gradients I computed of the groups marked `in_i`."""

    groups: list[_Group]
    params: dict[Node, torch.Tensor]  # AccumulateGrad node -> its parameter
    done: dict[Node, torch.Tensor] = field(default_factory=dict)  # in_i's, by weight


def _grad_node(t: torch.Tensor) -> Node | None:
    """A tensor's grad_fn, or a leaf's AccumulateGrad node (made through a view)."""
    if t.grad_fn is not None:
        return t.grad_fn
    if not t.requires_grad:
        return None
    return t.view_as(t).grad_fn.next_functions[0][0]


def _walk(root: Node, target: Node | None) -> tuple[list[Node], dict[Node, list[Node]],
                                                    set[Node]]:
    """One depth-first pass over the graph below `root`: (its nodes, each before
    the nodes it feeds gradient to; node -> those next nodes; the input path:
    the nodes from which `target` is reached)."""
    order: list[Node] = []
    nexts: dict[Node, list[Node]] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in nexts:
            continue
        nexts[node] = [n for n, _ in node.next_functions if n is not None]
        stack.append((node, True))
        stack.extend((n, False) for n in nexts[node] if n not in nexts)
    on_path: set[Node] = set()
    for node in order:  # post-order: a node's next nodes are decided before it
        if node is target or any(n in on_path for n in nexts[node]):
            on_path.add(node)
    order.reverse()  # from the root down
    return order, nexts, on_path


def _groups(out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor]
            ) -> tuple[list[_Group], dict[Node, torch.Tensor]]:
    """The weight groups of a stage: a join node is an input-path node with a
    next node off the path from which weights are reached; weights reached from
    a common join node (or sharing one) form one group."""
    order, nexts, on_path = _walk(_grad_node(out), _grad_node(x))
    rank = {id(p): i for i, p in enumerate(params)}
    acc_nodes = {}  # the weights' AccumulateGrad nodes met, in the stage's order
    for node in order:
        v = getattr(node, "variable", None)  # an AccumulateGrad node's leaf
        if v is not None and id(v) in rank:
            acc_nodes[node] = v
    acc_nodes = dict(sorted(acc_nodes.items(), key=lambda kv: rank[id(kv[1])]))
    by_acc: dict[Node, _Group] = {}
    groups: list[_Group] = []
    for node in order:
        if node not in on_path:
            continue
        off = [n for n in nexts[node] if n not in on_path]
        reached = _reached(off, nexts, acc_nodes) if off else []
        if not reached:
            continue
        group = _Group([], [node])
        for other in {id(by_acc[a]): by_acc[a] for a in reached if a in by_acc}.values():
            group.params += [a for a in other.params if a not in group.params]
            group.nodes = other.nodes + [n for n in group.nodes if n not in other.nodes]
            groups.remove(other)
        group.params += [a for a in reached if a not in group.params]
        for a in group.params:
            by_acc[a] = group
        groups.append(group)
    for g in groups:  # parameters in the stage's order
        g.params.sort(key=lambda a: rank[id(acc_nodes[a])])
        g.in_i = len(g.nodes) == 1 and _own_vectors(g, nexts, acc_nodes)
    return groups, {a: acc_nodes[a] for g in groups for a in g.params}


def _own_vectors(g: _Group, nexts: dict[Node, list[Node]],
                 acc_nodes: dict[Node, torch.Tensor]) -> bool:
    """Whether every weight of the group is a vector fed by the join node itself
    (every off-path next node of it is such a weight's AccumulateGrad)."""
    own = set(nexts[g.nodes[0]])
    return all(a in own and acc_nodes[a].dim() <= 1 for a in g.params)


def _reached(starts: list[Node], nexts: dict[Node, list[Node]],
             acc_nodes: dict[Node, torch.Tensor]) -> list[Node]:
    """The weights' AccumulateGrad nodes reached from `starts` (all off the input path)."""
    seen, stack, found = set(starts), list(starts), []
    while stack:
        node = stack.pop()
        if node in acc_nodes:
            found.append(node)
        for n in nexts.get(node, ()):
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return found


def backward_input(out: torch.Tensor, grad: torch.Tensor | None, x: torch.Tensor,
                   params: list[torch.Tensor]) -> WeightWork:
    """I: x.grad = d out / d x (seeded with `grad`, None at the loss); returns what
    W needs. The graph is kept (only W's part of it stays referenced)."""
    groups, acc_nodes = _groups(out, x, params)
    work = WeightWork(groups, acc_nodes)
    handles, own = [], []
    for g in groups:
        if g.in_i:  # the weight gradient stops at its AccumulateGrad: kept, not added
            for a in g.params:
                def take(grad_outputs, a=a):
                    work.done[a] = grad_outputs[0]
                    return (None,)
                handles.append(a.register_prehook(take))
                own.append(acc_nodes[a])
            continue
        g.grads = [None] * len(g.nodes)
        for i, node in enumerate(g.nodes):
            def keep(grad_outputs, g=g, i=i):
                g.grads[i] = tuple(grad_outputs)
            handles.append(node.register_prehook(keep))
    try:
        torch.autograd.backward(out, grad, inputs=[x, *own], retain_graph=True)
    finally:
        for h in handles:
            h.remove()
    return work


def backward_weight(work: WeightWork) -> None:
    """W: every weight's .grad += its gradient, from the nodes I kept."""
    for a, grad in work.done.items():  # computed by I: the add AccumulateGrad does
        p = work.params[a]
        if p.grad is None:
            p.grad = grad
        else:
            p.grad.add_(grad)
    work.done = {}
    for g in work.groups:
        if g.in_i:
            continue
        edges, seeds = [], []
        for node, grads in zip(g.nodes, g.grads, strict=True):
            for i, t in enumerate(grads or ()):
                if t is not None:
                    edges.append(GradientEdge(node, i))
                    seeds.append(t)
        if not edges:
            continue
        handles = []
        if len(g.nodes) > 1:
            # A join node downstream of another would receive gradient twice: pin
            # every join node's incoming gradient to what I saw there.
            for node, grads in zip(g.nodes, g.grads, strict=True):
                handles.append(node.register_prehook(lambda _, kept=grads: kept))
        try:
            _accumulate(edges, seeds, [work.params[a] for a in g.params])
        finally:
            for h in handles:
                h.remove()
        g.grads = []


def _accumulate(edges: list[GradientEdge], seeds: list[torch.Tensor],
                weights: list[torch.Tensor]) -> None:
    """`torch.autograd.backward(edges, seeds, inputs=weights)`: AccumulateGrad adds
    each weight's gradient into its `.grad` in place, as in a B (the same add).
    The engine is called as `backward` calls it, without `backward`'s checks of
    the seeds against the edges: they are the gradients autograd itself passed
    at those edges during I, and the checks cost more than a small W's work."""
    run = getattr(torch.autograd.graph, "_engine_run_backward", None)
    if run is None:  # another torch: the public call (same result)
        torch.autograd.backward(edges, seeds, inputs=weights)
        return
    run(tuple(edges), tuple(seeds), False, False, tuple(weights),
        allow_unreachable=True, accumulate_grad=True)
