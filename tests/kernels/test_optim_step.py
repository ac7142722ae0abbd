"""adamw_step / sgd_step equal torch.optim.AdamW / SGD, and their twins, with the extras.

The extras are checked against what they mean: the stash holds the weights
before each step, look-ahead holds ``w_new + alpha * (w_new - w_old)``, and
error feedback equals torch.optim stepping with ``g + lambda * (g - g_prev)``.
"""

import pytest
import torch
from kernel_testing import ARITH_TOL, SIZES, assert_bitwise, randn
from schedc.kernels import adamw_step, adamw_step_ref, sgd_step, sgd_step_ref

N = 4099
STEPS = 4
ALPHA, LAMBDA = 0.5, 0.3

EXTRAS = {
    "plain": dict(),
    "stash": dict(stash=True),
    "lookahead": dict(lookahead=True),
    "ef": dict(ef=True),
    "all": dict(stash=True, lookahead=True, ef=True),
}


def _grads(device: str, n: int = N) -> list[torch.Tensor]:
    return [randn(n, device=device, seed=10 + k) for k in range(STEPS)]


def _ef_grads(grads: list[torch.Tensor], prev0: torch.Tensor) -> list[torch.Tensor]:
    """What torch.optim must see under error feedback: g + lambda * (g - g_prev)."""
    out, prev = [], prev0
    for g in grads:
        out.append(g + LAMBDA * (g - prev))
        prev = g
    return out


def _torch_run(opt_cls, p0: torch.Tensor, grads, **hp):
    """Step torch.optim over one parameter; yield (weights before, weights after) per step."""
    p = torch.nn.Parameter(p0.clone())
    opt = opt_cls([p], foreach=False, **hp)
    for g in grads:
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        yield before, p.detach().clone(), opt.state[p]


def _outputs(n, device, stash=False, lookahead=False, ef=False, out_dtype=torch.float32):
    make = lambda: torch.full((n,), float("nan"), dtype=out_dtype, device=device)
    return dict(
        stash_out=make() if stash else None,
        lookahead_out=make() if lookahead else None,
        lookahead_alpha=ALPHA if lookahead else 0.0,
        ef_prev_grad=randn(n, device=device, seed=99) if ef else None,
        ef_lambda=LAMBDA if ef else 0.0,
    )


def _check_extras(out, mine_before, before, after, grads_seen, k):
    """Extras against our own weights before the step (bitwise) and torch.optim's (close)."""
    if out["stash_out"] is not None:
        assert_bitwise(out["stash_out"], mine_before)
        torch.testing.assert_close(out["stash_out"], before, **ARITH_TOL)
    if out["lookahead_out"] is not None:
        expected = after + ALPHA * (after - before)
        torch.testing.assert_close(out["lookahead_out"], expected, **ARITH_TOL)
    if out["ef_prev_grad"] is not None:
        assert_bitwise(out["ef_prev_grad"], grads_seen[k])


ADAMW_HP = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)


@pytest.mark.parametrize("extras", EXTRAS, ids=list(EXTRAS))
def test_adamw_equals_torch_optim(device, extras):
    p0 = randn(N, device=device, seed=1)
    grads = _grads(device)
    out = _outputs(N, device, **EXTRAS[extras])
    ef = EXTRAS[extras].get("ef", False)
    torch_grads = _ef_grads(grads, out["ef_prev_grad"].clone()) if ef else grads
    param, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    ref = _torch_run(torch.optim.AdamW, p0, torch_grads, **ADAMW_HP)
    for k, (g, (before, after, state)) in enumerate(zip(grads, ref, strict=True)):
        grad, mine_before = g.clone(), param.clone()
        adamw_step(param, grad, m, v, step=k + 1, **ADAMW_HP, **out)
        assert torch.equal(grad, g)  # the gradient is only read
        torch.testing.assert_close(param, after, **ARITH_TOL)
        torch.testing.assert_close(m, state["exp_avg"], **ARITH_TOL)
        torch.testing.assert_close(v, state["exp_avg_sq"], **ARITH_TOL)
        _check_extras(out, mine_before, before, after, grads, k)


