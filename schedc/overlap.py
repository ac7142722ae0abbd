"""The overlap rule: how many batches of sends and receives a rank may hold
posted, and whether it posts receives ahead (docs/programs.md, "Overlap").

One value, part of the program contract: the manifest's `overlap` field says
under which rule the verifier proved the programs deadlock-free, the replay
core (`schedc.replay`) executes exactly that rule for the verifier and the
simulator, and the runtime (`runtime/transport.py`, `runtime/interpreter.py`)
follows it. A manifest without the field was proven under the default,
K = 1 (every batch waited for whole).

Under `posted_batches` K and `early_receives`:

- a rank reaching batch i posts what of it is not posted yet and waits for
  the batch's receives; with K = 1 for its sends too;
- K > 1: its sends complete in the background; once more than K - 1 batches
  holding sends are outstanding (this one included), it waits for the oldest
  one's sends, and for all of them before a collective and at the end of its
  stream;
- early receives (K > 1 only): having finished batch i, it posts the
  receives of batch i + 1 at once, before the instructions between them,
  unless an ALLREDUCE or the end of the stream comes first. So at most K
  batches are posted in all: K - 1 with sends, and one posted ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Overlap", "DEFAULT"]


@dataclass(frozen=True)
class Overlap:
    """The rule a program set was proven under."""

    posted_batches: int = 1
    early_receives: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.posted_batches, bool) or not isinstance(self.posted_batches, int) \
                or self.posted_batches < 1:
            raise ValueError(f"posted_batches must be an integer of at least 1, got "
                             f"{self.posted_batches!r}")
        if not isinstance(self.early_receives, bool):
            raise ValueError(f"early_receives must be true or false, got "
                             f"{self.early_receives!r}")
        if self.early_receives and self.posted_batches < 2:
            raise ValueError("early_receives needs posted_batches of at least 2")

    @staticmethod
    def posting(k: int) -> Overlap:
        """The rule `--posted-batches K` names: K batches, receives posted
        ahead when K > 1."""
        return Overlap(k, k > 1)

    @staticmethod
    def from_dict(data: dict[str, Any] | None) -> Overlap:
        """The manifest's field; missing or empty: K = 1."""
        if not data:
            return DEFAULT
        unknown = sorted(set(data) - {"posted_batches", "early_receives"})
        if unknown:
            raise ValueError(f"{unknown[0]!r} is unknown")
        return Overlap(data.get("posted_batches", 1), data.get("early_receives", False))

    def to_dict(self) -> dict[str, Any]:
        """The manifest's field; empty for the default, so older manifests and
        K = 1 manifests are the same bytes."""
        if self == DEFAULT:
            return {}
        return {"posted_batches": self.posted_batches, "early_receives": self.early_receives}

    @property
    def overlapped(self) -> bool:
        return self.posted_batches > 1

    def describe(self) -> str:
        if not self.overlapped:
            return "posted batches 1 (every batch waited for whole)"
        early = ", receives posted one batch ahead" if self.early_receives else ""
        return f"posted batches {self.posted_batches} (sends complete in the background{early})"


DEFAULT = Overlap()
