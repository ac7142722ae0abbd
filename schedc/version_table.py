"""The version table: per (pipeline, stage, micro-batch) the weight version
its forward and backward read and the step its gradient went into, with the
peaks the Spec's bounds are checked against (schedc.versions makes it,
schedc.verify checks the bounds on it, schedc.analysis reports it).

The entries are stored by columns: per replica (pipeline, stage), one array
per field, a slot per micro-batch of the replica's pipeline, ABSENT where the
field has no entry (`Columns`). A rank's check writes its own replicas' arrays; the run's table
takes them over whole (`merge_into`: no work per key). `forward`,
`backward`, `applied` and `where` read them as mappings (pipeline, stage, mb)
-> value; the bulk readers (`by_replica`, `differences`, `_worst`,
`first_negative`) read the arrays.

The table's one key order is the keys' own: by (pipeline, stage), then by
micro-batch. Every reading follows it (the views' iteration, `differences`),
and "the first key" with a property is the least one.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter, ne, sub
from typing import Any

Key = tuple[int, int, int]  # (pipeline, stage, mb)
Where = tuple[int, int]  # (rank, stream index)
Replica = tuple[int, int]  # (pipeline, stage)

# The arrays' type: C ints (a version, a step, a micro-batch or a stream index
# of a run is a few times the programs' instruction count at most, far below
# 2 ** 31: verify._microbatch_limit).
TYPECODE = "i"
ABSENT = -(2 ** 31)  # no entry (the least C int: every value the table holds is above it)
FIELDS = ("forward", "backward", "applied", "where")  # the per-key columns
_FIRST = itemgetter(0)


class Columns:
    """One replica's entries, by micro-batch: the version its forward and its
    backward read, the step its gradient went into, and where (the stream
    index on `rank`, the rank holding the replica) the backward that recorded
    it is; ABSENT where there is none.

    A replica of pipeline p of n runs the micro-batches mb = p + n * i only
    (schedc.completeness), so slot i holds mb = phase + stride * i; a
    micro-batch off that line turns the columns to stride 1 (`slot`). The
    arrays share one length, grown by half as a list is (`room`)."""

    __slots__ = ("rank", "stride", "phase", *FIELDS)

    def __init__(self, rank: int | None, stride: int = 1, phase: int = 0) -> None:
        self.rank, self.stride, self.phase = rank, stride, phase
        self.forward, self.backward, self.applied, self.where = (
            array(TYPECODE) for _ in FIELDS)

    def slot(self, mb: int) -> int:
        """The slot of micro-batch `mb` (0 <= mb), made where it has none."""
        i, off = divmod(mb - self.phase, self.stride)
        if off or i < 0:
            for name in FIELDS:  # to stride 1
                col = getattr(self, name)
                dense = array(TYPECODE, [ABSENT]) * (self.phase + len(col) * self.stride)
                dense[self.phase::self.stride] = col
                setattr(self, name, dense)
            self.stride, self.phase, i = 1, 0, mb
        return i

    def room(self, i: int) -> None:
        """The arrays hold slot `i`."""
        have = len(self.forward)
        if i >= have:
            more = array(TYPECODE, [ABSENT]) * (i + 1 - have + have // 2)
            for name in FIELDS:
                getattr(self, name).extend(more)

    def copy(self) -> Columns:
        new = Columns(self.rank, self.stride, self.phase)
        new.forward, new.backward, new.applied, new.where = (
            self.forward[:], self.backward[:], self.applied[:], self.where[:])
        return new

    def slots(self, name: str = "forward") -> list[int]:
        """The slots column `name` has an entry in, in order."""
        col = getattr(self, name)
        return list(compress(range(len(col)), map(ne, col, repeat(ABSENT))))

    def mbs(self, slots: list[int]) -> list[int]:
        """The micro-batches of `slots`."""
        if self.stride == 1 and not self.phase:
            return slots
        return [self.phase + self.stride * i for i in slots]

    def get(self, name: str, mb: int) -> int:
        """Column `name`'s entry for micro-batch `mb`; ABSENT where none."""
        i, off = divmod(mb - self.phase, self.stride)
        col = getattr(self, name)
        return col[i] if not off and 0 <= i < len(col) else ABSENT


class ColumnView(Mapping):
    """A read-only mapping (pipeline, stage, mb) -> value over one column of
    a table, in the table's key order; `where` reads (rank, stream index)."""

    def __init__(self, table: VersionTable, name: str) -> None:
        self._table, self._name = table, name

    def __getitem__(self, key: Key) -> Any:
        try:
            p, s, mb = key
            cols = self._table.columns[(p, s)]
            value = cols.get(self._name, mb)
        except (KeyError, TypeError, ValueError):
            raise KeyError(key) from None
        if value == ABSENT:
            raise KeyError(key)
        return (cols.rank, value) if self._name == "where" else value

    def __iter__(self) -> Iterator[Key]:
        for (p, s), cols in self._table.replicas():
            for mb in cols.mbs(cols.slots(self._name)):
                yield p, s, mb

    def __len__(self) -> int:
        return sum(len(col) - col.count(ABSENT) for col in
                   (getattr(cols, self._name) for cols in self._table.columns.values()))

    def __repr__(self) -> str:
        return f"ColumnView({self._name}: {dict(self.items())!r})"


