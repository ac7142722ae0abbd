"""accumulate (Triton, through the interpreter on CPU) equals accumulate_ref."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_testing import FLOAT_DTYPES, SIZES, assert_equals_twin, randn, triton_on_cpu
from schedc.kernels import accumulate, accumulate_ref


def _run_both(n, dtype, device, scale, zero_source, return_sqnorm):
    acc = randn(n, device=device, seed=1)
    grad = randn(n, dtype, device, seed=2) * 3
    outs = []
    for fn in (accumulate, accumulate_ref):
        a, g = acc.clone(), grad.clone()
        sq = fn(a, g, scale=scale, zero_source=zero_source, return_sqnorm=return_sqnorm)
        outs.append((a, g, sq))
    return grad, outs


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("zero_source", [False, True])
@pytest.mark.parametrize("return_sqnorm", [False, True])
def test_accumulate_equals_twin(device, n, dtype, zero_source, return_sqnorm):
    grad, ((a, g, sq), (a_ref, g_ref, sq_ref)) = _run_both(
        n, dtype, device, 0.25, zero_source, return_sqnorm
    )
    assert_equals_twin(a, a_ref)
    if zero_source:
        assert torch.equal(g, torch.zeros_like(g)) and torch.equal(g_ref, g)
    else:
        assert torch.equal(g, grad)  # the source is only read
    if return_sqnorm:
        assert sq.shape == () and sq.dtype == torch.float32 and sq.device == a.device
        # Per-block partials sum in another order than torch's reduction.
        torch.testing.assert_close(sq, sq_ref, rtol=1e-5, atol=0)
    else:
        assert sq is None and sq_ref is None


def test_accumulate_sqnorm_flags_nan_and_inf(device):
    acc = torch.zeros(3000, device=device)
    grad = randn(3000, torch.bfloat16, device)
    grad[2500] = float("inf")
    assert torch.isinf(accumulate(acc.clone(), grad, return_sqnorm=True))
    grad[10] = float("nan")
    assert torch.isnan(accumulate(acc, grad, return_sqnorm=True))


def test_accumulate_sums_several_micro_batches(device):
    acc = torch.zeros(2051, device=device)
    grads = [randn(2051, torch.bfloat16, device, seed=s) for s in range(4)]
    for g in grads:
        accumulate(acc, g, scale=0.25)
    expected = sum(g.float() * 0.25 for g in grads)
    assert_equals_twin(acc, expected)


def test_accumulate_rejects_bad_buffers():
    with pytest.raises(TypeError):
        accumulate(torch.zeros(4, dtype=torch.bfloat16), torch.zeros(4))
    with pytest.raises(ValueError):
        accumulate(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError):
        accumulate(torch.zeros(2, 2), torch.zeros(2, 2))


@pytest.mark.skipif(not triton_on_cpu(), reason="Triton does not run on CPU here")
@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(0, 3000),
    dtype=st.sampled_from(FLOAT_DTYPES),
    scale=st.floats(-4, 4, allow_nan=False, width=32),
    zero_source=st.booleans(),
)
def test_accumulate_property(n, dtype, scale, zero_source):
    _, ((a, g, sq), (a_ref, g_ref, sq_ref)) = _run_both(n, dtype, "cpu", scale, zero_source, True)
    assert_equals_twin(a, a_ref)
    assert torch.equal(g, g_ref)
    torch.testing.assert_close(sq, sq_ref, rtol=1e-5, atol=1e-30)
