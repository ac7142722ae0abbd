"""I + W without recomputation (runtime/split_backward.py): bit for bit a B, and no
more work than a B (counted in matrix products by the torch profiler)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from schedc.runtime.build import build_stage_module
from schedc.runtime.models import resolve_model
from schedc.runtime.split_backward import backward_input, backward_weight

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")


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


@pytest.mark.parametrize("model_name", ["gpt-tiny", "gpt-mini"])
@pytest.mark.parametrize(("s", "n"), [(1, 2), (1, 3)])
def test_input_then_weight_is_a_full_backward(model_name, s, n):
    model = resolve_model(model_name)
    module, params = _stage(model, s, n)
    x, out, grad = _forward(model, module, s, n)
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
