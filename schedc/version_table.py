"""The version table: per (pipeline, stage, micro-batch) the weight version
its forward and backward read and the step its gradient went into, with the
peaks the Spec's bounds are checked against (schedc.versions makes it,
schedc.verify checks the bounds on it, schedc.analysis reports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, sub
from typing import Any

Key = tuple[int, int, int]  # (pipeline, stage, mb)
Where = tuple[int, int]  # (rank, stream index)


@dataclass
class VersionTable:
    """Versions read per (pipeline, stage, mb), and the peaks the bounds need."""

    forward: dict[Key, int] = field(default_factory=dict)
    backward: dict[Key, int] = field(default_factory=dict)
    applied: dict[Key, int] = field(default_factory=dict)
    where: dict[Key, Where] = field(default_factory=dict)
    inflight_peaks: dict[tuple[int, int], tuple[int, Where]] = field(default_factory=dict)
    copy_peaks: dict[tuple[int, int], tuple[int, Where]] = field(default_factory=dict)
    # Versions kept (current + stash), the `versions` bound; look-ahead weights
    # are a derived copy, counted in copy_peaks only.
    version_peaks: dict[tuple[int, int], tuple[int, Where]] = field(default_factory=dict)
    activation_peaks: list[tuple[int, int]] = field(default_factory=list)
    sparse_syncs: dict[tuple[int, int], int] = field(default_factory=dict)
    # The verifier's replay, which goes on to time the analysis' run (verify's `timed`).
    runs: Any = None
    # differences() made so far, by the name of the later table, with the
    # sizes of the two tables they were made from
    _differences: dict[str, tuple[int, int, list[int]]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    # The per-key and per-stage fields (a rank writes its own keys and stages only).
    _DICTS = ("forward", "backward", "applied", "where", "inflight_peaks", "copy_peaks",
              "version_peaks", "sparse_syncs")

    def merge_into(self, table: VersionTable) -> None:
        """Add this table's keys and stages (one rank's) to `table`."""
        for name in self._DICTS:
            getattr(table, name).update(getattr(self, name))
        table._differences.clear()

    def inconsistency(self, key: Key) -> int:
        return self.backward[key] - self.forward[key]

    def delay(self, key: Key) -> int:
        return self.applied[key] - self.forward[key]

    def inconsistencies(self) -> list[int]:
        """`inconsistency(key)` of every key, in `forward`'s order."""
        return self.differences("backward")

    def delays(self) -> list[int]:
        """`delay(key)` of every key, in `forward`'s order."""
        return self.differences("applied")

    def differences(self, later: str) -> list[int]:
        """`getattr(self, later)[key] - forward[key]` of every key, in
        `forward`'s order: made once per table (a table is read, not written,
        once its run is checked; merge_into, or a key added, makes them again)."""
        fwd, values = self.forward, getattr(self, later)
        made = self._differences.get(later)
        if made is not None and made[:2] == (len(fwd), len(values)):
            return made[2]
        if len(values) == len(fwd) and all(map(eq, values, fwd)):  # the same keys in order
            out = list(map(sub, values.values(), fwd.values()))
        else:
            out = list(map(sub, map(values.__getitem__, fwd), fwd.values()))
        self._differences[later] = (len(fwd), len(values), out)
        return out

    def _worst(self, later: str):
        """(value, key, where) of the largest `later[key] - forward[key]`, the
        least key among equals; None for an empty table."""
        values = self.differences(later)
        if not values:
            return None
        value = max(values)
        key = min(compress(self.forward, map(eq, values, repeat(value))))
        return value, key, self.where[key]

    def worst_inconsistency(self):
        return self._worst("backward")

    def worst_delay(self):
        return self._worst("applied")
