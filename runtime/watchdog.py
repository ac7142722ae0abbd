"""Never hang: a deadline on every wait of a distributed run.

A rank waits in two kinds of places: a batch of point-to-point operations
(receives, and sends until they are received) and a collective (ALLREDUCE,
the data-parallel sum, the step agreement, control-plane gathers). Each wait
is announced to the rank's `Watchdog` with what it waits for, e.g.

    rank 2, instruction 17 (RECV_GRAD s2 mb3 <-3): the gradient of micro-batch 3
    from rank 3

Point-to-point waits on gloo use the backend's own deadline
(`Work.wait(timeout)`), which raises `WaitTimeout`; on NCCL the host does not
wait for a batch at all (the compute stream does), and NCCL's process-group
timeout and this thread bound it. On a gloo timeout the rank reports and exits
through the normal error path. A peer that died is noticed sooner still: gloo
fails the pending operation with "Connection closed by peer", reported the
same way. Collectives and anything else that cannot be given a deadline are
covered by the watchdog's thread: once a wait has lasted `timeout + grace`
seconds it prints the same report and ends the process with `EXIT_HANG`
(os._exit: a blocked collective cannot be interrupted from Python).

Either way the rank exits non-zero with one line naming its global rank, the
instruction index, op and peer, and what it waited for; `docs/reliability.md`
lists the exit codes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_HANG = 124  # a wait outlived --timeout (the shell's `timeout` code)
EXIT_FAULT = 3  # a peer failed, or a run-time fault (NaN policy stop, comm error)


class WaitTimeout(RuntimeError):
    """A wait outlived the run's --timeout."""


class Watchdog:
    """Times the current wait of one process; ends the process when it overruns."""

    def __init__(self, timeout: float, label: str, grace: float | None = None,
                 rank: int | None = None) -> None:
        self.timeout = timeout
        self.label = label  # e.g. "[rank 3]"
        self.rank = rank  # global rank, for the failure record (runtime/exits.py)
        self.grace = max(2.0, 0.2 * timeout) if grace is None else grace
        self._what: str | None = None
        self._since = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.expired = False

    def start(self) -> Watchdog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="schedc-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Announce a wait; nested waits keep the outermost description."""
        with self._lock:
            outer = self._what is not None
            if not outer:
                self._what, self._since = what, time.monotonic()
        try:
            yield
        finally:
            if not outer:
                with self._lock:
                    self._what = None

    def remaining(self) -> float:
        """Seconds left of the current wait's --timeout (at least a millisecond)."""
        with self._lock:
            since = self._since if self._what is not None else time.monotonic()
        return max(1e-3, self.timeout - (time.monotonic() - since))

    def _watch(self) -> None:
        period = min(1.0, max(0.05, self.timeout / 10))
        while True:
            time.sleep(period)
            with self._lock:
                what, since = self._what, self._since
            if what is not None and time.monotonic() - since > self.timeout + self.grace:
                self.expired = True
                message = (f"schedc: error: {what}: no progress for "
                           f"{time.monotonic() - since:.0f} s (--timeout {self.timeout:g}); "
                           "stopping this rank")
                print(f"{self.label} {message}", file=sys.stderr, flush=True)
                if self.rank is not None:
                    from .exits import record

                    record(self.rank, message, EXIT_HANG)
                os._exit(EXIT_HANG)


class NullWatchdog:
    """No deadline (the in-process transport reports deadlocks itself)."""

    timeout = float("inf")

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        yield

    def remaining(self) -> float:
        return float("inf")
