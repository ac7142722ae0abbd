"""One builder for a rank's interpreter, used by both launchers.

    interp = build_interpreter(prepared, rank, transport, device)

Everything an interpreter runs with is decided here, once, at start-up: its
`InterpreterConfig` (a small frozen object: rank, stages, --dp, timing,
NaN policy, fault injection read from the environment now and never again),
its stage replicas, its data, the stage boundaries (messages packed by
`boundary.Wire`) and, for async-sparse data parallelism, its `SparseDP`.
Nothing is patched into an interpreter after construction.
"""

from __future__ import annotations

import torch

from schedc.instructions import TABLE, VERSION_SOURCE
from schedc.program import RankProgram

from . import faults
from .boundary import StageIO, Wire
from .build import build_replicas
from .dp_sparse import SparseDP
from .interpreter import Interpreter, InterpreterConfig
from .setup import Prepared, make_batches
from .stage import StageReplica
from .transport import Transport

__all__ = ["build_interpreter", "interpreter_config"]


def interpreter_config(p: Prepared, rank: int) -> InterpreterConfig:
    cfg, period = p.cfg, p.manifest.period
    return InterpreterConfig(
        rank=rank, num_stages=p.manifest.num_stages, dp_size=cfg.dp,
        timing=cfg.trace is not None or cfg.costs_out is not None, on_nan=cfg.on_nan,
        step_microbatches=period.microbatches // period.steps,
        body_len=len(p.programs[rank].body) if cfg.on_nan == faults.SKIP else 0,
        inject=faults.Injection.from_env(), early_receives=p.overlap.early_receives,
    )


def weights_steady(program: RankProgram) -> set[tuple[int, int]]:
    """The (pipeline, stage) replicas of a rank whose weights no instruction changes
    (one that writes "weights" in the instruction table: STEP, SWAP, ...) while one of
    its micro-batches is between its forward and the op that ends its backward (the
    one writing the weight gradient), in each part of the program (a synchronous
    program: its steps drain before their STEPs). Their forwards need not save
    weights by reference."""
    parts = (program.prologue, program.body, program.epilogue)
    keys = {(ins.pipeline or 0, ins.stage) for part in parts for ins in part
            if ins.op == VERSION_SOURCE}
    for part in parts:
        open_mbs: dict[tuple[int, int], set[int]] = {}
        for ins in part:
            key = (ins.pipeline or 0, ins.stage)
            mbs = open_mbs.setdefault(key, set())
            writes = TABLE[ins.op].writes
            if ins.op == VERSION_SOURCE:
                mbs.add(ins.mb)
            elif "weight gradient" in writes:
                mbs.discard(ins.mb)
            elif "weights" in writes and mbs:
                keys.discard(key)
        keys -= {key for key, mbs in open_mbs.items() if mbs}  # open across parts
    return keys


def build_interpreter(
    p: Prepared, rank: int, transport: Transport, device: torch.device, dp_index: int = 0,
    dp_group: object = None, replicas: dict[tuple[int, int], StageReplica] | None = None,
) -> Interpreter:
    """Program rank `rank` of data-parallel replica `dp_index`. `replicas`: built
    already (the torchrun launcher builds them before the rendezvous)."""
    if replicas is None:
        replicas = build_replicas(rank, p.manifest, p.model, p.cfg, device)
    steady = weights_steady(p.programs[rank]) if p.manifest.synchronous else set()
    for key, replica in replicas.items():
        replica.by_reference = key not in steady
    dp_sparse = None
    if p.cfg.dp > 1 and p.manifest.spec.get("dp_mode", "sync") == "async-sparse":
        dp_sparse = SparseDP.from_spec(p.manifest.spec, replicas, p.cfg.dp, p.cfg.dp_late,
                                       dp_group)
    io = StageIO(p.layouts, p.manifest.num_stages - 1, side=p.side)
    return Interpreter(interpreter_config(p, rank), replicas, Wire(transport, p.layouts),
                       make_batches(p, dp_index), p.model.loss, io, dp_sparse)
