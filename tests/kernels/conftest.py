"""Shared fixtures for the kernel tests.

Triton decides between its CPU interpreter and its compiler when a kernel is
decorated, so TRITON_INTERPRET is set before anything imports the kernel
modules, and they are imported here and then. On a CPU-only machine the Triton
kernels themselves then run in these tests, through the interpreter. On a GPU
machine run ``TRITON_INTERPRET=0 pytest tests/kernels`` to test the compiled
kernels on CUDA.

Only the kernel tests see the variable: other suites in the same session (the
runtime's exactness tests, say) expect CPU tensors to take the torch twins,
which equal torch.optim bit for bit.
"""

import os

_WE_SET_IT = "TRITON_INTERPRET" not in os.environ
os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from kernel_testing import DEVICES, INTERPRET  # noqa: E402
from schedc.kernels import _dispatch  # noqa: E402

if INTERPRET and _dispatch.triton_available():
    for _name in ("_tl_accumulate", "_tl_optim", "_tl_versions"):
        importlib.import_module(f"schedc.kernels.{_name}")  # decorated as interpreted
if _WE_SET_IT:
    del os.environ["TRITON_INTERPRET"]


@pytest.fixture(autouse=True)
def _interpret_in_kernel_tests(monkeypatch):
    """Route CPU tensors to Triton's interpreter within the kernel tests only."""
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """A device whose tensors the public functions hand to Triton (skip if none would)."""
    probe = torch.empty(1, device=request.param)
    if not _dispatch.use_triton(probe):
        pytest.skip(f"Triton does not run on {request.param} here (no triton or interpreter off)")
    return request.param
