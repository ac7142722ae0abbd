"""Distributed runs: one process per rank, launched by torchrun.

    torchrun --nproc-per-node 4 -m schedc.runtime.launch out/1f1b --model gpt-tiny --steps 20
    # PP x DP: 4 program ranks x 2 replicas
    torchrun --nproc-per-node 8 -m schedc.runtime.launch out/1f1b --dp 2 ...
    # several nodes: the usual rendezvous
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 --rdzv-id job1 -m schedc.runtime.launch out/p16 ...

Global rank g runs program rank g mod R of data-parallel replica g // R.
gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist

from schedc.errors import UserError
from schedc.files import programs_hash

from .api import Run
from .build import build_replicas
from .config import RunConfig, add_run_arguments, config_from_args
from .driver import DistDriver
from .exits import PREFIX, classify, record
from .models import ModelDef
from .preflight import preflight
from .restarts import attempt_store
from .session import Session
from .setup import Prepared, pick_device, prepare
from .transport import DistTransport
from .watchdog import EXIT_FAULT, Watchdog
from .wiring import build_interpreter


class _DistControl:
    """gather/barrier on a gloo group, apart from the pipeline's P2P traffic."""

    def __init__(self, writer: int, watchdog: Watchdog) -> None:
        self.group = dist.new_group(backend="gloo")
        self.writer = writer
        self.is_writer = dist.get_rank() == writer
        self.is_rank0 = dist.get_rank() == 0
        self.watchdog = watchdog

    def gather(self, obj: object) -> list | None:
        out = [None] * dist.get_world_size() if self.is_writer else None
        with self.watchdog.waiting("the other ranks at a drain point (gathering results)"):
            dist.gather_object(obj, out, dst=self.writer, group=self.group)
        return out

    def barrier(self) -> None:
        with self.watchdog.waiting("the other ranks at a drain point (checkpoint barrier)"):
            dist.barrier(group=self.group)


def _groups(p: Prepared, dp_index: int, rank: int):
    """Every process creates every group in the same order (new_group is collective)."""
    R, D = p.manifest.world_size, p.cfg.dp
    wanted = sorted({tuple(i.group) for prog in p.programs
                     for seq in prog.sections().values() for i in seq if i.op == "ALLREDUCE"})
    mine = {}
    for d in range(D):
        for g in wanted:
            pg = dist.new_group([d * R + r for r in g])
            if d == dp_index and rank in g:
                mine[g] = pg
    dp_group = None
    for r in range(R):
        pg = dist.new_group([d * R + r for d in range(D)])
        if r == rank:
            dp_group = pg
    # One communicator per pipeline (of each replica): messages match in order
    # per direction and per pipeline, the rule the verifier proved under.
    pipelines = []
    for d in range(D):
        for _ in range(p.manifest.num_pipelines):
            pg = dist.new_group([d * R + r for r in range(R)])
            if d == dp_index:
                pipelines.append(pg)
    return mine, (dp_group if D > 1 else None), pipelines


def _agree(p: Prepared, device: torch.device) -> None:
    """The one start-up collective on the pipeline group: every rank runs the
    same program directory, model and message shapes (also creates NCCL's
    communicator before any point-to-point operation)."""
    text = repr((sorted(p.meta.items()), sorted(p.boundaries.items()),
                 sorted((b, repr(form)) for b, form in p.layouts.items()),
                 programs_hash(p.manifest)))
    mine = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")
    t = torch.tensor([mine], dtype=torch.int64, device=device)
    parts = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    if any(int(x) != mine for x in parts):
        raise UserError("ranks disagree on programs, model or options: launch them alike")


def _world_size_message(cfg: RunConfig, ranks: int, world: int) -> str:
    need = ranks * cfg.dp
    text = (f"{cfg.programs}/manifest.json: field 'world_size': the programs need {ranks} "
            f"ranks x --dp {cfg.dp} = {need} processes, torchrun started {world}")
    if "RANK" not in os.environ:
        return (text + " (this module runs under torchrun, one process per rank: use "
                f"`schedc run {cfg.programs}`, which starts torchrun, or add --local)")
    if world > need and world % ranks == 0:
        return text + f" (for {world // ranks} pipeline replicas, pass --dp {world // ranks})"
    return text + f" (start {need}: torchrun --nproc-per-node {need})"


