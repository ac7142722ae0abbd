"""Where a run starts, and surviving a dead rank: `--save-dir DIR` resumes by itself.

    schedc run out/1f1b --steps 20 --save-every 5 --save-dir ck    # dies at step 12
    schedc run out/1f1b --steps 20 --save-every 5 --save-dir ck    # same line: resumes at 10
    torchrun --max-restarts 3 --nproc-per-node 4 -m schedc.runtime.launch out/1f1b \\
        --steps 20 --save-every 5 --save-dir ck                    # restarts resume by themselves
    schedc run out/1f1b --steps 20 --save-every 5 --save-dir ck --max-restarts 3

Where a run starts (`locate`):

- `--resume DIR`: DIR's newest valid checkpoint (or one step directory named
  directly); none is an error (the user asked for it).
- else `--save-dir DIR` holding a valid checkpoint: the newest valid one. Step
  directories but none valid (a save killed before the first checkpoint was
  complete): from step 0, with a line saying so.
- else: from step 0.

A resume prints one line (global rank 0): the step directory, the steps done,
and the newer step directories it skipped with the reason. The checkpoint
records what the run must agree on (`setup.prepare`'s meta): `--save-every`
not given is taken from it; any other difference is refused with the flag
and the value to pass (`reconcile`). Steps done equal to `--steps`: one line,
nothing to run, exit 0 (a job killed after its last checkpoint); above
`--steps`: refused with what to pass.

A resumed run equals an uninterrupted one bit for bit (checkpoints are taken
at drain points, every segment after them is re-run from the same state and
data); the metrics file is cut back to the steps before the checkpoint
(`trim_metrics`), so no step is logged twice or lost.

Under torchrun restarts, see `restarts.py` for what happens when a rank keeps
dying.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from schedc.errors import UserError

from . import checkpoint
from .config import RunConfig

# Checkpoint meta key -> the flag that sets it.
FLAGS = {"model": "--model", "optimizer": "--optimizer", "micro_batch_size": "--micro-batch-size",
         "seq_len": "--seq-len", "seed": "--seed", "dp": "--dp", "save_every": "--save-every"}


@dataclass(frozen=True)
class Found:
    """A checkpoint to resume from."""

    path: Path  # the step directory
    meta: dict
    refused: tuple[str, ...]  # newer step directories skipped, with the reason
    flag: str  # "--resume" or "--save-dir"


def locate(cfg: RunConfig, say=None) -> Found | None:
    """The checkpoint this run continues from, or None (from step 0)."""
    if cfg.resume is not None:
        path, meta, refused = checkpoint.resolve(Path(cfg.resume))
        return Found(path, meta, tuple(refused), "--resume")
    if cfg.save_dir is None or not Path(cfg.save_dir).is_dir():
        return None
    path, meta, refused = checkpoint.newest_valid(Path(cfg.save_dir))
    if path is None:
        if refused and say is not None:
            say(f"schedc: --save-dir {cfg.save_dir} holds no valid checkpoint "
                f"({'; '.join(refused)}); starting from step 0")
        return None
    return Found(path, meta, tuple(refused), "--save-dir")


def announce(found: Found, steps: int) -> str:
    """The one line a resume prints."""
    done = found.meta["steps_done"]
    why = "the newest valid checkpoint"
    if found.refused:
        why += "; refused newer: " + "; ".join(found.refused)
    return f"schedc: resuming from {found.path} ({done} of {steps} steps done; {why})"


def reconcile(found: Found, cfg: RunConfig, expected: dict) -> RunConfig:
    """`cfg` with what the checkpoint decides (--save-every when not given);
    UserError naming the flag that differs and the value to pass."""
    meta = found.meta
    if cfg.save_every == 0 and meta.get("save_every"):
        cfg = replace(cfg, save_every=meta["save_every"])
        expected = {**expected, "save_every": cfg.save_every}
    where = f"{found.flag} {found.path.parent if found.flag == '--save-dir' else found.path}"
    head = f"{where}: checkpoint {found.path.name} was saved"
    tail = "to continue it, or another --save-dir to start a new run"
    programs_first = ("spec_hash", "programs_hash")
    for key in sorted({*expected, "optimizer_options"}, key=lambda k: (k not in programs_first, k)):
        saved, value = meta.get(key), expected.get(key)
        if saved == value:
            continue
        if key in FLAGS:
            flag = FLAGS[key]
            also = " (or leave it out)" if key == "save_every" else ""
            raise UserError(f"{head} with {flag} {saved}, this run has {flag} {value}: "
                            f"pass {flag} {saved}{also} {tail}")
        if key == "optimizer_options":
            do = f"pass {_option_flags(saved)}" if saved else f"leave out {_option_flags(value)}"
            raise UserError(f"{head} with optimizer options {_option_flags(saved)}, this run "
                            f"has {_option_flags(value)}: {do} {tail}")
        raise UserError(f"{head} by other programs ({key} differs): pass the program "
                        f"directory it was saved with {tail}")
    return cfg


def _option_flags(options: dict | None) -> str:
    if not options:
        return "(the defaults)"
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(options.items()))


def check_steps(found: Found, steps: int) -> bool:
    """True when nothing is left to run (steps done == --steps); refuses fewer."""
    done = found.meta["steps_done"]
    if done > steps:
        raise UserError(f"--steps {steps}: checkpoint {found.path} has {done} steps done "
                        f"already; pass --steps above {done} to train further, or another "
                        "--save-dir to start a new run")
    return done == steps


def nothing_left_line(found: Found) -> str:
    done = found.meta["steps_done"]
    return (f"schedc: checkpoint {found.path} has all {done} steps done; nothing to run "
            f"(pass --steps above {done} to train further)")


def trim_metrics(path: Path, first_step: int) -> None:
    """Keep the metrics lines of steps before `first_step` (written before the
    checkpoint); drop later ones and a line cut short by a kill."""
    if not path.exists():
        return
    kept = []
    for text in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            break
        if not isinstance(line, dict) or line.get("step") != len(kept) \
                or len(kept) >= first_step:
            break
        kept.append(text + "\n")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
