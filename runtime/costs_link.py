"""Links measured by ping-pong, for the cost profile's `link` (docs/costs.md).

Every pair of neighbouring program ranks (r, r + 1) exchanges messages of a
handful of sizes back and forth, through the same calls the transport makes
for a batch (`batch_isend_irecv`, then `wait`): pairs (0, 1), (2, 3), ...
first, then (1, 2), (3, 4), ... . The one-way time of a size is half the
median round trip; a least-squares line through (bytes, one-way time), over
the sizes up to the run's largest message (at least 256 KiB), gives the
link's latency (its intercept, at least 0) and bandwidth (the inverse of its
slope). So the latency holds everything a message costs beyond its bytes: the library's
calls, the wake-up of a waiting rank.

Only the distributed transport has links; an in-process run has none.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from .transport import DistTransport

SIZES = (64, 4096, 65536, 262144, 1048576)  # bytes, with the run's own message sizes
REPEATS = 10  # timed round trips per size (after WARMUP)
WARMUP = 2
FIT_AT_LEAST = 262144  # bytes: the fit spans at least this, so the slope shows above noise


def measure_links(interps: dict, boundaries: dict) -> list[dict]:
    """This process's measured links (the lower rank of each pair reports it);
    [] in-process. `interps`: program rank -> Interpreter; `boundaries`:
    boundary -> (shape, dtype) of its message."""
    if len(interps) != 1:
        return []
    (rank, interp), = interps.items()
    transport = getattr(interp.transport, "inner", interp.transport)
    if not isinstance(transport, DistTransport) or transport.ranks < 2:
        return []
    own = {_nbytes(spec) for spec in boundaries.values()} - {0}
    sizes = sorted({*SIZES, *own})
    group = transport.pipelines[0] if transport.pipelines else None
    base = transport.dp_index * transport.ranks  # program rank -> global rank: base + r
    out = []
    for first in (0, 1):  # pairs (0,1), (2,3), ... then (1,2), (3,4), ...
        lo = rank if (rank - first) % 2 == 0 else rank - 1
        if lo < first or lo + 1 >= transport.ranks:
            continue
        peer = lo + 1 if rank == lo else lo
        times, cpu = ping_pong(base + peer, rank == lo, sizes, group)
        if rank == lo:
            upto = max(*own, FIT_AT_LEAST)
            at = max((i for i, n in enumerate(sizes) if n <= upto), default=0)
            out.append({"ranks": [base + lo, base + lo + 1],
                        **fit_link(sizes, times, upto), "message_cpu": cpu[at]})
    return out


def ping_pong(peer: int, leads: bool, sizes: list[int], group=None,
              repeats: int = REPEATS, warmup: int = WARMUP) -> tuple[list[float], list[float]]:
    """Per size: one-way seconds (half the median round trip) and the thread CPU
    seconds one message took (half a round trip's); measured by the leading
    side, zeros on the other."""
    out, cpu = [], []
    for n in sizes:
        buf = torch.zeros(n, dtype=torch.uint8)
        trips, used = [], []
        for k in range(warmup + repeats):
            t0, c0 = time.perf_counter(), time.thread_time()
            for sending in ((True, False) if leads else (False, True)):
                op = dist.isend if sending else dist.irecv
                for work in dist.batch_isend_irecv([dist.P2POp(op, buf, peer, group=group)]):
                    work.wait()
            if k >= warmup:
                trips.append(time.perf_counter() - t0)
                used.append(time.thread_time() - c0)
        out.append(statistics.median(trips) / 2 if leads else 0.0)
        cpu.append(statistics.median(used) / 2 if leads else 0.0)
    return out, cpu


def fit_link(sizes: list[int], one_way: list[float], upto: int = 0) -> dict:
    """{"latency": s, "bandwidth": bytes/s or None (no measurable slope), "sizes",
    "one_way", "fitted_upto"}: the least-squares line one_way = latency + bytes /
    bandwidth through the sizes up to `upto` bytes (the run's largest message:
    the range the simulator prices; 0: every size). Larger sizes are measured
    and kept, not fitted: a socket's buffers bend the line beyond them."""
    xs, ys = zip(*[(x, y) for x, y in zip(sizes, one_way, strict=True)
                   if not upto or x <= upto], strict=True)
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx \
        if sxx else 0.0
    latency = max(my - slope * mx, 0.0)
    return {"latency": latency, "bandwidth": 1.0 / slope if slope > 0 else None,
            "sizes": list(sizes), "one_way": one_way, "fitted_upto": upto or max(sizes)}


def library_cpu(links: list[dict]) -> float:
    """Thread CPU seconds the library takes for one message of the run's size
    (median over the links; 0 without links)."""
    return statistics.median(link["message_cpu"] for link in links) if links else 0.0


def link_figures(links: list[dict]) -> dict | None:
    """The profile's one `link` model: the median over the measured links; `cpu`:
    the library's CPU per message (`library_cpu`), when measured."""
    if not links:
        return None
    out = {"latency": statistics.median(link["latency"] for link in links)}
    bws = [link["bandwidth"] for link in links if link["bandwidth"] is not None]
    if bws:
        out["bandwidth"] = statistics.median(bws)
    if all("message_cpu" in link for link in links):
        out["cpu"] = library_cpu(links)
    return out


def _nbytes(spec) -> int:
    shape, dtype = spec
    n = dtype.itemsize
    for d in shape:
        n *= d
    return n
