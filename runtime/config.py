"""Run options shared by `python -m schedc.runtime.launch` and `schedc run`.

This module must not import torch: `schedc run`'s argument parser is built
when the compiler-side `schedc` command starts, and `schedc compile` stays
torch-free.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class RunConfig:
    # Program directory written by `schedc compile`.
    programs: Path
    # Built-in model name (gpt-tiny, bert-tiny, ...) or `module:function`, a
    # `build_stage(stage_index, num_stages) -> nn.Module` of the user's.
    model: str = "gpt-tiny"
    # Loss as `module:function(output, targets) -> scalar`; None: the model's.
    loss: str | None = None
    # Optimizer steps = body repetitions of the program.
    steps: int = 10
    seed: int = 0
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0
    micro_batch_size: int = 4
    seq_len: int = 64
    # Text file for byte-level training data; None: the Python stdlib sources.
    data: Path | None = None
    # Pipeline replicas (data parallel): world size = program ranks x dp.
    dp: int = 1
    metrics: Path | None = None
    trace: Path | None = None
    costs_out: Path | None = None
    save_every: int = 0
    save_dir: Path | None = None
    resume: Path | None = None
    # Torch intra-op threads per rank (0: leave torch's default).
    threads: int = 0
    device: str = "auto"
    quiet: bool = False


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a run, in the order `--help` lists them."""
    add = parser.add_argument
    add("programs", type=Path, metavar="DIR", help="program directory from `schedc compile`")
    add("--model", default="gpt-tiny", help="built-in model name or module:function")
    add("--loss", default=None, help="loss as module:function (default: the model's)")
    add("--steps", type=int, default=10, help="optimizer steps (body repetitions)")
    add("--seed", type=int, default=0)
    add("--lr", type=float, default=1e-3)
    add("--optimizer", choices=("sgd", "adamw"), default="adamw")
    add("--weight-decay", type=float, default=0.0)
    add("--momentum", type=float, default=0.0, help="SGD momentum")
    add("--micro-batch-size", type=int, default=4)
    add("--seq-len", type=int, default=64)
    add("--data", type=Path, default=None, help="text file (default: Python stdlib sources)")
    add("--dp", type=int, default=1, help="data-parallel pipeline replicas")
    add("--metrics", type=Path, default=None, help="JSON-lines file: step, loss, ...")
    add("--trace", type=Path, default=None, help="Chrome trace of the run")
    add("--costs-out", type=Path, default=None, help="measured cost profile (docs/costs.md)")
    add("--save-every", type=int, default=0, help="checkpoint every K steps (0: never)")
    add("--save-dir", type=Path, default=None, help="checkpoint directory")
    add("--resume", type=Path, default=None, help="checkpoint directory to resume from")
    add("--threads", type=int, default=0, help="torch threads per rank (0: default)")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in vars(args).items() if k in names})
    _check(cfg)
    return cfg


def _check(cfg: RunConfig) -> None:
    from schedc.errors import UserError

    for name in ("steps", "micro_batch_size", "seq_len", "dp"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.save_every < 0:
        raise UserError("--save-every must be at least 0")
    if cfg.save_every and cfg.save_dir is None and cfg.resume is None:
        raise UserError("--save-every needs --save-dir (or --resume)")


def to_argv(cfg: RunConfig) -> list[str]:
    """The command-line form of `cfg` (to hand a run on to torchrun)."""
    argv = [str(cfg.programs)]
    default = RunConfig(programs=cfg.programs)
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        if f.name == "programs" or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv
