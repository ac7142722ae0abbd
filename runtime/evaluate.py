"""Validation loss of a trained in-process session, on the held-out slice.

    session = build_local(cfg); train(session)
    val = validation_loss(session, batches=16)

The forward runs stage by stage with every stage's current (master) weights
of pipeline 0 (replicas of a stage in other pipelines hold the same weights:
their gradients are all-reduced), on micro-batches of the last 5% of the
corpus (`Batches(split="val")`), the same ones for every schedule and
optimizer: a deterministic function of (seed, index).
"""

from __future__ import annotations

import torch

from .data import Batches, load_corpus
from .models import resolve_model

__all__ = ["validation_loss"]

VAL_SEED = 12345  # fixed: every run is scored on the same held-out windows


@torch.no_grad()
def validation_loss(session, batches: int = 16, seed: int = VAL_SEED) -> float:
    """Mean loss over `batches` held-out micro-batches (in-process sessions)."""
    cfg = session.cfg
    replicas = {}
    for interp in session.interps.values():
        for (p, s), replica in interp.replicas.items():
            if p == 0:
                replicas[s] = replica
    stages = session.manifest.num_stages
    if sorted(replicas) != list(range(stages)):
        raise ValueError("validation_loss needs every stage in this process (in-process run)")
    model = resolve_model(cfg.model, cfg.loss)
    corpus = load_corpus(None if cfg.data is None else str(cfg.data))
    data = Batches(corpus, cfg.micro_batch_size, cfg.seq_len, seed, model.objective,
                   mask_token=model.mask_token, split="val")
    for s in range(stages):
        replicas[s].point_at(replicas[s].version)  # the master weights
    device = replicas[0].current.device
    total = 0.0
    for j in range(batches):
        batch = data.get(j)
        x = batch.inputs.to(device)  # [b, t] tokens
        for s in range(stages):
            x = replicas[s].module(x)
        total += float(model.loss(x, batch.targets.to(device)))
    return total / batches
