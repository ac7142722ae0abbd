"""Sizes, dtypes, tolerances and helpers shared by the kernel tests."""

import torch
from schedc.kernels import _dispatch

# Not multiples of the block (1024), plus empty and single-element buffers.
SIZES = [0, 1, 7, 1000, 4099]
FLOAT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Arithmetic kernels vs their twins: a few ulp on values of order 1 (the GPU may
# fuse a multiply-add that torch's CPU ops round twice, or the other way round).
ARITH_TOL = dict(rtol=1e-6, atol=1e-6)


# Read when conftest imports this module, while TRITON_INTERPRET is still set.
INTERPRET = _dispatch.interpret_enabled()


def triton_on_cpu() -> bool:
    """Whether the kernel tests hand CPU tensors to Triton (the interpreter)."""
    return INTERPRET and _dispatch.triton_available()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(n: int, dtype=torch.float32, device="cpu", seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=seeded(seed)).to(dtype=dtype, device=device)


def assert_bitwise(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal bit patterns, except that any NaN equals any NaN (payloads differ by device)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    assert torch.equal(nan_a, nan_e), "NaNs at different places"
    keep = ~nan_a
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[actual.element_size()]
    assert torch.equal(actual[keep].view(bits), expected[keep].view(bits))


def assert_equals_twin(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit for bit where the kernel runs through Triton's CPU interpreter (or the
    twin itself): there the two compute the same roundings. On a GPU, where the
    compiler may fuse a multiply-add, within ARITH_TOL."""
    if actual.device.type == "cpu":
        assert_bitwise(actual, expected)
    else:
        torch.testing.assert_close(actual, expected, **ARITH_TOL)
