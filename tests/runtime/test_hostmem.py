"""The host memory policy (runtime/hostmem.py): applied once per process on glibc."""

from __future__ import annotations

import platform

import pytest
from schedc.runtime.hostmem import keep_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_freed_memory_stays_in_the_process_on_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
