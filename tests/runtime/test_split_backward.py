"""I + W without recomputation (runtime/split_backward.py): bit for bit a B, and no
more work than a B: the same operators, as many times (counted by the torch
profiler), on middle stages and on the last stage (the loss)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from schedc.runtime.build import build_stage_module
from schedc.runtime.models import resolve_model
from schedc.runtime.split_backward import backward_input, backward_weight

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")
# Operators that move no data (views, allocation); the engine adds a gradient into
# a buffer in place or not as it sees fit: both count as one add.
_METADATA = {"aten::view", "aten::view_as", "aten::as_strided", "aten::t", "aten::transpose",
             "aten::empty", "aten::empty_like", "aten::_reshape_alias", "aten::reshape",
             "aten::expand", "aten::detach", "aten::alias", "aten::unsqueeze", "aten::squeeze"}


def _stage(model, s, n):
    module = build_stage_module(model, s, n, seed=0, device=torch.device("cpu"))
    return module, [p for p in module.parameters() if p.requires_grad]


def _forward(model, module, s, n):
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # stage s's input: the earlier stages' output on real tokens
        for k in range(s):
            x = build_stage_module(model, k, n, seed=0, device=torch.device("cpu"))(x)
    x = x.detach().requires_grad_(True)
    out = module(x)
    if s == n - 1:
        targets = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
        return x, model.loss(out, targets), None
    return x, out, torch.randn(out.shape, generator=torch.Generator().manual_seed(3))


def _matmuls(prof) -> int:
    counts = Counter(e.name for e in prof.events() if e.name in MATMULS)
    return sum(counts.values())


def _work(prof) -> Counter:
    """The operators that compute, by name (top-level calls: an operator's own
    sub-calls are not counted again)."""
    out: Counter = Counter()
    for e in prof.events():
        if e.name.startswith("aten::") and e.name not in _METADATA and (
                e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
            out[e.name.replace("aten::add_", "aten::add")] += 1
    return out


@pytest.mark.parametrize("model_name", ["gpt-tiny", "gpt-mini"])
@pytest.mark.parametrize(("s", "n"), [(1, 2), (1, 3), (2, 3)])
def test_input_then_weight_is_a_full_backward(model_name, s, n):
    model = resolve_model(model_name)
    module, params = _stage(model, s, n)
    x, out, grad = _forward(model, module, s, n)
    for p in params:
        p.grad = torch.zeros_like(p)  # as the runtime binds them: zeroed flat views
    with torch.profiler.profile() as prof_b:
        torch.autograd.backward(out, grad, inputs=params + [x], retain_graph=True)
    want_x = x.grad.clone()
    want = [p.grad.clone() for p in params]
    x.grad = None
    for p in params:
        p.grad = torch.zeros_like(p)  # as the runtime binds them: zeroed flat views
    with torch.profiler.profile() as prof_i:
        work = backward_input(out, grad, x, params)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params)  # I: inputs only
    assert torch.equal(x.grad, want_x)
    with torch.profiler.profile() as prof_w:
        backward_weight(work)
    for p, w in zip(params, want, strict=True):
        assert torch.equal(p.grad, w)
    # No recomputation: I's and W's matrix products together are exactly B's.
    b, i, w = _matmuls(prof_b), _matmuls(prof_i), _matmuls(prof_w)
    assert b > 0 and i > 0 and w > 0
    assert i + w == b, (i, w, b)
    # Nor any other operator: a norm's backward runs once (its vector weights' gradients
    # are computed by I and added by W), the loss's backward once.
    assert _work(prof_i) + _work(prof_w) == _work(prof_b)
    assert _work(prof_w)["aten::native_layer_norm_backward"] == 0


def test_vector_weights_of_the_join_node_in_i_matrices_in_w():
    """A scale vector multiplied in (its gradient a reduction) is computed by I; a
    matrix multiplied in directly (x @ w: a matrix product) stays in W."""
    g = torch.Generator().manual_seed(0)
    scale = torch.nn.Parameter(torch.randn(8, generator=g))
    weight = torch.nn.Parameter(torch.randn(8, 8, generator=g))
    params = [scale, weight]
    x = torch.randn(4, 8, generator=g, requires_grad=True)
    out = torch.tanh((x * scale) @ weight)
    seed = torch.randn(4, 8, generator=g)
    torch.autograd.backward(out, seed, inputs=[x, *params], retain_graph=True)
    want = [p.grad.clone() for p in params] + [x.grad.clone()]
    x.grad = None
    for p in params:
        p.grad = torch.zeros_like(p)
    with torch.profiler.profile() as prof_i:
        work = backward_input(out, seed, x, params)
    assert [p.grad.count_nonzero().item() for p in params] == [0, 0]  # I writes no .grad
    with torch.profiler.profile() as prof_w:
        backward_weight(work)
    assert [torch.equal(a.grad, b) for a, b in zip(params + [x], want, strict=True)] == [True] * 3
    assert (_matmuls(prof_i), _matmuls(prof_w)) == (1, 1)  # x's product in I, w's in W
    assert _work(prof_w)["aten::mul"] == 0  # the scale's gradient (x * grad) came from I
