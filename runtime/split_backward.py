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
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

import torch
from torch.autograd.graph import GradientEdge, Node

__all__ = ["WeightWork", "backward_input", "backward_weight"]


@dataclass
class _Group:
    params: list[Node]  # AccumulateGrad nodes of the group's weights
    nodes: list[Node]  # where the group's weight branches join the input's path
    grads: list[tuple[torch.Tensor | None, ...] | None] = field(default_factory=list)


@dataclass
class WeightWork:
    """What I kept for W: the weight groups and the gradients at their join nodes."""

    groups: list[_Group]
    params: dict[Node, torch.Tensor]  # AccumulateGrad node -> its parameter


def _grad_node(t: torch.Tensor) -> Node | None:
    """A tensor's grad_fn, or a leaf's AccumulateGrad node (made through a view)."""
    if t.grad_fn is not None:
        return t.grad_fn
    if not t.requires_grad:
        return None
    return t.view_as(t).grad_fn.next_functions[0][0]


def _reverse_edges(root: Node) -> dict[Node, list[Node]]:
    """node -> the nodes that feed gradient into it (its consumers in the forward)."""
    rev: dict[Node, list[Node]] = defaultdict(list)
    seen, queue = {root}, deque([root])
    while queue:
        node = queue.popleft()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            rev[nxt].append(node)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return rev


def _closure(starts: list[Node], rev: dict[Node, list[Node]], stop: set[Node]
             ) -> tuple[set[Node], set[Node]]:
    """Nodes reachable forward from `starts`, not entering `stop`; and the `stop`
    nodes met on the way."""
    inside, met = set(starts), set()
    queue = deque(starts)
    while queue:
        for up in rev.get(queue.popleft(), ()):
            if up in inside:
                continue
            if up in stop:
                met.add(up)
                continue
            inside.add(up)
            queue.append(up)
    return inside, met


def _groups(out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor]
            ) -> tuple[list[_Group], dict[Node, torch.Tensor]]:
    root = _grad_node(out)
    rev = _reverse_edges(root)
    input_path, _ = _closure([_grad_node(x)], rev, set())
    by_node: dict[Node, _Group] = {}
    acc_nodes: dict[Node, torch.Tensor] = {}
    for p in params:
        acc = _grad_node(p)
        if acc is None or acc not in rev:
            continue  # unused in this forward: no gradient, as in a full backward
        acc_nodes[acc] = p
        _, joins = _closure([acc], rev, input_path)
        group = next((by_node[j] for j in joins if j in by_node), None)
        if group is None:
            group = _Group([], [])
        group.params.append(acc)
        for j in joins:
            other = by_node.get(j)
            if other is not None and other is not group:  # merge two groups
                group.params += [a for a in other.params if a not in group.params]
                for n in other.nodes:
                    by_node[n] = group
                group.nodes += [n for n in other.nodes if n not in group.nodes]
            if j not in group.nodes:
                group.nodes.append(j)
            by_node[j] = group
    unique = list({id(g): g for g in by_node.values()}.values())
    return unique, acc_nodes


def backward_input(out: torch.Tensor, grad: torch.Tensor | None, x: torch.Tensor,
                   params: list[torch.Tensor]) -> WeightWork:
    """I: x.grad = d out / d x (seeded with `grad`, None at the loss); returns what
    W needs. The graph is kept (only W's part of it stays referenced)."""
    groups, acc_nodes = _groups(out, x, params)
    handles = []
    for g in groups:
        g.grads = [None] * len(g.nodes)
        for i, node in enumerate(g.nodes):
            def keep(grad_outputs, g=g, i=i):
                g.grads[i] = tuple(grad_outputs)
            handles.append(node.register_prehook(keep))
    try:
        torch.autograd.backward(out, grad, inputs=[x], retain_graph=True)
    finally:
        for h in handles:
            h.remove()
    return WeightWork(groups, acc_nodes)


def backward_weight(work: WeightWork) -> None:
    """W: every weight's .grad += its gradient, from the nodes I kept."""
    for g in work.groups:
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
            weights = [work.params[a] for a in g.params]
            dws = torch.autograd.grad(edges, [GradientEdge(a, 0) for a in g.params],
                                      grad_outputs=seeds, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            for w, dw in zip(weights, dws, strict=True):
                if dw is None:
                    continue
                if w.grad is None:
                    w.grad = dw
                else:
                    w.grad.add_(dw)
        g.grads = []
