"""schedc's runtime against torch.distributed.pipelining, on CPU ranks (gloo).

    python bench/runtime_vs_torch.py [--ranks 2 --model gpt-mini --steps 12]
    python bench/runtime_vs_torch.py --ranks 4 --only paci   # PACI at p = 4

Started with plain `python`, the script launches itself under torchrun on
`--ranks` processes, keeps every rank's output in `--log-dir` (default: a new
directory under /tmp, named at the start), prints rank 0's report when the
ranks end, and if a rank fails, prints that rank's log and the directory, and
exits with torchrun's status. `torchrun --nproc-per-node N bench/runtime_vs_torch.py`
runs the ranks directly (no log kept).

Same model, same partition into one stage per rank, same micro-batches, one
thread per rank; step times are medians over the steps after warm-up:
1. `ratio schedc/torch X`: schedc 1F1B / torch `Schedule1F1B` (below 1.0: schedc
   is faster);
2. `zb-h1/1f1b X`: schedc ZB-H1 / schedc 1F1B (below 1.0: the zero-bubble split pays);
3. `paci/1f1b X`: schedc PACI / schedc 1F1B-flush (below 1.0: PACI's throughput
   is higher).
Printed by rank 0, one line per figure. `--only` picks figures (torch, zb-h1,
paci); the schedc 1F1B run is always made, as every figure's reference.
`--posted-batches K` proves and runs schedc's programs under K posted batches
with early receives (docs/programs.md, "Overlap"; torch's schedule waits for
its sends later too).

`--op-counts` adds, per rank, the operators (top-level aten calls that compute)
and the Python calls of one warm-up step of schedc 1F1B against torch's
(`op counts rank R (schedc/torch, one step): ...`): counts, which machine load
does not change, of where the two differ.

Each run also reports its CPU time per step on every rank (process CPU: compute,
Python and the communication threads; waiting costs none), the figure that
machine load disturbs least: `cpu ms/step` lines, rank by rank, with the same
ratios on the busiest rank.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from schedc.runtime.build import build_stage_module
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.launch import build_dist, init_world
from schedc.runtime.models import resolve_model
from schedc.runtime.session import Trainer
from schedc.runtime.setup import make_batches, prepare
from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.pipelining import PipelineStage, Schedule1F1B

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.overlap import Overlap
from schedc.presets import preset_spec
from schedc.verify import prove_overlap

WARMUP = 2


def _programs(name: str, m: int, root: Path, stages: int, posted: int = 1) -> Path:
    """The preset's programs, proven under `posted` batches (`schedc compile
    --posted-batches K`; the runtime runs them under that rule)."""
    compiled = compile_spec(preset_spec(name, stages=stages, microbatches=m).validate())
    manifest = prove_overlap(compiled.manifest, compiled.programs, Overlap.posting(posted))
    return write_programs(root / name, manifest, compiled.programs)


def _schedc_step_times(program_dir: Path, a: argparse.Namespace
                       ) -> tuple[list[float], list[float]]:
    """(wall-clock step times on the last stage's rank, [] elsewhere; this rank's
    CPU time per step), after warm-up."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    cfg = config_from_args(parser.parse_args([
        str(program_dir), "--model", a.model, "--steps", str(a.steps), "--quiet",
        "--micro-batch-size", str(a.micro_batch_size), "--seq-len", str(a.seq_len),
        "--threads", "1", "--lr", "1e-4",
    ]))
    trainer = Trainer(build_dist(cfg))
    cpu = []
    while trainer.bodies_left > 0:
        c0 = time.process_time()
        with _counting(a, len(cpu) == WARMUP - 1):
            trainer.step()
        cpu.append(time.process_time() - c0)
    trainer.close()
    times = [line["time_s"] for line in trainer.lines]
    steps = [t1 - t0 for t0, t1 in zip(times, times[1:], strict=False)]
    return steps[WARMUP:], cpu[WARMUP + 1:]


def _torch_step_times(program_dir: Path, a: argparse.Namespace
                      ) -> tuple[list[float], list[float]]:
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
    out, cpu = [], []
    for step in range(a.steps):
        mbs = [batches.get(step * a.m + j) for j in range(a.m)]
        t0, c0 = time.perf_counter(), time.process_time()
        with _counting(a, step == WARMUP - 1):
            if rank == 0:
                schedule.step(torch.cat([b.inputs for b in mbs]))
            elif rank == world - 1:
                schedule.step(target=torch.cat([b.targets for b in mbs]), losses=[])
            else:
                schedule.step()
            opt.step()
            opt.zero_grad(set_to_none=True)
        cpu.append(time.process_time() - c0)
        dist.barrier()
        out.append(time.perf_counter() - t0)
    return out[WARMUP:], cpu[WARMUP + 1:]


# Operators that move no data (views, metadata, allocation): not counted.
_NOT_WORK = {"aten::empty", "aten::empty_like", "aten::empty_strided", "aten::view",
             "aten::as_strided", "aten::slice", "aten::select", "aten::detach", "aten::alias",
             "aten::reshape", "aten::_reshape_alias", "aten::t", "aten::transpose",
             "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::view_as",
             "aten::lift_fresh", "aten::resolve_conj", "aten::resolve_neg", "aten::detach_"}
_COUNTS: list[Counter] = []  # per run with --op-counts: this rank's operators in one step


@contextmanager
def _counting(a: argparse.Namespace, now: bool) -> Iterator[None]:
    """With --op-counts, count the operators of this step (a warm-up step, untimed):
    top-level aten calls that compute, by name, plus `python calls` (cProfile)."""
    if not (a.op_counts and now):
        yield
        return
    calls = cProfile.Profile()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        calls.enable()
        yield
        calls.disable()
    counts: Counter = Counter()
    for e in prof.events():
        if e.name.startswith("aten::") and e.name not in _NOT_WORK and (
                e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
            counts[e.name] += 1
    counts["python calls"] = sum(v[1] for v in pstats.Stats(calls).stats.values())
    _COUNTS.append(counts)


def _report_counts(names: list[str], every: list[list[Counter] | None]) -> None:
    """Per rank: operators per step of torch's Schedule1F1B against schedc 1F1B."""
    if "torch" not in names:
        return
    t, s = names.index("torch"), names.index("1f1b")
    for r, runs in enumerate(every):
        assert runs is not None
        torch_c, ours = runs[t], runs[s]
        ops = sorted((set(torch_c) | set(ours)) - {"python calls"})
        diff = [f"{op.removeprefix('aten::')} {ours[op]}/{torch_c[op]}" for op in ops
                if ours[op] != torch_c[op]]
        total = sum(v for k, v in ours.items() if k != "python calls")
        total_t = sum(v for k, v in torch_c.items() if k != "python calls")
        print(f"op counts rank {r} (schedc/torch, one step): operators {total}/{total_t}, "
              f"python calls {ours['python calls']}/{torch_c['python calls']}; differing: "
              + (", ".join(diff) or "none"))


def _median(times: list[float]) -> float:
    return statistics.median(times) if times else float("nan")


def _report(a: argparse.Namespace, world: int, wall: dict[str, float],
            cpu: dict[str, list[float]]) -> None:
    print(f"model {a.model}, {world} ranks x 1 thread, m={a.m}, micro-batch "
          f"{a.micro_batch_size} x {a.seq_len} tokens, {a.steps - WARMUP} timed steps, "
          f"posted batches {a.posted_batches}")
    label = {"torch": "torch Schedule1F1B", "1f1b": "schedc 1F1B", "zb-h1": "schedc ZB-H1",
             "paci": "schedc PACI"}
    for k, w in wall.items():
        ranks = " ".join(f"{c * 1e3:7.1f}" for c in cpu[k])
        print(f"{label[k] + ' step':24s} {w * 1e3:8.1f} ms   cpu ms/step by rank {ranks}")
    ratios = [("ratio schedc/torch", "1f1b", "torch"), ("zb-h1/1f1b", "zb-h1", "1f1b"),
              ("paci/1f1b", "paci", "1f1b")]
    for text, num, den in ratios:
        if num in wall and den in wall:
            print(f"{text} {wall[num] / wall[den]:.3f}")
    for text, num, den in ratios:  # CPU time of the busiest rank of each run
        if num in cpu and den in cpu:
            print(f"cpu {text} {max(cpu[num]) / max(cpu[den]):.3f}")


def _launch(a: argparse.Namespace, argv: list[str]) -> int:
    """Run this script under torchrun on a.ranks processes, every rank's output kept;
    a failed rank's log printed. Returns torchrun's exit status."""
    log_dir = Path(a.log_dir) if a.log_dir else Path(tempfile.mkdtemp(prefix="rvt-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"rank logs: {log_dir}", flush=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={a.ranks}", "--log-dir", str(log_dir), "--redirects", "3",
           __file__, *argv]
    code = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    for out in sorted(log_dir.glob("**/attempt_*/0/stdout.log")):  # rank 0's report
        print(out.read_text(errors="replace"), end="", flush=True)
    if code != 0:
        for err in sorted(log_dir.glob("**/attempt_*/*/stderr.log")):
            text = err.read_text(errors="replace")
            if "Traceback" in text or "Error" in text:
                rank = err.parent.name
                tail = "\n".join(text.splitlines()[-60:])
                print(f"---- rank {rank} failed; its log ({err}), last lines:\n{tail}",
                      file=sys.stderr)
        print(f"runtime_vs_torch: a rank failed (exit {code}); every rank's output is "
              f"under {log_dir}", file=sys.stderr)
    return code


@record
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
    ap.add_argument("--posted-batches", type=int, default=1, metavar="K",
                    help="schedc's programs proven and run under K posted batches")
    ap.add_argument("--op-counts", action="store_true",
                    help="also count each rank's operators and Python calls in one step, "
                         "torch's against schedc 1F1B's")
    ap.add_argument("--ranks", type=int, default=2,
                    help="processes to launch under torchrun (plain `python` only)")
    ap.add_argument("--log-dir", default=None,
                    help="where every rank's output is kept (plain `python` only)")
    a = ap.parse_args()
    if "RANK" not in os.environ:  # plain python: launch the ranks
        argv, skip = [], False
        for arg in sys.argv[1:]:  # the launcher's options are not the ranks'
            if skip:
                skip = False
            elif arg in ("--ranks", "--log-dir"):
                skip = True
            elif not arg.startswith(("--ranks=", "--log-dir=")):
                argv.append(arg)
        raise SystemExit(_launch(a, argv))
    only = set(a.only.split(","))
    torch.set_num_threads(1)
    init_world(torch.device("cpu"))
    world = dist.get_world_size()
    names = ["torch", "1f1b", "zb-h1", "paci"]
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        f1b = _programs("1f1b", a.m, Path(tmp), world, a.posted_batches)
        runs = {"1f1b": f1b}
        for name in ("zb-h1", "paci"):
            if name in only:
                runs[name] = _programs(name, a.m, Path(tmp), world, a.posted_batches)
        if "torch" in only:
            w, c = _torch_step_times(f1b, a)
            wall["torch"], cpu["torch"] = _median(w), _median(c)
        for name, d in runs.items():
            w, c = _schedc_step_times(d, a)
            wall[name], cpu[name] = _median(w), _median(c)
    # Metrics lines are on the last stage's rank: send its medians to rank 0; torch's
    # are rank 0's own (every rank ends its step at the same barrier).
    t = torch.tensor([wall.get(k, float("nan")) for k in names], dtype=torch.float64)
    dist.broadcast(t, src=world - 1)
    wall.update({k: float(v) for k, v in zip(names, t.tolist(), strict=True)
                 if k in wall and k != "torch"})
    mine = torch.tensor([cpu.get(k, float("nan")) for k in names], dtype=torch.float64)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    if dist.get_rank() == 0:
        _report(a, world, wall, {k: [float(c[i]) for c in every] for i, k in enumerate(names)
                                 if k in cpu})
    if a.op_counts:
        counted = [None] * world
        dist.all_gather_object(counted, _COUNTS)
        if dist.get_rank() == 0:
            _report_counts([k for k in names if k in cpu], counted)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
