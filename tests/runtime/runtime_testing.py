"""Helpers for the runtime tests: compile presets to program directories, run
them in-process or under torchrun (gloo, CPU), and plain reference training."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import torch
from launching import torchrun_jobs
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.local import build_local
from schedc.runtime.session import train

from schedc.compiler import compile_spec
from schedc.errors import VerifyError
from schedc.overlap import Overlap
from schedc.presets import preset_spec
from schedc.verify import prove_overlap

HERE = Path(__file__).parent
# Tiny and fast: d=32, 4 layers, 2 x 16 tokens per micro-batch, one thread.
BASE = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16",
        "--threads", "1", "--quiet", "--lr", "0.01"]


def write_programs(directory: Path, compiled) -> Path:
    try:
        from schedc.files import write_programs as write
    except ImportError:
        write = None
    directory.mkdir(parents=True, exist_ok=True)
    if write is not None:
        write(directory, compiled.manifest, compiled.programs)
        return directory
    (directory / "manifest.json").write_text(json.dumps(compiled.manifest.to_dict()))
    for p in compiled.programs:
        (directory / f"rank{p.rank}.json").write_text(json.dumps(p.to_dict()))
    return directory


def compile_preset(directory: Path, name: str, stages: int, microbatches: int,
                   ranks: int | None = None, posted_batches: int = 1) -> Path:
    """`posted_batches`: proven under that overlap rule (`schedc compile --posted-batches`)."""
    kw = {"stages": stages, "microbatches": microbatches}
    if ranks is not None:
        kw["ranks"] = ranks
    try:
        compiled = compile_spec(preset_spec(name, **kw).validate())
        compiled = replace(compiled, manifest=prove_overlap(
            compiled.manifest, compiled.programs, Overlap.posting(posted_batches)))
    except VerifyError as exc:  # a compile error fails the test that needs the programs
        pytest.fail(f"{name} {kw} does not compile: {exc.render()}")
    return write_programs(directory, compiled)


def config(program_dir: Path, *extra: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return config_from_args(parser.parse_args([str(program_dir), *BASE, *extra]))


@dataclass
class Result:
    losses: list[float] = field(default_factory=list)
    weights: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    versions: dict[tuple[int, int], int] = field(default_factory=dict)
    reads: list[tuple] = field(default_factory=list)  # (op, pipeline, stage, mb, version)


def collect(session, lines) -> Result:
    res = Result(losses=[line["loss"] for line in lines])
    for interp in session.interps.values():
        res.reads.extend(interp.record.reads)
        for key, replica in interp.replicas.items():
            res.weights[key] = replica.current.detach().clone()
            res.versions[key] = replica.version
    return res


def run_inprocess(program_dir: Path, *extra: str) -> Result:
    torch.set_num_threads(1)
    session = build_local(config(program_dir, *extra))
    return collect(session, train(session))


def run_torchrun(jobs: dict[str, list[str]], nproc: int, out: Path) -> dict[str, Result]:
    """Run every job in one torchrun launch (one process group, jobs in order)."""
    torchrun_jobs(HERE / "dist_worker.py", {k: [*BASE, *v] for k, v in jobs.items()}, nproc, out)
    results = {}
    for name in jobs:
        res = Result()
        for path in sorted((out / name).glob("rank*.pt")):
            part = torch.load(path, weights_only=False)
            res.losses = part["losses"] or res.losses
            res.weights.update(part["weights"])
            res.versions.update(part["versions"])
            res.reads.extend(part["reads"])
        results[name] = res
    return results


def assert_same(a: Result, b: Result) -> None:
    """Bitwise: losses and every replica's final weights."""
    assert a.losses == b.losses
    assert a.weights.keys() == b.weights.keys()
    for key in a.weights:
        assert torch.equal(a.weights[key], b.weights[key]), f"weights of {key} differ"
    assert a.versions == b.versions
    assert sorted(a.reads) == sorted(b.reads)


def reference_training(program_dir: Path, steps: int, *extra: str) -> Result:
    """Plain single-process training: the whole model, torch.optim, the same
    micro-batches, gradients summed over the step's micro-batches then divided
    by their count (as the runtime's ACC and STEP do)."""
    from schedc.runtime.build import build_stage_module
    from schedc.runtime.setup import make_batches, prepare

    torch.set_num_threads(1)
    cfg = config(program_dir, *extra)
    p = prepare(cfg)
    num_stages, m = p.manifest.num_stages, p.manifest.period.microbatches
    modules = [build_stage_module(p.model, s, num_stages, cfg.seed, torch.device("cpu"))
               for s in range(num_stages)]
    params = [q for mod in modules for q in mod.parameters()]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, foreach=False)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, foreach=False)
    batches = make_batches(p, 0)

    def micro_batch_loss(mb: int) -> torch.Tensor:
        batch = batches.get(mb)
        x = batch.inputs
        for mod in modules:
            x = mod(x)
        return p.model.loss(x, batch.targets)

    return train_plainly(modules, opt, micro_batch_loss, steps, m)


def train_plainly(modules: list, opt, micro_batch_loss, steps: int, m: int) -> Result:
    """Plain training: per step, the backward of `m` micro-batch losses, their
    gradients summed then divided by m, one optimizer step."""
    params = [q for mod in modules for q in mod.parameters()]
    res = Result()
    for step in range(steps):
        total = 0.0
        for mb in range(step * m, (step + 1) * m):
            loss = micro_batch_loss(mb)
            loss.backward()
            total += float(loss.detach())
        for q in params:
            q.grad.div_(m)
        opt.step()
        opt.zero_grad(set_to_none=True)
        res.losses.append(total / m)
    for s, mod in enumerate(modules):
        res.weights[(0, s)] = torch.cat([q.detach().reshape(-1) for q in mod.parameters()])
    return res
