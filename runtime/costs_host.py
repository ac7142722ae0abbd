"""What a CPU run had on its host, for a cost profile's `host` (docs/costs.md,
"Contention"): the cores, threads and ranks (`host_facts`), the CPU share of
a process's threads besides the interpreter's (`background_share`), and how
much of processor sharing the ranks' ops really got (`sharing_efficiency`).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from pathlib import Path

import torch


def host_facts(local_ranks: int) -> dict:
    """What a CPU run had on this host, for the profile's `host` (docs/costs.md,
    "Contention"): the cores this process may use, torch threads per rank, ranks of
    the job on the host, and `background`, the share of a core this process's
    threads other than the calling (interpreter's) one used since they started
    (the transport's; Linux only, else absent). `slots`: ranks that can compute
    at once, the profile's `cores`: 1 in-process (every rank in one thread), else
    the cores over the threads per rank when every rank runs on this host (absent
    across hosts: not modelled). Call it before the link ping-pong, whose
    messages would count as background."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    threads = max(1, torch.get_num_threads())
    ranks = local_ranks if local_ranks > 1 else int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    out: dict = {"cores": usable, "threads_per_rank": threads, "ranks": ranks}
    if local_ranks > 1:
        out["slots"] = 1
    elif os.environ.get("LOCAL_WORLD_SIZE", "1") == os.environ.get("WORLD_SIZE", "1"):
        out["slots"] = max(1, usable // threads)
    background = background_share()
    if background is not None:  # per rank: in-process, every rank shares the one process
        out["background"] = round(background / max(1, local_ranks), 4)
    return out


def background_share(task_dir: str = "/proc/self/task") -> float | None:
    """CPU seconds used by this process's threads other than the calling one, over
    the wall time since the first of them started (None where /proc has no tasks)."""
    me = threading.get_native_id()
    tick = os.sysconf("SC_CLK_TCK")
    try:
        now = float(Path("/proc/uptime").read_text().split()[0])
        cpu, first = 0.0, None
        for task in Path(task_dir).iterdir():
            if int(task.name) == me:
                continue
            # fields after "(comm)": state is field 3; utime 14, stime 15, starttime 22
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            start = int(fields[19]) / tick
            first = start if first is None else min(first, start)
    except (OSError, ValueError, IndexError):
        return None
    if first is None:
        return 0.0
    wall = now - first
    return min(cpu / wall, 0.99) if wall > 0 else None


def sharing_efficiency(events: dict[int, list[tuple]],
                       cpu: dict[int, list[tuple[float, float]]], capacity: float
                       ) -> float | None:
    """The CPU the run's compute ops got over what processor sharing would have
    given them at the concurrency the run really had: while n ranks were inside
    a compute op (their wall-clock spans, every rank of the run on this host),
    each op should have got min(1, capacity / n) of a core. A batch of messages
    (COMM) counts in n for its CPU time from its posting, as the simulator
    counts it (schedc/simulate/contention.py); its wait is no demand. 1: ideal
    sharing;
    below: ops waited for a core beyond it (a woken rank waiting for its turn,
    threads the model does not see). At most 1; None without compute ops."""
    spans = [(e[3], e[3] + (c[1] if e[0] == "COMM" else e[4]), c[1], e[0] != "COMM")
             for r, evs in events.items() for e, c in zip(evs, cpu[r], strict=True)]
    spans = [s for s in spans if s[1] > s[0]]
    if not any(op for *_, op in spans) or capacity <= 0:
        return None
    changes = sorted([(s[0], 1) for s in spans] + [(s[1], -1) for s in spans])
    at, share, n = [changes[0][0]], [0.0], 0  # share: integral of min(1, capacity/n)
    for t, d in changes:
        if t > at[-1]:
            rate = min(1.0, capacity / n) if n else 0.0
            share.append(share[-1] + (t - at[-1]) * rate)
            at.append(t)
        n += d

    def integral(t: float) -> float:
        i = bisect_right(at, t) - 1
        rate = 0.0 if i + 1 >= len(at) else (share[i + 1] - share[i]) / (at[i + 1] - at[i])
        return share[i] + (t - at[i]) * rate

    due = sum(integral(t1) - integral(t0) for t0, t1, _, op in spans if op)
    got = sum(c for _, _, c, op in spans if op)
    return min(got / due, 1.0) if due > 0 else None
