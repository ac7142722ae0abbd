"""What both launchers do before training: load programs, pick the device,
resolve the model, make the data, and describe the run for checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from schedc.errors import UserError
from schedc.program import Manifest, RankProgram

from .build import boundary_specs, stage_numels
from .config import RunConfig
from .data import Batches, load_corpus
from .models import ModelDef, resolve_model
from .programs import load


@dataclass
class Prepared:
    cfg: RunConfig
    manifest: Manifest
    programs: list[RankProgram]
    model: ModelDef
    boundaries: dict
    stage_numels: list[int]
    meta: dict


def prepare(cfg: RunConfig) -> Prepared:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    manifest, programs = load(cfg.programs)
    model = resolve_model(cfg.model, cfg.loss)
    if model.max_seq is not None and cfg.seq_len > model.max_seq:
        raise UserError(f"--seq-len {cfg.seq_len} exceeds {model.name}'s {model.max_seq}")
    try:  # the model's stage split, run on the meta device: no compute
        boundaries = boundary_specs(model, manifest.num_stages, cfg.micro_batch_size,
                                    cfg.seq_len)
        numels = stage_numels(model, manifest.num_stages)
    except Exception as exc:  # noqa: BLE001 - the user's model, whatever it raises
        raise UserError(f"--model {cfg.model} cannot be split into the programs' "
                        f"{manifest.num_stages} stages: {type(exc).__name__}: {exc}") from None
    meta = {
        "spec_hash": manifest.spec_hash, "model": cfg.model, "optimizer": cfg.optimizer,
        "micro_batch_size": cfg.micro_batch_size, "seq_len": cfg.seq_len, "seed": cfg.seed,
        "dp": cfg.dp, "save_every": cfg.save_every,
    }
    corrections = {k: getattr(cfg, k) for k in ("error_feedback", "lookahead",
                                                 "lr_warmup_by_delay", "muon_momentum")
                   if getattr(cfg, k) != getattr(RunConfig, k)}
    if corrections:  # optimizer options beyond the defaults must match on --resume
        meta["optimizer_options"] = corrections
    return Prepared(cfg, manifest, programs, model, boundaries, numels, meta)


def pick_device(cfg: RunConfig, local_rank: int = 0) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {cfg.device}: no CUDA device")
    device = torch.device("cuda", local_rank)
    # NCCL rule: the device is set before any communication.
    torch.cuda.set_device(device)
    return device


def make_batches(p: Prepared, dp_index: int) -> Batches:
    cfg = p.cfg
    corpus = load_corpus(None if cfg.data is None else str(cfg.data))
    return Batches(corpus, cfg.micro_batch_size, cfg.seq_len, cfg.seed, p.model.objective,
                   dp_index, cfg.dp, p.model.mask_token)
