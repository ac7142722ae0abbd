"""Helpers for the data-parallel tests: async-sparse program directories, one
torchrun launch for several jobs, and the parameter-averaging reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from launching import torchrun_jobs

from schedc.compiler import compile_spec
from schedc.errors import VerifyError
from schedc.files import write_programs
from schedc.presets import preset_spec

HERE = Path(__file__).parent
BASE = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16",
        "--threads", "1", "--quiet", "--lr", "0.01"]


def compile_dp(directory: Path, preset: str, *, fraction: float = 1.0, period: int = 1,
               lateness: int = 0, beta: float = 0.9, stages: int = 2, microbatches: int = 2,
               ranks: int | None = None) -> Path:
    kw = dict(stages=stages, microbatches=microbatches, dp_mode="async-sparse",
              dp_fraction=fraction, dp_period=period, dp_max_lateness=lateness, dp_beta=beta)
    if ranks is not None:
        kw["ranks"] = ranks
    try:
        compiled = compile_spec(preset_spec(preset, **kw).validate())
    except VerifyError as exc:  # a compile error fails the test that needs the programs
        pytest.fail(f"{preset} {kw} does not compile: {exc.render()}")
    directory.mkdir(parents=True, exist_ok=True)
    write_programs(directory, compiled.manifest, compiled.programs)
    return directory


@dataclass
class DpResult:
    losses: list[float] = field(default_factory=list)
    weights: dict[tuple[int, int, int], torch.Tensor] = field(default_factory=dict)
    versions: dict[tuple[int, int, int], int] = field(default_factory=dict)
    stats: dict[int, object] = field(default_factory=dict)  # global rank -> DpStats
    step_times: dict[int, list[float]] = field(default_factory=dict)
    sums: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # sync DP
    dp_index: dict[int, int] = field(default_factory=dict)


def run_dp(jobs: dict[str, list[str]], nproc: int, out: Path,
           env: dict[str, str] | None = None) -> dict[str, DpResult]:
    torchrun_jobs(HERE / "dp_worker.py", {k: [*BASE, *v] for k, v in jobs.items()}, nproc, out,
                  env=env, timeout=900)
    results = {}
    for name in jobs:
        res = DpResult()
        for path in sorted((out / name).glob("rank*.pt")):
            g = int(path.stem[4:])
            part = torch.load(path, weights_only=False)
            res.losses = part["losses"] or res.losses
            res.weights.update(part["weights"])
            res.versions.update(part["versions"])
            res.stats[g] = part["stats"]
            res.step_times[g] = part["step_times"]
            res.sums[g] = part["sums"]
            res.dp_index[g] = part["dp_index"]
        results[name] = res
    return results


def reference_parameter_averaging(program_dir: Path, steps: int, dp: int,
                                  *extra: str) -> tuple[list[float], list[dict[int, torch.Tensor]]]:
    """The definition async-sparse DP with rho = 1, k = 1, tau = 0 must meet.

    D whole models (replica d starts equal, as every replica of a stage does),
    each with its own torch.optim optimizer and its own micro-batches (rows
    [d*b, (d+1)*b) of each window, the runtime's data split). Every step: each
    replica accumulates its micro-batches' gradients, divides by their count
    and steps on them alone; then every parameter is replaced by the mean over
    replicas, computed as (x_0 + x_1 + ...) * (1 / D). Optimizer state is not
    averaged. The loss of a step is the mean over (micro-batch, replica) in
    that order, as the metrics file's.

    Returns the losses and, per replica, stage -> flat weights.
    """
    from schedc.runtime.build import build_stage_module
    from schedc.runtime.setup import make_batches

    cfg, p = _prepared(program_dir, dp, extra)
    S = p.manifest.num_stages
    m = p.manifest.period.microbatches // p.manifest.period.steps
    models, opts, batches = [], [], []
    for d in range(dp):
        mods = [build_stage_module(p.model, s, S, cfg.seed, torch.device("cpu"))
                for s in range(S)]
        params = [q for mod in mods for q in mod.parameters()]
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, foreach=False)
        else:
            opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, foreach=False)
        models.append(mods)
        opts.append(opt)
        batches.append(make_batches(p, d))
    losses = []
    for step in range(steps):
        parts = {}
        for d in range(dp):
            for mb in range(step * m, (step + 1) * m):
                batch = batches[d].get(mb)
                x = batch.inputs
                for mod in models[d]:
                    x = mod(x)
                loss = p.model.loss(x, batch.targets)
                loss.backward()
                parts[(mb, d)] = float(loss.detach())
            for mod in models[d]:
                for q in mod.parameters():
                    q.grad.div_(m)
            opts[d].step()
            opts[d].zero_grad(set_to_none=True)
        with torch.no_grad():
            for s in range(S):
                for qs in zip(*(models[d][s].parameters() for d in range(dp)), strict=True):
                    total = qs[0].clone()
                    for q in qs[1:]:
                        total.add_(q)
                    mean = total.mul_(1.0 / dp)
                    for q in qs:
                        q.copy_(mean)
        total = 0.0
        for key in sorted(parts):
            total += parts[key]
        losses.append(total / len(parts))
    weights = [{s: torch.cat([q.detach().reshape(-1) for q in models[d][s].parameters()])
                for s in range(S)} for d in range(dp)]
    return losses, weights


def reference_sync_dp(program_dir: Path, steps: int, dp: int,
                      *extra: str) -> tuple[list[float], dict[int, torch.Tensor]]:
    """Synchronous data parallelism, as the runtime defines it, in one process.

    One model (every replica holds the same weights). Every step: replica d
    sums its micro-batches' gradients in micro-batch order (its rows of each
    window); the replicas' sums are added in rank order, (g_0 + g_1) + g_2 ...,
    divided by micro-batches x replicas, and torch.optim steps once. Summing in
    any other order changes the last bits with three or more replicas.
    Returns the losses and stage -> flat weights.
    """
    from schedc.runtime.build import build_stage_module
    from schedc.runtime.setup import make_batches

    cfg, p = _prepared(program_dir, dp, extra)
    S = p.manifest.num_stages
    m = p.manifest.period.microbatches
    mods = [build_stage_module(p.model, s, S, cfg.seed, torch.device("cpu")) for s in range(S)]
    params = [q for mod in mods for q in mod.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, foreach=False)
    batches = [make_batches(p, d) for d in range(dp)]
    losses = []
    for step in range(steps):
        parts, sums = {}, []
        for d in range(dp):
            for mb in range(step * m, (step + 1) * m):
                batch = batches[d].get(mb)
                x = batch.inputs
                for mod in mods:
                    x = mod(x)
                loss = p.model.loss(x, batch.targets)
                loss.backward()
                parts[(mb, d)] = float(loss.detach())
            sums.append([q.grad.clone() for q in params])
            opt.zero_grad(set_to_none=True)
        for i, q in enumerate(params):
            total = sums[0][i].clone()
            for d in range(1, dp):
                total.add_(sums[d][i])
            q.grad = total.div_(m * dp)
        opt.step()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for key in sorted(parts):
            total += parts[key]
        losses.append(total / len(parts))
    return losses, {s: torch.cat([q.detach().reshape(-1) for q in mods[s].parameters()])
                    for s in range(S)}


def _prepared(program_dir: Path, dp: int, extra: tuple[str, ...]) -> tuple:
    """The run configuration and prepared run of an in-process reference."""
    import argparse

    from schedc.runtime.config import add_run_arguments, config_from_args
    from schedc.runtime.setup import prepare

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    cfg = config_from_args(parser.parse_args([str(program_dir), *BASE, "--dp", str(dp), *extra]))
    return cfg, prepare(cfg)