@dataclass(eq=False)
class VersionTable:
    """Versions read per (pipeline, stage, mb), and the peaks the bounds need."""

    columns: dict[Replica, Columns] = field(default_factory=dict)
    inflight_peaks: dict[Replica, tuple[int, Where]] = field(default_factory=dict)
    copy_peaks: dict[Replica, tuple[int, Where]] = field(default_factory=dict)
    # Versions kept (current + stash), the `versions` bound; look-ahead weights
    # are a derived copy, counted in copy_peaks only.
    version_peaks: dict[Replica, tuple[int, Where]] = field(default_factory=dict)
    activation_peaks: list[tuple[int, int]] = field(default_factory=list)
    sparse_syncs: dict[Replica, int] = field(default_factory=dict)
    # The verifier's replay, which goes on to time the analysis' run (verify's `timed`).
    runs: Any = None
    # by_replica() made so far, by the name of the later column (a table is
    # read, not written, once its run is checked; record and merge_into
    # forget them)
    _made: dict[str, list[tuple[Replica, list[int], list[int]]]] = field(
        default_factory=dict, init=False, repr=False)
    # The per-replica fields a rank writes (its own replicas only).
    _PEAKS = ("inflight_peaks", "copy_peaks", "version_peaks", "sparse_syncs")
    # Every per-key and per-replica field, as mappings.
    _DICTS = FIELDS + _PEAKS

    @property
    def forward(self) -> ColumnView:
        return ColumnView(self, "forward")

    @property
    def backward(self) -> ColumnView:
        return ColumnView(self, "backward")

    @property
    def applied(self) -> ColumnView:
        return ColumnView(self, "applied")

    @property
    def where(self) -> ColumnView:
        return ColumnView(self, "where")

    def replicas(self) -> list[tuple[Replica, Columns]]:
        """The replicas' columns, in key order."""
        return sorted(self.columns.items(), key=_FIRST)

    def record(self, key: Key, forward: int | None = None, backward: int | None = None,
               applied: int | None = None, where: Where | None = None) -> None:
        """Set the entries given for `key` (a replica's rank is its entries' where's)."""
        p, s, mb = key
        cols = self.columns.get((p, s))
        if cols is None:
            cols = self.columns[(p, s)] = Columns(None)
        if where is not None:
            if cols.rank not in (None, where[0]):
                raise ValueError(f"stage {s} (pipeline {p}) is on rank {cols.rank}, "
                                 f"not {where[0]}")
            cols.rank = where[0]
        i = cols.slot(mb)
        cols.room(i)
        for name, value in (("forward", forward), ("backward", backward),
                            ("applied", applied), ("where", where and where[1])):
            if value is not None:
                getattr(cols, name)[i] = value
        self._made.clear()

    def copy(self) -> VersionTable:
        """A table to go on writing apart from this one."""
        return VersionTable(
            columns={rep: cols.copy() for rep, cols in self.columns.items()},
            activation_peaks=list(self.activation_peaks),
            **{name: dict(getattr(self, name)) for name in self._PEAKS})

    def merge_into(self, table: VersionTable) -> None:
        """Hand this table's replicas (one rank's) over to `table`."""
        shared = self.columns.keys() & table.columns.keys()
        if shared:
            raise ValueError(f"replicas {sorted(shared)} are in both tables")
        table.columns.update(self.columns)
        for name in self._PEAKS:
            getattr(table, name).update(getattr(self, name))
        table._made.clear()

    def inconsistency(self, key: Key) -> int:
        return self.backward[key] - self.forward[key]

    def delay(self, key: Key) -> int:
        return self.applied[key] - self.forward[key]

    def inconsistencies(self) -> list[int]:
        """`inconsistency(key)` of every key of `forward`, in key order."""
        return self.differences("backward")

    def delays(self) -> list[int]:
        """`delay(key)` of every key of `forward`, in key order."""
        return self.differences("applied")

    def differences(self, later: str) -> list[int]:
        """`getattr(self, later)[key] - forward[key]` of every key of
        `forward`, in key order."""
        return [d for _, _, diffs in self.by_replica(later) for d in diffs]

    def by_replica(self, later: str) -> list[tuple[Replica, list[int], list[int]]]:
        """Per replica with forwards, in key order: (replica, its micro-batches
        with a forward, in order, `later - forward` of each). Made once per
        table (KeyError for a key with a forward and no `later`)."""
        made = self._made.get(later)
        if made is None:
            made = self._made[later] = [
                (rep, *_differences(rep, cols, getattr(cols, later)))
                for rep, cols in self.replicas()]
        return [entry for entry in made if entry[1]]

    def first_negative(self, later: str) -> tuple[int, Key, Where] | None:
        """(value, key, where) of the first key whose `later - forward` is
        negative; None where there is none."""
        for (p, s), mbs, diffs in self.by_replica(later):
            if min(diffs) < 0:
                i = next(i for i, d in enumerate(diffs) if d < 0)
                key = (p, s, mbs[i])
                return diffs[i], key, self.where[key]
        return None

    def _worst(self, later: str) -> tuple[int, Key, Where] | None:
        """(value, key, where) of the largest `later - forward`, the least key
        among equals; None for an empty table."""
        made = self.by_replica(later)
        if not made:
            return None
        value = max(max(diffs) for _, _, diffs in made)
        (p, s), mbs, diffs = next(entry for entry in made if value in entry[2])
        key = (p, s, mbs[diffs.index(value)])
        return value, key, self.where[key]

    def worst_inconsistency(self) -> tuple[int, Key, Where] | None:
        return self._worst("backward")

    def worst_delay(self) -> tuple[int, Key, Where] | None:
        return self._worst("applied")


def _differences(rep: Replica, cols: Columns, later: array) -> tuple[list[int], list[int]]:
    """(micro-batches with a forward, `later - forward` of each) of one replica."""
    slots = cols.slots()
    forward = list(map(cols.forward.__getitem__, slots))
    values = list(map(later.__getitem__, slots))
    mbs = cols.mbs(slots)
    if ABSENT in values:
        raise KeyError((*rep, mbs[values.index(ABSENT)]))
    return mbs, list(map(sub, values, forward))
