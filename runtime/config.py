"""Run options shared by `python -m schedc.runtime.launch` and `schedc run`.

This module must not import torch: `schedc run`'s argument parser is built
when the compiler-side `schedc` command starts, and `schedc compile` stays
torch-free.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
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
    # sgd | adamw | muon (Muon for hidden 2-D weights, AdamW for embeddings,
    # norms, biases and the output head).
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD's
    muon_momentum: float = 0.95
    # Delay corrections; None: the schedule's (the manifest's Spec) value.
    # Error feedback lambda (0: off).
    error_feedback: float | None = None
    # Look-ahead alpha, a number or "auto" (each stage's max delay); the
    # programs must have been compiled with `lookahead` (they hold LOOKAHEAD).
    lookahead: str | None = None
    # PipeMare warm-up steps K (0: off).
    lr_warmup_by_delay: int | None = None
    micro_batch_size: int = 4
    seq_len: int = 64
    # Training data (runtime/userdata.py): a text file (byte-level), a nanoGPT
    # token file FILE.bin, or `module:function` giving micro-batch j as
    # function(j, seed) -> (inputs, targets[, side]); None: the stdlib sources.
    data: Path | None = None
    # Element type of a .bin token file: uint16 (nanoGPT's) or uint32.
    token_dtype: str = "uint16"
    # Pipeline replicas (data parallel): world size = program ranks x dp.
    dp: int = 1
    # Async-sparse DP (spec dp_mode async-sparse), an average not arrived
    # dp_max_lateness steps after its version: `wait` for it (deterministic) or
    # `drop` it (a slow replica never stalls the others). See runtime/dp_sparse.py.
    dp_late: str = "wait"
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
    # Seconds a rank may wait on one receive or collective before it reports
    # what it waits for and the run stops (docs/reliability.md).
    timeout: float = 300.0
    # NaN/Inf in a loss or gradient: "stop" (with step, stage, micro-batch) or
    # "skip" the step on every stage (synchronous programs).
    on_nan: str = "stop"
    # Batches of sends/receives a rank may hold posted (docs/programs.md, "Overlap"):
    # the programs' manifest says under which K they were proven (`schedc compile
    # --posted-batches K`); None runs them so, another K is refused.
    posted_batches: int | None = None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a run, in the order `--help` lists them."""
    add = parser.add_argument
    add("programs", type=Path, metavar="DIR", help="program directory from `schedc compile`")
    add("--model", default="gpt-tiny", help="built-in model name or module:function")
    add("--loss", default=None, help="loss as module:function (default: the model's)")
    add("--steps", type=int, default=10, help="optimizer steps (body repetitions)")
    add("--seed", type=int, default=0)
    add("--lr", type=float, default=1e-3)
    add("--optimizer", choices=("sgd", "adamw", "muon"), default="adamw",
        help="muon: torch.optim.Muon for hidden 2-D weights, AdamW for the rest")
    add("--weight-decay", type=float, default=0.0)
    add("--momentum", type=float, default=0.0, help="SGD momentum")
    add("--muon-momentum", type=float, default=0.95, help="Muon's momentum")
    add("--error-feedback", type=float, default=None, metavar="L",
        help="error feedback g + L*(g - g_prev) (0: off; default: the schedule's)")
    add("--lookahead", default=None, metavar="A|auto",
        help="look-ahead alpha for programs compiled with lookahead (default: theirs)")
    add("--lr-warmup-by-delay", type=int, default=None, metavar="K",
        help="PipeMare lr warm-up over K steps by stage delay (0: off; default: the schedule's)")
    add("--micro-batch-size", type=int, default=4)
    add("--seq-len", type=int, default=64)
    add("--data", type=Path, default=None, metavar="FILE|FILE.bin|M:F",
        help="text file, nanoGPT token file (.bin), or module:function(j, seed) -> "
             "(inputs, targets[, side]) (default: Python stdlib sources)")
    add("--token-dtype", choices=("uint16", "uint32"), default="uint16",
        help="element type of a .bin token file")
    add("--dp", type=int, default=1, help="data-parallel pipeline replicas")
    add("--dp-late", choices=("wait", "drop"), default="wait",
        help="async-sparse DP: wait for an average at its max lateness, or drop it")
    add("--metrics", type=Path, default=None, help="JSON-lines file: step, loss, ...")
    add("--trace", type=Path, default=None, help="Chrome trace of the run")
    add("--costs-out", type=Path, default=None, help="measured cost profile (docs/costs.md)")
    add("--save-every", type=int, default=0, help="checkpoint every K steps (0: never)")
    add("--save-dir", type=Path, default=None, help="checkpoint directory")
    add("--resume", type=Path, default=None, help="checkpoint directory to resume from")
    add("--threads", type=int, default=0, help="torch threads per rank (0: default)")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--quiet", action="store_true", help="no progress bar")
    add("--timeout", type=float, default=300.0, metavar="S",
        help="seconds a rank may wait on a receive or collective before the run stops")
    add("--on-nan", choices=("stop", "skip"), default="stop",
        help="NaN/Inf in a loss or gradient: stop, or skip the step on every stage")
    add("--posted-batches", type=int, default=None, metavar="K",
        help="the overlap rule the programs were compiled with (`schedc compile "
             "--posted-batches K`; default: the manifest's); another K is refused")


# Caps every run's --steps when set: smoke-testing documented commands as
# written (the docs test sets it; `SCHEDC_MAX_STEPS=5 make demo`).
MAX_STEPS_ENV = "SCHEDC_MAX_STEPS"


def config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in vars(args).items() if k in names})
    _check(cfg)
    return _capped(cfg)


def _capped(cfg: RunConfig) -> RunConfig:
    import os

    from schedc.errors import UserError

    cap = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not cap:
        return cfg
    if not cap.isdigit() or int(cap) < 1:
        raise UserError(f"{MAX_STEPS_ENV}={cap}: must be a positive integer")
    return replace(cfg, steps=min(cfg.steps, int(cap)),
                   save_every=min(cfg.save_every, int(cap)))


def _check(cfg: RunConfig) -> None:
    from schedc.errors import UserError

    for name in ("steps", "micro_batch_size", "seq_len", "dp"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.error_feedback is not None and cfg.error_feedback < 0:
        raise UserError("--error-feedback must be at least 0")
    if cfg.lr_warmup_by_delay is not None and cfg.lr_warmup_by_delay < 0:
        raise UserError("--lr-warmup-by-delay must be at least 0")
    if cfg.lookahead is not None and cfg.lookahead != "auto":
        try:
            float(cfg.lookahead)
        except ValueError:
            raise UserError(f"--lookahead {cfg.lookahead}: a number or auto") from None
    if cfg.posted_batches is not None and cfg.posted_batches < 1:
        raise UserError("--posted-batches must be at least 1")
    if not cfg.timeout > 0:
        raise UserError("--timeout must be a positive number of seconds")
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
