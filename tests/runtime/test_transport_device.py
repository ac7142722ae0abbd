"""The distributed transport's wait, selected by device (runtime/transport.py): on
CUDA it never blocks the host; on CPU it blocks under the watchdog's deadline."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
import torch
from schedc.runtime.transport import DistTransport, _Posted

from schedc.program import Instr


class _Work:
    """A posted operation's handle, as NCCL's: records how it was waited for."""

    def __init__(self) -> None:
        self.waits: list[object] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return True


class _Deadline:
    """A watchdog that records the waits announced to it."""

    timeout = 5.0

    def __init__(self) -> None:
        self.announced: list[str] = []

    @contextmanager
    def waiting(self, what: str):
        self.announced.append(what)
        yield

    def remaining(self) -> float:
        return self.timeout


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_the_wait_is_selected_by_device(device):
    """On CUDA a wait only orders the compute stream after NCCL's (`wait()`, no
    timeout, no host block: the deadline is the watchdog thread's and NCCL's); on
    CPU (gloo) it blocks under the watchdog with the time left of --timeout."""
    dog = _Deadline()
    transport = DistTransport(0, 2, 0, 1, {0: ((2,), torch.float32)}, torch.device(device), {},
                              None, watchdog=dog)
    batch = [Instr("RECV_GRAD", stage=0, mb=0, peer=1), Instr("SEND_ACT", stage=0, mb=1, peer=1)]
    works = [_Work(), _Work()]
    handle = _Posted(batch, works, [torch.zeros(2), None])
    transport.wait(handle)
    if device == "cuda":
        assert [w.waits for w in works] == [[None], [None]] and dog.announced == []
    else:
        assert [len(w.waits) for w in works] == [1, 1] and len(dog.announced) == 2
        assert all(w.waits[0] == timedelta(seconds=dog.timeout) for w in works)