SGD_CASES = {
    "plain": dict(momentum=0.0),
    "weight_decay": dict(momentum=0.0, weight_decay=0.05),
    "momentum": dict(momentum=0.9, weight_decay=0.05),
    "dampening": dict(momentum=0.9, dampening=0.5),
    "nesterov": dict(momentum=0.9, nesterov=True, weight_decay=0.05),
}


@pytest.mark.parametrize("case", SGD_CASES, ids=list(SGD_CASES))
@pytest.mark.parametrize("extras", ["plain", "all"])
def test_sgd_equals_torch_optim(device, case, extras):
    hp = dict(lr=0.05, **SGD_CASES[case])
    p0 = randn(N, device=device, seed=1)
    grads = _grads(device)
    out = _outputs(N, device, **EXTRAS[extras])
    torch_grads = _ef_grads(grads, out["ef_prev_grad"].clone()) if extras == "all" else grads
    param = p0.clone()
    buf = torch.zeros_like(p0) if hp["momentum"] else None
    ref = _torch_run(torch.optim.SGD, p0, torch_grads, **hp)
    for k, (g, (before, after, state)) in enumerate(zip(grads, ref, strict=True)):
        mine_before = param.clone()
        sgd_step(param, g.clone(), buf, first_step=k == 0, **hp, **out)
        torch.testing.assert_close(param, after, **ARITH_TOL)
        if buf is not None:
            torch.testing.assert_close(buf, state["momentum_buffer"], **ARITH_TOL)
        _check_extras(out, mine_before, before, after, grads, k)


def _state(n, device):
    return [randn(n, device=device, seed=s) for s in (1, 2, 3)] + [randn(n, device=device).abs()]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_adamw_kernel_equals_twin(device, n, out_dtype):
    results = []
    for fn in (adamw_step, adamw_step_ref):
        bufs = _state(n, device)  # param, grad, exp_avg, exp_avg_sq
        out = _outputs(n, device, stash=True, lookahead=True, ef=True, out_dtype=out_dtype)
        fn(*bufs, step=3, **ADAMW_HP, **out)
        results.append((bufs, out))
    (bufs, out), (bufs_ref, out_ref) = results
    for t, r in zip(bufs, bufs_ref, strict=True):
        torch.testing.assert_close(t, r, **ARITH_TOL)
    assert_bitwise(out["stash_out"], out_ref["stash_out"])
    assert_bitwise(out["ef_prev_grad"], out_ref["ef_prev_grad"])
    # One rounding of look-ahead to a narrow dtype may flip on an ulp of the fp32 value.
    la_tol = ARITH_TOL if out_dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out["lookahead_out"], out_ref["lookahead_out"], **la_tol)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("first_step", [False, True])
def test_sgd_kernel_equals_twin(device, n, first_step):
    hp = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, first_step=first_step)
    results = []
    for fn in (sgd_step, sgd_step_ref):
        bufs = _state(n, device)[:3]  # param, grad, momentum_buf
        out = _outputs(n, device, stash=True, lookahead=True, ef=True, out_dtype=torch.bfloat16)
        fn(*bufs, **hp, **out)
        results.append((bufs, out))
    (bufs, out), (bufs_ref, out_ref) = results
    for t, r in zip(bufs, bufs_ref, strict=True):
        torch.testing.assert_close(t, r, **ARITH_TOL)
    assert_bitwise(out["stash_out"], out_ref["stash_out"])


