"""Byte-level training data: a deterministic function of (seed, micro-batch).

The corpus is a text file (`--data`) or, by default, the Python standard
library's own .py sources, read in sorted path order (so every rank and every
run sees the same bytes). The last 5% of the corpus is held out for
validation. Micro-batch `mb` of data-parallel replica d is rows
[d*b, (d+1)*b) of a global micro-batch of dp*b windows whose offsets are drawn
from a generator seeded with (seed, mb): every transport, schedule and DP
layout sees identical data, and PP alone with micro-batch size dp*b sees
exactly the union of the DP replicas' micro-batches.
"""

from __future__ import annotations

import functools
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

CORPUS_CAP = 8 << 20  # bytes of stdlib source used by default: ample for tests and demos
VALIDATION_FRACTION = 0.05
MASK_PROB = 0.15


@functools.lru_cache(maxsize=4)
def load_corpus(path: str | None = None, cap: int = CORPUS_CAP) -> torch.Tensor:
    """The corpus as a uint8 tensor [n]."""
    if path is not None:
        data = Path(path).read_bytes()
    else:
        data = _stdlib_bytes(cap)
    if len(data) < 1024:
        raise ValueError(f"corpus {path or 'stdlib'} has only {len(data)} bytes")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _stdlib_bytes(cap: int) -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file()
    )
    chunks, total = [], 0
    for p in sorted(files, key=lambda q: q.relative_to(root).as_posix()):
        try:
            blob = p.read_bytes()
        except OSError:  # unreadable files are skipped, the same on every rank
            continue
        chunks.append(blob)
        total += len(blob)
        if total >= cap:
            break
    return b"".join(chunks)[:cap]


@dataclass(frozen=True)
class Batch:
    """One micro-batch. The built-in data: token ids [b, t] int64 in and out.
    A user's data: any tensor or tuple / list / dict of tensors
    (runtime/boundary.py), and side inputs every stage reads locally."""

    inputs: object  # [b, t] int64 here; a tensor or tree of tensors in general
    targets: object  # [b, t] int64; -100 where no loss (MLM)
    side: dict | None = None  # name -> tensor, passed to every stage as keywords


class Batches:
    """Micro-batches of one data-parallel replica."""

    def __init__(
        self, corpus: torch.Tensor, micro_batch_size: int, seq_len: int, seed: int,
        objective: str = "causal", dp_rank: int = 0, dp_size: int = 1, mask_token: int = 256,
        split: str = "train",
    ) -> None:
        n_val = int(len(corpus) * VALIDATION_FRACTION)
        self.tokens = corpus[: len(corpus) - n_val] if split == "train" else corpus[-n_val:]
        self.b = micro_batch_size
        self.t = seq_len
        self.seed = seed
        self.objective = objective
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.mask_token = mask_token
        self.window = seq_len + 1 if objective == "causal" else seq_len
        if len(self.tokens) <= self.window:
            raise ValueError(f"corpus split {split!r} is shorter than one window")

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few batches, shared by stages on a rank
    def get(self, mb: int) -> Batch:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + mb)
        rows = self.b * self.dp_size
        starts = torch.randint(0, len(self.tokens) - self.window, (rows,), generator=gen)
        idx = starts[:, None] + torch.arange(self.window)  # [rows, window]
        windows = self._take(idx)
        if self.objective == "causal":
            inputs, targets = windows[:, :-1], windows[:, 1:]  # [rows, t] each
        else:
            masked = torch.rand(windows.shape, generator=gen) < MASK_PROB
            inputs = windows.masked_fill(masked, self.mask_token)
            targets = windows.masked_fill(~masked, -100)
        mine = slice(self.dp_rank * self.b, (self.dp_rank + 1) * self.b)
        return Batch(inputs[mine].contiguous(), targets[mine].contiguous())

    def _take(self, idx: torch.Tensor) -> torch.Tensor:
        """tokens[idx] as int64."""
        return self.tokens[idx].long()
