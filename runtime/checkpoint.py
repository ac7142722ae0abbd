"""Checkpoints at drain points, written atomically.

Layout of a checkpoint directory DIR:

    DIR/step-00000010/rank0.pt ...   one file per global rank: every stage
                                     replica's weights, version, optimizer
                                     state, stash slots, look-ahead buffer
    DIR/step-00000010/meta.json      written last, by global rank 0, after
                                     every rank's file is durable
    DIR/latest                       the name of the newest complete step dir

Every file is written to a temporary name, fsync'ed and renamed, so a crash
during a save leaves either the old checkpoint or the new one complete; a
step directory without meta.json is ignored. A checkpoint is taken only
between segments, where the pipeline is drained (asynchronous schedules: after
the epilogue; the resumed run starts with the prologue).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from schedc.errors import UserError

from .stage import StageReplica


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_dir(root: Path, steps_done: int) -> Path:
    return root / f"step-{steps_done:08d}"


def save_rank(root: Path, steps_done: int, global_rank: int,
              replicas: dict[tuple[int, int], StageReplica]) -> None:
    d = step_dir(root, steps_done)
    d.mkdir(parents=True, exist_ok=True)
    state = {f"{p}:{s}": r.state_dict() for (p, s), r in replicas.items()}
    _atomic_write(d / f"rank{global_rank}.pt", lambda f: torch.save(state, f))


def commit(root: Path, steps_done: int, meta: dict) -> None:
    """After every rank's save: meta.json, then the `latest` pointer."""
    d = step_dir(root, steps_done)
    body = json.dumps({**meta, "steps_done": steps_done}, indent=1).encode()
    _atomic_write(d / "meta.json", lambda f: f.write(body))
    _atomic_write(root / "latest", lambda f: f.write(d.name.encode()))


def find(path: Path) -> tuple[Path, dict]:
    """The complete checkpoint at `path` (a root with `latest`, or a step dir)."""
    if (path / "latest").exists():
        path = path / (path / "latest").read_text().strip()
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise UserError(f"--resume {path}: no complete checkpoint (no meta.json)")
    return path, json.loads(meta_path.read_text())


def load_rank(step_path: Path, global_rank: int,
              replicas: dict[tuple[int, int], StageReplica]) -> None:
    state = torch.load(step_path / f"rank{global_rank}.pt", weights_only=True)
    for (p, s), replica in replicas.items():
        replica.load_state_dict(state[f"{p}:{s}"])


def check_meta(meta: dict, expected: dict) -> None:
    for key, value in expected.items():
        if meta.get(key) != value:
            raise UserError(
                f"--resume: checkpoint has {key} = {meta.get(key)!r}, this run {value!r}"
            )
