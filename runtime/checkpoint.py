"""Checkpoints at drain points: atomic, checksummed, and never the only copy.

Layout of a checkpoint directory DIR:

    DIR/step-00000010/rank0.pt ...      one file per global rank: every stage
                                        replica's weights, version, optimizer
                                        state, stash slots, look-ahead buffer
    DIR/step-00000010/rank0.pt.sha256   its checksum, written after it
    DIR/step-00000010/meta.json         written last, by global rank 0, after
                                        every rank's file is durable: the run's
                                        description, every rank file's sha256,
                                        and a checksum of meta.json itself
    DIR/latest                          the name of the newest complete step dir

Every file is written to a temporary name, fsync'ed and renamed, and its
directory fsync'ed. Saving never deletes an older step directory, so a crash
during a save leaves the previous checkpoint whole. Resuming (`find`) takes
the newest step directory that is *valid*: meta.json present, parseable and
matching its checksum, every rank file present with the recorded sha256. A
corrupted, truncated or partial checkpoint is refused with a message naming
the file, and the next older valid one is used (`latest` is for people).
A checkpoint is taken only between segments, where the pipeline is drained
(asynchronous schedules: after the epilogue; the resumed run starts with the
prologue).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import torch

from schedc.errors import UserError

from .faults import injected
from .stage import StageReplica

STEP_PREFIX = "step-"


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(blob)
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


def _sha(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def step_dir(root: Path, steps_done: int) -> Path:
    return root / f"{STEP_PREFIX}{steps_done:08d}"


def save_rank(root: Path, steps_done: int, global_rank: int,
              replicas: dict[tuple[int, int], StageReplica]) -> None:
    d = step_dir(root, steps_done)
    d.mkdir(parents=True, exist_ok=True)
    state = {f"{p}:{s}": r.state_dict() for (p, s), r in replicas.items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    blob = buf.getvalue()
    name = f"rank{global_rank}.pt"
    if injected("die-in-save", steps_done) or injected("die-in-save", steps_done, global_rank):
        # a crash half-way through the write (every rank, or rank G of die-in-save@STEPS:G)
        with open(d / name, "wb") as f:
            f.write(blob[: len(blob) // 2])
        os._exit(137)
    _atomic_write(d / name, blob)
    _atomic_write(d / f"{name}.sha256", _sha(blob).encode())


def _meta_checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return _sha(json.dumps(body, sort_keys=True).encode())


def commit(root: Path, steps_done: int, meta: dict, world: int = 1) -> None:
    """After every rank's save (`world` rank files): meta.json, then `latest`."""
    d = step_dir(root, steps_done)
    files = {}
    for g in range(world):
        side = d / f"rank{g}.pt.sha256"
        if not side.exists():
            raise UserError(f"checkpoint {d}: rank{g}.pt was not saved")
        files[f"rank{g}.pt"] = side.read_text().strip()
    meta = {**meta, "steps_done": steps_done, "files": files}
    meta["checksum"] = _meta_checksum(meta)
    _atomic_write(d / "meta.json", json.dumps(meta, indent=1).encode())
    _atomic_write(root / "latest", d.name.encode())


def validate(step_path: Path) -> dict:
    """meta of a complete, intact checkpoint; UserError naming what is wrong."""
    meta_path = step_path / "meta.json"
    if not meta_path.exists():
        raise UserError(f"{meta_path}: missing (the save did not complete)")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("checksum") != _meta_checksum(meta):
        raise UserError(f"{meta_path}: field 'checksum' does not match (corrupted)")
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise UserError(f"{meta_path}: field 'files' is missing")
    for name, digest in sorted(files.items()):
        path = step_path / name
        if not path.exists():
            raise UserError(f"{path}: missing (partial checkpoint)")
        if _sha_file(path) != digest:
            raise UserError(f"{path}: sha256 does not match meta.json (corrupted or truncated)")
    return meta


def _candidates(root: Path) -> list[Path]:
    """Step directories, newest first. `latest` is not consulted: a crash between
    meta.json and `latest` leaves a newer valid checkpoint than it names."""
    return sorted((d for d in root.glob(f"{STEP_PREFIX}*") if d.is_dir()),
                  key=lambda d: d.name, reverse=True)


def newest_valid(root: Path) -> tuple[Path | None, dict | None, list[str]]:
    """(step dir, meta) of the newest valid checkpoint under `root` (None, None
    when there is none), and why each newer step directory was refused."""
    refused = []
    for d in _candidates(root):
        try:
            return d, validate(d), refused
        except UserError as exc:
            refused.append(str(exc))
    return None, None, refused


def resolve(path: Path) -> tuple[Path, dict, list[str]]:
    """(step dir, meta, why each newer step dir was refused) of the newest valid
    checkpoint at `path` (a root of step dirs, or one step dir: that one or an
    error, no silent fallback); UserError when there is none."""
    if (path / "meta.json").exists() or path.name.startswith(STEP_PREFIX):
        try:
            return path, validate(path), []
        except UserError as exc:
            raise UserError(f"--resume {path}: refused: {exc}") from None
    d, meta, refused = newest_valid(path)
    if d is None:
        detail = ("; ".join(refused)) if refused else "no checkpoint in it"
        raise UserError(f"--resume {path}: no valid checkpoint ({detail})")
    return d, meta, refused


def find(path: Path, warn=None) -> tuple[Path, dict]:
    """The newest valid checkpoint at `path` (see `resolve`); each newer invalid
    one is named through `warn` (default stderr)."""
    warn = warn or (lambda text: print(f"schedc: warning: {text}", file=sys.stderr))
    d, meta, refused = resolve(path)
    for reason in refused:
        warn(f"checkpoint refused: {reason}; resuming from {d.name}")
    return d, meta


def load_rank(step_path: Path, global_rank: int,
              replicas: dict[tuple[int, int], StageReplica]) -> None:
    path = step_path / f"rank{global_rank}.pt"
    try:
        state = torch.load(path, weights_only=True)
        for (p, s), replica in replicas.items():
            replica.load_state_dict(state[f"{p}:{s}"])
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the checkpoint was saved by fewer ranks)") from None
    except KeyError as exc:
        raise UserError(f"{path}: holds no stage replica {exc} (saved by other programs)") \
            from None
