"""schedc's runtime against torch.distributed.pipelining, on 2 CPU ranks (gloo).

    torchrun --nproc-per-node 2 bench/runtime_vs_torch.py [--model gpt-mini --steps 12]

Same model, same 2-stage partition, same micro-batches, one thread per rank:
1. step time of schedc 1F1B / torch `Schedule1F1B` (median over steps after
   warm-up; below 1.0 means schedc is faster);
2. throughput of schedc PACI / schedc 1F1B-flush (steady-state median step times).
Printed by rank 0 as one line per figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from schedc.runtime.build import build_stage_module
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.launch import build_dist, init_world
from schedc.runtime.models import resolve_model
from schedc.runtime.session import train
from schedc.runtime.setup import make_batches, prepare
from torch.distributed.pipelining import PipelineStage, Schedule1F1B

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec

WARMUP = 2


def _programs(name: str, m: int, root: Path) -> Path:
    compiled = compile_spec(preset_spec(name, stages=2, microbatches=m).validate())
    return write_programs(root / name, compiled.manifest, compiled.programs)


def _schedc_step_times(program_dir: Path, a: argparse.Namespace) -> list[float]:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    cfg = config_from_args(parser.parse_args([
        str(program_dir), "--model", a.model, "--steps", str(a.steps), "--quiet",
        "--micro-batch-size", str(a.micro_batch_size), "--seq-len", str(a.seq_len),
        "--threads", "1", "--lr", "1e-4",
    ]))
    lines = train(build_dist(cfg))
    times = [line["time_s"] for line in lines]
    steps = [t1 - t0 for t0, t1 in zip(times, times[1:], strict=False)]
    return steps[WARMUP:]


def _torch_step_times(program_dir: Path, a: argparse.Namespace) -> list[float]:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    cfg = config_from_args(parser.parse_args([
        str(program_dir), "--model", a.model, "--micro-batch-size", str(a.micro_batch_size),
        "--seq-len", str(a.seq_len)]))
    p = prepare(cfg)
    rank = dist.get_rank()
    model = resolve_model(a.model)
    module = build_stage_module(model, rank, 2, cfg.seed, torch.device("cpu"))
    stage = PipelineStage(module, rank, 2, torch.device("cpu"))
    schedule = Schedule1F1B(stage, a.m, loss_fn=model.loss)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.0)
    batches = make_batches(p, 0)
    out = []
    for step in range(a.steps):
        mbs = [batches.get(step * a.m + j) for j in range(a.m)]
        t0 = time.perf_counter()
        if rank == 0:
            schedule.step(torch.cat([b.inputs for b in mbs]))
        else:
            schedule.step(target=torch.cat([b.targets for b in mbs]), losses=[])
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.barrier()
        out.append(time.perf_counter() - t0)
    return out[WARMUP:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt-mini")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--m", type=int, default=8, help="micro-batches per step")
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    init_world(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        f1b = _programs("1f1b", a.m, Path(tmp))
        paci = _programs("paci", a.m, Path(tmp))
        torch_times = _torch_step_times(f1b, a)
        ours = _schedc_step_times(f1b, a)
        paci_times = _schedc_step_times(paci, a)
    # Metrics lines are on the last stage's rank (1): send its medians to rank 0.
    med = torch.tensor([statistics.median(ours) if ours else 0.0,
                        statistics.median(paci_times) if paci_times else 0.0])
    dist.broadcast(med, src=1)
    if dist.get_rank() == 0:
        t_torch = statistics.median(torch_times)
        print(f"model {a.model}, 2 ranks x 1 thread, m={a.m}, micro-batch {a.micro_batch_size}"
              f" x {a.seq_len} tokens, {a.steps - WARMUP} timed steps")
        print(f"torch Schedule1F1B step  {t_torch * 1e3:8.1f} ms")
        print(f"schedc 1F1B step         {med[0] * 1e3:8.1f} ms   ratio schedc/torch "
              f"{med[0] / t_torch:.3f}")
        print(f"schedc PACI step         {med[1] * 1e3:8.1f} ms   throughput PACI/1F1B "
              f"{med[0] / med[1]:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
