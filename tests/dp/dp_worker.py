"""torchrun entry for the data-parallel tests: several jobs in one process group.

    torchrun --nproc-per-node 4 tests/dp/dp_worker.py JOBS.json OUT/

Each process writes OUT/<job>/rank<g>.pt: its losses (writer only), the final
weights of its stage replicas keyed (dp index, pipeline, stage), versions,
the async-sparse statistics, the wall-clock time of every optimizer step
since the job's training began, and under synchronous DP when each gradient
sum was entered and left (to see whether a replica was held back).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.launch import build_dist
from schedc.runtime.session import train


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    torch.set_num_threads(1)
    for name, argv in jobs.items():
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        session = build_dist(config_from_args(parser.parse_args(argv)))
        (interp,) = session.interps.values()
        d = session.dp_index
        step_times: list[float] = []
        clock = [0.0]  # when training began
        sparse = interp.dp_sparse
        if sparse is not None:
            inner = sparse.after_step

            def after_step(rep, inner=inner, times=step_times, clock=clock):
                inner(rep)
                times.append(time.perf_counter() - clock[0])

            sparse.after_step = after_step
        sums: list[tuple[float, float]] = []  # sync DP: (enter, leave) of each gradient sum
        if sparse is None and session.cfg.dp > 1:
            inner_sum = interp.transport.dp_allreduce

            def dp_allreduce(t, inner=inner_sum, out=sums):
                t_in = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
                inner(t)
                out.append((t_in, time.monotonic()))

            interp.transport.dp_allreduce = dp_allreduce
        dist.barrier()
        clock[0] = t0 = time.perf_counter()
        lines = train(session)
        record = {
            "losses": [line["loss"] for line in lines],
            "weights": {(d, *k): r.current.clone() for k, r in interp.replicas.items()},
            "versions": {(d, *k): r.version for k, r in interp.replicas.items()},
            "stats": None if sparse is None else sparse.stats,
            "step_times": step_times,
            "sums": sums,
            "train_s": time.perf_counter() - t0,
            "dp_index": d,
        }
        (out / name).mkdir(parents=True, exist_ok=True)
        torch.save(record, out / name / f"rank{dist.get_rank()}.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
