"""flatten_params / repoint move no bytes and keep autograd working; copy_ / swap_
(Triton, through the interpreter on CPU) equal their twins bit for bit."""

import itertools

import pytest
import torch
from kernel_testing import FLOAT_DTYPES, SIZES, assert_bitwise, randn
from schedc.kernels import copy_, copy_ref, flatten_params, repoint, swap_, swap_ref

DTYPE_PAIRS = list(itertools.product(FLOAT_DTYPES, repeat=2))
PAIR_IDS = [f"{str(a)[6:]}->{str(b)[6:]}" for a, b in DTYPE_PAIRS]


def _special(n: int, dtype: torch.dtype, device: str, seed: int = 0) -> torch.Tensor:
    """Random values plus the ones conversions get wrong: ties, NaN, Inf, -0, huge, tiny."""
    x = randn(n, device=device, seed=seed) * 1000
    edge = torch.tensor(
        [float("nan"), float("inf"), -float("inf"), -0.0, 3.4e38, 1e-40, 1.00390625, 65520.0],
        device=device,
    )
    k = min(n, edge.numel())
    x[:k] = edge[:k]
    return x.to(dtype)


# Narrowing 3.4e38 or 65520 to fp16 overflows to Inf on purpose; numpy warns about it.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(("src_dtype", "dst_dtype"), DTYPE_PAIRS, ids=PAIR_IDS)
def test_copy_equals_twin_bitwise(device, n, src_dtype, dst_dtype):
    src = _special(n, src_dtype, device)
    dst = torch.empty(n, dtype=dst_dtype, device=device)
    dst_ref = torch.empty_like(dst)
    assert copy_(dst, src) is dst
    copy_ref(dst_ref, src)
    assert_bitwise(dst, dst_ref)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [torch.int32, torch.uint8])
def test_swap_equals_twin_bitwise(device, n, dtype):
    a0 = _special(n, torch.float32, device, seed=1).to(dtype)
    b0 = _special(n, torch.float32, device, seed=2).to(dtype)
    a, b = a0.clone(), b0.clone()
    a_ref, b_ref = a0.clone(), b0.clone()
    ptrs = (a.data_ptr(), b.data_ptr())
    swap_(a, b)
    swap_ref(a_ref, b_ref)
    assert (a.data_ptr(), b.data_ptr()) == ptrs  # in place
    for x, y in ((a, a_ref), (b, b_ref), (a, b0), (b, a0)):
        assert torch.equal(x.view(torch.uint8), y.view(torch.uint8))


def test_copy_and_swap_reject_overlap_and_mismatch():
    buf = torch.zeros(10)
    with pytest.raises(ValueError, match="overlap"):
        copy_(buf[2:8], buf[:6])
    with pytest.raises(ValueError, match="overlap"):
        swap_(buf[:6], buf[4:])
    with pytest.raises(TypeError):
        swap_(torch.zeros(3), torch.zeros(3, dtype=torch.bfloat16))
    with pytest.raises(ValueError):
        copy_(torch.zeros(3), torch.zeros(4))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))


def test_flatten_params_copies_in_order():
    params = list(_model().parameters())
    flat, offsets = flatten_params(params)
    assert flat.dim() == 1 and flat.is_contiguous()
    assert offsets == [0, 35, 42, 63] and flat.numel() == 66
    for p, start in zip(params, offsets, strict=True):
        assert torch.equal(flat[start : start + p.numel()], p.detach().reshape(-1))
    assert flatten_params(params, dtype=torch.bfloat16)[0].dtype == torch.bfloat16
    with pytest.raises(TypeError, match="mixed"):
        flatten_params([torch.zeros(2), torch.zeros(2, dtype=torch.float16)])


def test_repoint_moves_no_bytes_and_autograd_works():
    model = _model()
    params = list(model.parameters())
    x = randn(4 * 5, seed=3).view(4, 5)
    expected = model(x)
    ids = [id(p) for p in params]
    flat, offsets = flatten_params(params)
    repoint(params, flat, offsets)

    # Every parameter is now a view of flat at its offset: nothing was copied.
    for p, start in zip(params, offsets, strict=True):
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert p.data_ptr() == flat.data_ptr() + start * flat.element_size()
    assert [id(p) for p in model.parameters()] == ids  # same Parameter objects
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)

    # Gradients flow through re-pointed parameters.
    model(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in params)

    # Writing the flat buffer is writing the weights (what a fused step does).
    with torch.no_grad():
        flat.mul_(0)
    assert torch.equal(model(x), model[2].bias.expand(4, 3))


def test_repoint_swaps_versions_at_zero_cost():
    model = _model()
    params = list(model.parameters())
    v0, offsets = flatten_params(params)
    v1 = v0 * 2
    x = randn(10, seed=4).view(2, 5)
    repoint(params, v0, offsets)
    out0 = model(x)
    ptr1 = v1.data_ptr()
    repoint(params, v1, offsets)  # version 1: no copy, just new views
    assert params[0].data_ptr() == ptr1 and not torch.equal(model(x), out0)
    repoint(params, v0, offsets)
    assert torch.equal(model(x), out0)


def test_repoint_checks_buffer():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="overruns"):
        repoint(params, torch.zeros(4), [0, 3])
    with pytest.raises(TypeError):
        repoint(params, torch.zeros(5, dtype=torch.float16), [0, 3])
    with pytest.raises(ValueError):
        repoint(params, torch.zeros(5), [0])
