"""Restarts under torchrun: `schedc run --max-restarts N`, and its last line.

    schedc run out/1f1b --steps 20 --save-every 5 --save-dir ck --max-restarts 3

starts `torchrun --max-restarts 3`: when a rank dies, torchrun stops every
process of the job and starts them again, and each one resumes from the
newest valid checkpoint in --save-dir (`autoresume.py`). A rank that keeps
dying at the same step (a deterministic crash) fails every attempt; after N
restarts torchrun gives up, and `schedc run` prints one line naming the step
and the cause:

    schedc: error: gave up after --max-restarts 2: every one of 3 attempts died at
    step 13: [rank 1] rank 1, instruction 53 (F s1 mb50 v12): NumericalFault: ...

The cause comes from `DIR/failures.jsonl`: under torchrun
(`TORCHELASTIC_RESTART_COUNT` set), a rank whose training fails appends one
line (attempt, global rank, step, exit code, message). A rank that only saw
another one go (a closed connection, a timeout) is an echo; the cause is the
rank that failed by itself, or, when every rank of an attempt is an echo (the
one that failed was killed and wrote nothing), the earliest echo.

Torch-free: `schedc run` imports it before deciding to start torchrun.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from schedc.errors import UserError

from .config import RunConfig

FAILURES = "failures.jsonl"


def restart_options(cfg: RunConfig, max_restarts: int, local: bool) -> list[str]:
    """torchrun's options for `--max-restarts N` (refused where it cannot work)."""
    if max_restarts < 0:
        raise UserError("--max-restarts must be at least 0")
    if not max_restarts:
        return []
    if local:
        raise UserError("--max-restarts restarts torchrun's processes: leave out --local")
    if cfg.save_dir is None:
        raise UserError("--max-restarts needs --save-dir DIR (and --save-every K): a "
                        "restarted job resumes from DIR's newest checkpoint")
    return [f"--max-restarts={max_restarts}"]


def attempt() -> int | None:
    """torchrun's restart count, or None outside torchrun."""
    value = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    return int(value) if value is not None and value.isdigit() else None


def record_failure(save_dir: Path | None, global_rank: int, step: int | None, code: int,
                   message: str) -> None:
    """Append this rank's failure to DIR/failures.jsonl (under torchrun only)."""
    if save_dir is None or attempt() is None:
        return
    line = {"attempt": attempt(), "rank": global_rank, "step": step, "code": code,
            "error": message}
    try:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(save_dir) / FAILURES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:  # reporting must never hide the failure itself
        pass


def failures_mark(save_dir: Path | None) -> int:
    """Bytes of DIR/failures.jsonl now: `give_up_line` reads what comes after."""
    path = Path(save_dir or ".") / FAILURES
    return path.stat().st_size if save_dir is not None and path.exists() else 0


def _is_echo(error: str) -> bool:
    """A rank that only saw another one go (closed connection, timeout)."""
    return any(s in error for s in ("Connection closed", "Connection reset", "timeout:",
                                    "Broken pipe", "no progress for"))


def give_up_line(save_dir: Path | None, mark: int, max_restarts: int) -> tuple[str, int] | None:
    """(one line naming the step and the cause, exit code) after torchrun gave
    up, from the failures this job recorded; None when it recorded none."""
    if save_dir is None or not (Path(save_dir) / FAILURES).exists():
        return None
    with open(Path(save_dir) / FAILURES, "rb") as f:
        f.seek(mark)
        rows = []
        for text in f.read().decode(errors="replace").splitlines():
            try:
                rows.append(json.loads(text))
            except ValueError:
                continue
    if not rows:
        return None
    last = max(r["attempt"] for r in rows)
    attempts = {a: [r for r in rows if r["attempt"] == a] for a in sorted({r["attempt"]
                                                                             for r in rows})}

    def cause(rs: list[dict]) -> dict:
        own = [r for r in rs if not _is_echo(r["error"])]
        return min(own or rs, key=lambda r: (-1 if r["step"] is None else r["step"], r["rank"]))

    root = cause(attempts[last])
    steps = {cause(rs)["step"] for rs in attempts.values()}
    n = len(attempts)
    at = "at start-up" if root["step"] is None else f"at step {root['step']}"
    if len(steps) == 1 and n > 1:
        what = f"every one of {n} attempts died {at}"
    else:
        what = f"the last attempt died {at}"
    line = (f"schedc: error: gave up after --max-restarts {max_restarts}: {what}: "
            f"[rank {root['rank']}] {root['error']}")
    return line, root["code"]


def attempt_store(timeout: float):
    """The store this attempt's process group meets on, or None (env:// as usual).

    torchrun's c10d rendezvous keeps one TCPStore for the whole job (its agent
    hosts it) and every attempt's processes join it with the same keys, so a
    restarted rank would read the dead one's addresses and fail to connect
    (pytorch/pytorch#135712). Each attempt gets its own key prefix here.
    """
    n = attempt()
    if n is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          int(os.environ["WORLD_SIZE"]), is_master=False,
                          timeout=timedelta(seconds=timeout))
    return dist.PrefixStore(f"schedc/attempt-{n}", store)
