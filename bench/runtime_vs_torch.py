"""schedc's runtime against torch.distributed.pipelining, on CPU ranks (gloo).

    torchrun --nproc-per-node 2 bench/runtime_vs_torch.py [--model gpt-mini --steps 12]
    torchrun --nproc-per-node 4 bench/runtime_vs_torch.py --only paci   # PACI at p = 4

Same model, same partition into one stage per rank, same micro-batches, one
thread per rank; step times are medians over the steps after warm-up:
1. `ratio schedc/torch X`: schedc 1F1B / torch `Schedule1F1B` (below 1.0: schedc
   is faster);
2. `zb-h1/1f1b X`: schedc ZB-H1 / schedc 1F1B (below 1.0: the zero-bubble split pays);
3. `paci/1f1b X`: schedc PACI / schedc 1F1B-flush (below 1.0: PACI's throughput
   is higher).
Printed by rank 0, one line per figure. `--only` picks figures (torch, zb-h1,
paci); the schedc 1F1B run is always made, as every figure's reference.
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


def _programs(name: str, m: int, root: Path, stages: int) -> Path:
    compiled = compile_spec(preset_spec(name, stages=stages, microbatches=m).validate())
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
    rank, world = dist.get_rank(), dist.get_world_size()
    model = resolve_model(a.model)
    module = build_stage_module(model, rank, world, cfg.seed, torch.device("cpu"))
    stage = PipelineStage(module, rank, world, torch.device("cpu"))
    schedule = Schedule1F1B(stage, a.m, loss_fn=model.loss)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.0)
    batches = make_batches(p, 0)
    out = []
    for step in range(a.steps):
        mbs = [batches.get(step * a.m + j) for j in range(a.m)]
        t0 = time.perf_counter()
        if rank == 0:
            schedule.step(torch.cat([b.inputs for b in mbs]))
        elif rank == world - 1:
            schedule.step(target=torch.cat([b.targets for b in mbs]), losses=[])
        else:
            schedule.step()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.barrier()
        out.append(time.perf_counter() - t0)
    return out[WARMUP:]


def _median(times: list[float]) -> float:
    return statistics.median(times) if times else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt-mini")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--microbatches", "-m", dest="m", type=int, default=8,
                    help="micro-batches per step")
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--only", default="torch,zb-h1,paci",
                    help="comma-separated figures: torch, zb-h1, paci")
    a = ap.parse_args()
    only = set(a.only.split(","))
    torch.set_num_threads(1)
    init_world(torch.device("cpu"))
    world = dist.get_world_size()
    med = {}
    with tempfile.TemporaryDirectory() as tmp:
        f1b = _programs("1f1b", a.m, Path(tmp), world)
        if "torch" in only:
            med["torch"] = _median(_torch_step_times(f1b, a))
        med["1f1b"] = _median(_schedc_step_times(f1b, a))
        for name in ("zb-h1", "paci"):
            if name in only:
                med[name] = _median(_schedc_step_times(_programs(name, a.m, Path(tmp), world),
                                                       a))
    # Metrics lines are on the last stage's rank: send its medians to rank 0.
    names = ["1f1b", "zb-h1", "paci"]
    t = torch.tensor([med.get(k, float("nan")) for k in names], dtype=torch.float64)
    dist.broadcast(t, src=world - 1)
    med.update({k: float(v) for k, v in zip(names, t.tolist(), strict=True) if k in med})
    if dist.get_rank() == 0:
        print(f"model {a.model}, {world} ranks x 1 thread, m={a.m}, micro-batch "
              f"{a.micro_batch_size} x {a.seq_len} tokens, {a.steps - WARMUP} timed steps")
        if "torch" in med:
            print(f"torch Schedule1F1B step  {med['torch'] * 1e3:8.1f} ms")
        print(f"schedc 1F1B step         {med['1f1b'] * 1e3:8.1f} ms")
        if "zb-h1" in med:
            print(f"schedc ZB-H1 step        {med['zb-h1'] * 1e3:8.1f} ms")
        if "paci" in med:
            print(f"schedc PACI step         {med['paci'] * 1e3:8.1f} ms")
        if "torch" in med:
            print(f"ratio schedc/torch {med['1f1b'] / med['torch']:.3f}")
        if "zb-h1" in med:
            print(f"zb-h1/1f1b {med['zb-h1'] / med['1f1b']:.3f}")
        if "paci" in med:
            print(f"paci/1f1b {med['paci'] / med['1f1b']:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
