"""torchrun entry for the runtime tests: runs several jobs in one process group.

    torchrun --nproc-per-node 2 tests/runtime/dist_worker.py JOBS.json OUT/

JOBS.json maps a job name to its `schedc.runtime.launch` arguments; each
rank writes OUT/<job>/rank<g>.pt with its losses (writer only), final
weights, versions and the versions its compute ops read.
"""

from __future__ import annotations

import argparse
import json
import sys
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
        lines = train(session)
        (interp,) = session.interps.values()
        record = {
            "losses": [line["loss"] for line in lines],
            "weights": {k: r.current.clone() for k, r in interp.replicas.items()},
            "versions": {k: r.version for k, r in interp.replicas.items()},
            "reads": interp.record.reads if session.dp_index == 0 else [],
        }
        if session.dp_index:  # replicas' weights are equal; keep replica 0's
            record["weights"], record["versions"] = {}, {}
        (out / name).mkdir(parents=True, exist_ok=True)
        torch.save(record, out / name / f"rank{dist.get_rank()}.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