def test_optim_argument_checks():
    p = torch.zeros(8)
    with pytest.raises(ValueError, match="step"):
        adamw_step(p, p.clone(), p.clone(), p.clone(), step=0, lr=1e-3)
    with pytest.raises(TypeError):
        adamw_step(p, p.clone().bfloat16(), p.clone(), p.clone(), step=1, lr=1e-3)
    with pytest.raises(ValueError, match="Nesterov"):
        sgd_step(p, p.clone(), p.clone(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum_buf"):
        sgd_step(p, p.clone(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError):
        sgd_step(p, p.clone(), None, lr=0.1, stash_out=torch.zeros(9))


def test_twins_equal_torch_optim_bitwise():
    """The twins run torch.optim's own single-tensor ops, so on CPU they match it exactly."""
    p0, grads = randn(N, seed=1), _grads("cpu")
    param, m, v = p0.clone(), torch.zeros(N), torch.zeros(N)
    for k, (g, (_, after, _)) in enumerate(
        zip(grads, _torch_run(torch.optim.AdamW, p0, grads, **ADAMW_HP), strict=True)
    ):
        adamw_step_ref(param, g, m, v, step=k + 1, **ADAMW_HP)
        assert torch.equal(param, after)
    hp = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.05)
    param, buf = p0.clone(), torch.zeros(N)
    for k, (g, (_, after, _)) in enumerate(
        zip(grads, _torch_run(torch.optim.SGD, p0, grads, **hp), strict=True)
    ):
        sgd_step_ref(param, g, buf, first_step=k == 0, **hp)
        assert torch.equal(param, after)


def test_overlapping_buffers_are_rejected():
    buf = torch.zeros(20)
    p, g, m, v = buf[:5], torch.zeros(5), torch.zeros(5), torch.zeros(5)
    with pytest.raises(ValueError, match="overlap"):
        adamw_step(p, g, m, v, step=1, lr=1e-3, stash_out=buf[3:8])
    with pytest.raises(ValueError, match="overlap"):
        sgd_step(p, g, p, lr=0.1, momentum=0.9)


def test_leaf_parameters_that_require_grad_are_fine():
    p = torch.nn.Parameter(torch.ones(7))
    sgd_step_ref(p, torch.ones(7), None, lr=0.5)
    sgd_step(p, torch.ones(7), None, lr=0.5)
    assert torch.equal(p.detach(), torch.zeros(7))


# ---- the training STEP's fused path: 1/count folded in (grad_div) -------------------------
def _divided(g: torch.Tensor, count: int) -> torch.Tensor:
    """g / count, correctly rounded: the divisor is a tensor on g's device (a CPU
    scalar divisor makes CUDA multiply by its reciprocal instead)."""
    return g / torch.tensor(float(count), device=g.device)


@pytest.mark.parametrize("count", [1, 3, 8])
@pytest.mark.parametrize("n", [1000, 4099])
def test_grad_div_is_the_division_folded_in_bitwise(device, count, n):
    """Each implementation with grad_div = c on a sum equals itself on (sum / c), bit for
    bit: the runtime's fused STEP is exactly its old `acc.div_(count)` + step."""
    for fn in (adamw_step, adamw_step_ref):
        results = []
        for fused in (True, False):
            p, g, m, v = _state(n, device)
            out = _outputs(n, device, stash=True, ef=True)
            if fused:
                fn(p, g, m, v, step=2, **ADAMW_HP, grad_div=float(count), **out)
            else:
                fn(p, _divided(g, count), m, v, step=2, **ADAMW_HP, **out)
            results.append((p, m, v, out["stash_out"], out["ef_prev_grad"], g))
        (a, b) = results
        for x, y in zip(a[:5], b[:5], strict=True):
            assert_bitwise(x, y)
        assert_bitwise(a[5], _state(n, device)[1])  # the sum itself is only read


@pytest.mark.parametrize("count", [3, 8])
def test_sgd_grad_div_is_the_division_folded_in_bitwise(device, count):
    hp = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)
    for fn in (sgd_step, sgd_step_ref):
        results = []
        for fused in (True, False):
            p, g, buf = _state(N, device)[:3]
            stash = torch.empty_like(p)
            grad = g if fused else _divided(g, count)
            fn(p, grad, buf, stash_out=stash, grad_div=float(count) if fused else 1.0, **hp)
            results.append((p, buf, stash))
        for x, y in zip(*results, strict=True):
            assert_bitwise(x, y)


def test_fused_step_with_stash_and_count_equals_twin(device):
    """The STEP the runtime runs after a STASH: kernel vs twin (stash bitwise, arithmetic
    within a few ulp: the twin chains torch's own ops, which round differently)."""
    outs = []
    for fn in (adamw_step, adamw_step_ref):
        p, g, m, v = _state(N, device)
        stash = torch.full_like(p, float("nan"))
        fn(p, g, m, v, step=5, **ADAMW_HP, grad_div=4.0, stash_out=stash)
        outs.append((p, m, v, stash))
    (p, m, v, stash), (p_ref, m_ref, v_ref, stash_ref) = outs
    assert_bitwise(stash, stash_ref)
    assert_bitwise(stash, _state(N, device)[0])
    for t, r in ((p, p_ref), (m, m_ref), (v, v_ref)):
        torch.testing.assert_close(t, r, **ARITH_TOL)