def init_world(device: torch.device, timeout: float = 600.0) -> None:
    """Join the torchrun world (once per process; later runs reuse it).

    The process-group timeout bounds every collective the backend runs (and
    the rendezvous, hence at least a minute); the watchdog enforces --timeout.
    """
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    store = attempt_store(max(60.0, timeout))  # a torchrun restart: this attempt's keys
    if store is not None:
        kwargs.update(store=store, rank=int(os.environ["RANK"]),
                      world_size=int(os.environ["WORLD_SIZE"]))
    dist.init_process_group(backend, timeout=timedelta(seconds=max(60.0, timeout)), **kwargs)


def build_dist(cfg: RunConfig, model: ModelDef | None = None, data: object = None
               ) -> Session:
    """This process's rank of a torchrun launch. `model` / `data`: the Python
    API's objects (default: resolved from cfg)."""
    # Everything that can be checked alone is checked before any communication,
    # so a mismatch is one message on every rank, not a hang.
    p = prepare(cfg, model, data)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    grank = int(os.environ.get("RANK", "0"))
    R = p.manifest.world_size
    if world != R * cfg.dp:
        raise UserError(_world_size_message(cfg, R, world))
    preflight(p)
    device = pick_device(cfg, int(os.environ.get("LOCAL_RANK", "0")))
    dp_index, rank = divmod(grank, R)
    # Slow local set-up before the start-up agreement, so ranks begin together.
    replicas = build_replicas(rank, p.manifest, p.model, cfg, device)
    watchdog = _watchdog(cfg, grank)
    with watchdog.waiting("the other ranks to join the run (rendezvous)"):
        init_world(device, cfg.timeout)
    with watchdog.waiting("the other ranks to agree on programs, model and options"):
        _agree(p, device)
        writer = p.manifest.stage_to_rank[0][p.manifest.num_stages - 1]
        control = _DistControl(writer, watchdog)
        groups, dp_group, pipelines = _groups(p, dp_index, rank)
    transport = DistTransport(rank, R, dp_index, cfg.dp, p.boundaries, device, groups, dp_group,
                              pipelines=pipelines, control=control.group, watchdog=watchdog,
                              grad_boundaries=p.grad_boundaries,
                              posted_batches=p.overlap.posted_batches,
                              early_receives=p.overlap.early_receives)
    interp = build_interpreter(p, rank, transport, device, dp_index, dp_group, replicas)
    return Session(cfg, p.manifest, p.programs, {rank: interp},
                   lambda r: dp_index * R + r, dp_index, control, DistDriver({rank: interp}),
                   p.boundaries, p.meta, p.stage_numels, p.unit, p.per_microbatch)


_WATCHDOG: Watchdog | None = None


def _watchdog(cfg: RunConfig, grank: int) -> Watchdog:
    """One per process (several runs per launch share it; the latest timeout holds)."""
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = Watchdog(cfg.timeout, f"[rank {grank}]", rank=grank).start()
    _WATCHDOG.timeout = cfg.timeout
    return _WATCHDOG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedc.runtime.launch",
                                     description="Run program files, one process per rank.")
    add_run_arguments(parser)
    grank = int(os.environ.get("RANK", "0"))
    try:
        cfg = config_from_args(parser.parse_args(argv))
        for _ in Run(config=cfg, launcher="torchrun").train():
            pass
    except Exception as exc:  # noqa: BLE001 - one line per rank, not a traceback per rank
        known = classify(exc)
        if known is None:  # a bug: its traceback helps (schedc run keeps it in its log)
            traceback.print_exc()
            known = (f"{PREFIX}{type(exc).__name__}: {exc}", EXIT_FAULT)
        return _fail(grank, *known)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _fail(grank: int, message: str, code: int) -> int:
    """Report and leave at once: peers may be dead or blocked, so tearing the
    process group down (which waits for them) could hang."""
    print(f"[rank {grank}] {message}", file=sys.stderr, flush=True)
    record(grank, message, code)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
