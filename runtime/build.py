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

from .boundary import Boundary, call_stage, describe, detach, leaves_of, map_tensors, to_device
from .config import RunConfig
from .data import Batch
from .derived import follow, refusal
from .models import ModelDef
from .stage import StageReplica
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


def probe(model: ModelDef, num_stages: int, batch: Batch, refuse_derived: bool = False
          ) -> tuple[dict[int, Boundary], list[int]]:
    """Every stage boundary (structure, shapes, dtypes, which leaves carry a
    gradient) and every stage's parameter count, from micro-batch `batch`.

    The whole model runs on the meta device (no memory, no compute),
    identically on every rank; a model with an op that has no meta kernel is
    probed for real on the CPU instead. Checks, before any step: stage 0 takes
    the data's inputs, each stage's output fits the next stage's input, the loss
    takes the last output and the targets and returns a scalar. `refuse_derived`:
    refuse a stage that saves tensors computed from its weights (derived.py).
    """
    try:
        return _probe(model, num_stages, batch, "meta", refuse_derived)
    except ProbeError as meta_error:
        try:
            return _probe(model, num_stages, batch, "cpu", refuse_derived)
        except ProbeError:
            raise meta_error from None


class ProbeError(UserError):
    """The model, the data and the loss do not fit together."""


def _like(tree: object, device: str) -> object:
    if device == "meta":
        return map_tensors(lambda t: torch.empty_like(t, device="meta"), tree)
    return to_device(tree, torch.device(device))


def _probe(model: ModelDef, n: int, batch: Batch, device: str, refuse_derived: bool
           ) -> tuple[dict[int, Boundary], list[int]]:
    x, side = _like(batch.inputs, device), _like(batch.side, device) if batch.side else None
    bounds: dict[int, Boundary] = {}
    numels = []
    for s in range(n):
        try:
            with torch.device(device):
                module = model.build_stage(s, n)
            module = module.to(device)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's build_stage
            raise ProbeError(f"--model {model.name}: build_stage({s}, {n}) raised "
                             f"{type(exc).__name__}: {_line(exc)}") from None
        numels.append(sum(q.numel() for q in module.parameters() if q.requires_grad))
        try:
            with follow(module, leaves_of(x) + leaves_of(side or {})) as followed:
                out = call_stage(module, x, side)
        except Exception as exc:  # noqa: BLE001 - the user's forward
            what = f"{type(exc).__name__}: {_line(exc)}"
            if s == 0:
                raise ProbeError(f"stage 0 cannot take the data's inputs {describe(x)}: "
                                 f"{what}") from None
            raise ProbeError(f"stage {s - 1}'s output {describe(x)} does not fit stage {s}'s "
                             f"input: {what}") from None
        if refuse_derived and followed.found:
            raise UserError(refusal(s, followed.found))
        if s < n - 1:
            try:
                bounds[s] = Boundary.of(out, s)
            except ValueError as exc:
                raise ProbeError(str(exc)) from None
            x = bounds[s].as_input(detach(out))
            continue
        targets = _like(batch.targets, device)
        try:
            loss = model.loss(out, targets)
        except Exception as exc:  # noqa: BLE001 - the user's loss
            raise ProbeError(f"the loss cannot take the last stage's output {describe(out)} "
                             f"and the targets {describe(targets)}: {type(exc).__name__}: "
                             f"{_line(exc)}") from None
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            got = describe(loss) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ProbeError(f"the loss returns {got}: it must return a scalar tensor (e.g. "
                             "the mean over the micro-batch)")
    return bounds, numels


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def stage_numels(model: ModelDef, num_stages: int) -> list[int]:
    """Parameter count of every stage (built on the meta device)."""
    with torch.device("meta"):
        return [sum(p.numel() for p in model.build_stage(s, num_stages).parameters())
                for s in range(num_stages)]
