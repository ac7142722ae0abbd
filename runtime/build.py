"""Building a rank's stage replicas and agreeing on message shapes.

Every replica of stage s starts from the same weights: torch's generator is
seeded with (seed, s) before `build_stage(s, num_stages)`, whatever pipeline
or rank the replica belongs to, so PP x DP replicas and Chimera/AMDP
pipelines agree bit for bit at step 0.
"""

from __future__ import annotations

import torch

from schedc.errors import UserError
from schedc.program import Manifest

from .config import RunConfig
from .models import ModelDef
from .stage import StageReplica
from .transport import BoundarySpec
from .weights import OptimConfig


def stage_seed(seed: int, stage: int) -> int:
    return seed * 7919 + 104729 * (stage + 1)


def optim_config(cfg: RunConfig, manifest: Manifest) -> OptimConfig:
    """The optimizer; delay corrections from the Spec unless the options override them."""
    ef = manifest.spec.get("error_feedback") if cfg.error_feedback is None else cfg.error_feedback
    warm = manifest.spec.get("lr_warmup_by_delay")
    if cfg.lr_warmup_by_delay is not None:
        warm = cfg.lr_warmup_by_delay
    return OptimConfig(
        name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
        ef_lambda=float(ef) if ef else None, muon_momentum=cfg.muon_momentum,
        lr_warmup_by_delay=int(warm) if warm else None,
    )


def stage_delay(manifest: Manifest, pipeline: int, stage: int) -> int:
    """The stage's largest delay, from the compiler's analysis (0 if absent)."""
    try:
        return int(manifest.analysis["stages"][pipeline][stage]["max_delay"] or 0)
    except (KeyError, IndexError, TypeError):
        return 0


def lookahead_alpha(cfg: RunConfig, manifest: Manifest, pipeline: int, stage: int
                    ) -> float | None:
    """--lookahead's alpha for a stage (None: the programs' own)."""
    if cfg.lookahead is None:
        return None
    if manifest.spec.get("lookahead") is None:
        raise UserError(f"--lookahead {cfg.lookahead}: these programs were compiled without "
                        "look-ahead (no LOOKAHEAD instructions); add `lookahead auto` (or a "
                        "number) to the schedule and compile again")
    if cfg.lookahead == "auto":
        return float(stage_delay(manifest, pipeline, stage))
    return float(cfg.lookahead)


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
                out[(p, s)] = StageReplica(module, s, p, optim, delay=stage_delay(manifest, p, s),
                                           lookahead_alpha=lookahead_alpha(cfg, manifest, p, s))
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
