"""Building a rank's stage replicas and agreeing on message shapes.

Every replica of stage s starts from the same weights: torch's generator is
seeded with (seed, s) before `build_stage(s, num_stages)`, whatever pipeline
or rank the replica belongs to, so PP x DP replicas and Chimera/AMDP
pipelines agree bit for bit at step 0.
"""

from __future__ import annotations

import torch

from schedc.program import Manifest

from .config import RunConfig
from .models import ModelDef
from .stage import StageReplica
from .transport import BoundarySpec
from .weights import OptimConfig


def stage_seed(seed: int, stage: int) -> int:
    return seed * 7919 + 104729 * (stage + 1)


def optim_config(cfg: RunConfig, manifest: Manifest) -> OptimConfig:
    ef = manifest.spec.get("error_feedback")
    return OptimConfig(
        name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
        ef_lambda=None if ef is None else float(ef),
    )


def build_stage_module(model: ModelDef, stage: int, num_stages: int, seed: int,
                       device: torch.device) -> torch.nn.Module:
    torch.manual_seed(stage_seed(seed, stage))
    return model.build_stage(stage, num_stages).to(device)


def build_replicas(
    rank: int, manifest: Manifest, model: ModelDef, cfg: RunConfig, device: torch.device
) -> dict[tuple[int, int], StageReplica]:
    """(pipeline, stage) -> replica, for every stage replica the program places on `rank`."""
    optim = optim_config(cfg, manifest)
    out = {}
    for p, stage_map in enumerate(manifest.stage_to_rank):
        for s, r in enumerate(stage_map):
            if r == rank:
                module = build_stage_module(model, s, manifest.num_stages, cfg.seed, device)
                out[(p, s)] = StageReplica(module, s, p, optim)
    return out


def boundary_specs(model: ModelDef, num_stages: int, micro_batch_size: int,
                   seq_len: int) -> dict[int, BoundarySpec]:
    """Shape and dtype of the tensor between stage s and s+1, for every s.

    Computed by running the whole model on the meta device (no memory, no
    compute), identically on every rank.
    """
    specs: dict[int, BoundarySpec] = {}
    with torch.device("meta"):
        x = torch.zeros(micro_batch_size, seq_len, dtype=torch.long)
        for s in range(num_stages - 1):
            module = model.build_stage(s, num_stages)
            with torch.no_grad():
                x = module(x)
            specs[s] = (tuple(x.shape), x.dtype)
    return specs


def stage_numels(model: ModelDef, num_stages: int) -> list[int]:
    """Parameter count of every stage (built on the meta device)."""
    with torch.device("meta"):
        return [sum(p.numel() for p in model.build_stage(s, num_stages).parameters())
                for s in range(num_stages)]
