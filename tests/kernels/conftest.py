"""Shared fixtures for the kernel tests.

Triton reads TRITON_INTERPRET when a kernel is decorated, so it is set before
anything imports the kernel modules: on a CPU-only machine the Triton kernels
themselves then run, through the interpreter. On a GPU machine run
``TRITON_INTERPRET=0 pytest tests/kernels`` to test the compiled kernels on CUDA.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from kernel_testing import DEVICES  # noqa: E402
from schedc.kernels import _dispatch  # noqa: E402


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """A device whose tensors the public functions hand to Triton (skip if none would)."""
    probe = torch.empty(1, device=request.param)
    if not _dispatch.use_triton(probe):
        pytest.skip(f"Triton does not run on {request.param} here (no triton or interpreter off)")
    return request.param
