"""What both launchers do before training: load programs, pick the device,
resolve the model and the data, agree on the stage boundaries, and describe
the run for checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from schedc.errors import UserError
from schedc.overlap import DEFAULT as DEFAULT_OVERLAP
from schedc.overlap import Overlap
from schedc.program import Manifest, RankProgram

from .build import probe
from .config import RunConfig
from .models import ModelDef, resolve_model
from .programs import load
from .userdata import DataError, DataFactory, resolve_data, units


@dataclass
class Prepared:
    cfg: RunConfig
    manifest: Manifest
    programs: list[RankProgram]
    model: ModelDef
    boundaries: dict  # boundary -> (shape, dtype) of its activation message
    stage_numels: list[int]
    meta: dict
    layouts: dict = field(default_factory=dict)  # boundary -> boundary.Boundary
    grad_boundaries: dict = field(default_factory=dict)  # boundary -> gradient message spec
    data: DataFactory | None = None  # (dp_rank, dp_size) -> data source
    side: bool = False  # the data has side inputs
    unit: str = "tokens"  # what a step counts: tokens, or samples where there are none
    per_microbatch: int = 0  # tokens (or samples) per micro-batch of one replica
    overlap: Overlap = DEFAULT_OVERLAP  # the rule the programs were proven under


def prepare(cfg: RunConfig, model: ModelDef | None = None, data: object = None) -> Prepared:
    """Load the programs, resolve model and data, agree on every stage boundary.
    `model` / `data`: the Python API's objects (else from cfg's strings)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    manifest, programs = load(cfg.programs)
    overlap = run_overlap(cfg, manifest)
    model = model or resolve_model(cfg.model, cfg.loss)
    if model.max_seq is not None and cfg.seq_len > model.max_seq:
        raise UserError(f"--seq-len {cfg.seq_len} exceeds {model.name}'s {model.max_seq}")
    factory = resolve_data(cfg.data if data is None else data,
                           micro_batch_size=cfg.micro_batch_size, seq_len=cfg.seq_len,
                           seed=cfg.seed, objective=model.objective,
                           mask_token=model.mask_token, token_dtype=cfg.token_dtype)
    try:
        first = factory(0, cfg.dp).get(0)
    except (DataError, ValueError) as exc:
        raise UserError(str(exc)) from None
    # A backward reading newer weights than its forward (PACI, AMDP) must not meet
    # tensors saved by value that were computed from the weights (derived.py).
    inconsistent = bool(manifest.analysis.get("max_inconsistency") or 0)
    layouts, numels = probe(model, manifest.num_stages, first, refuse_derived=inconsistent)
    unit, per_mb = units(first)
    meta = {
        "spec_hash": manifest.spec_hash, "model": model.name, "optimizer": cfg.optimizer,
        "micro_batch_size": cfg.micro_batch_size, "seq_len": cfg.seq_len, "seed": cfg.seed,
        "dp": cfg.dp, "save_every": cfg.save_every,
    }
    corrections = {k: getattr(cfg, k) for k in ("error_feedback", "lookahead",
                                                 "lr_warmup_by_delay", "muon_momentum")
                   if getattr(cfg, k) != getattr(RunConfig, k)}
    if corrections:  # optimizer options beyond the defaults must match on --resume
        meta["optimizer_options"] = corrections
    return Prepared(cfg, manifest, programs, model,
                    {s: b.act_spec() for s, b in layouts.items()}, numels, meta, layouts,
                    {s: b.grad_spec() for s, b in layouts.items()}, factory,
                    bool(first.side), unit, per_mb, overlap)


def pick_device(cfg: RunConfig, local_rank: int = 0) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {cfg.device}: no CUDA device")
    device = torch.device("cuda", local_rank)
    # NCCL rule: the device is set before any communication.
    torch.cuda.set_device(device)
    return device


def make_batches(p: Prepared, dp_index: int):
    """Replica `dp_index`'s data: `.get(mb)` -> Batch."""
    return p.data(dp_index, p.cfg.dp)


def run_overlap(cfg: RunConfig, manifest: Manifest) -> Overlap:
    """The overlap rule to run under: the one the manifest's programs were
    proven under (schedc/overlap.py); a different --posted-batches is refused."""
    rule = Overlap.from_dict(manifest.overlap)
    if cfg.posted_batches is not None and cfg.posted_batches != rule.posted_batches:
        raise UserError(f"--posted-batches {cfg.posted_batches}: {cfg.programs} was proven "
                        f"deadlock-free under posted batches {rule.posted_batches} (field "
                        "'overlap' of manifest.json); run it so, or recompile with `schedc "
                        f"compile ... --posted-batches {cfg.posted_batches}`")
    return rule
