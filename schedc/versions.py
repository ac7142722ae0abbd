"""Replay each rank's stream against the weight-version and data state it
implies, checking every dependency, and tabulate the versions read.

Per stage replica the replay tracks the current version, the stash slots, the
look-ahead buffer and which of them the parameters point at; a compute op
whose `version` is not what its stage points at, a step taken before its
batch's gradients are in, or an input consumed before it arrived is an error
naming the instruction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, sub
from typing import Any

from schedc.errors import VerifyError
from schedc.instructions import FREES_ACTIVATION, RECV_OPS, TABLE, resolve_needs
from schedc.program import Manifest
from schedc.spec import Spec
from schedc.unroll import Unrolled

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


@dataclass
class _Replica:
    current: int = 0
    stash: set[int] = field(default_factory=set)
    lookahead: int | None = None
    active: tuple[int, bool] | None = (0, False)
    accumulated: set[int] = field(default_factory=set)
    reduced: bool = False
    inflight: int = 0

    def copies(self) -> int:
        return 1 + len(self.stash) + (self.lookahead is not None)

    def copy(self) -> _Replica:
        return _Replica(self.current, set(self.stash), self.lookahead, self.active,
                        set(self.accumulated), self.reduced, self.inflight)


class VersionCheck:
    """Every rank's version check over runs of the same programs with 1, 2,
    3 ... bodies, which agree up to their epilogues (schedc.runs). A rank's
    check reads nothing but its own stream, in order, so it needs no replay:
    each rank has one *line* that checks the shared part once, and a run's
    epilogue is checked on a copy of the line."""

    def __init__(self, manifest: Manifest, ranks: int) -> None:
        spec = Spec.from_dict(manifest.spec)
        self.lines = [_RankReplay(manifest, spec, r) for r in range(ranks)]
        self.checked = [0] * ranks  # per rank, where its line has checked to

    def check(self, un: Unrolled, ends: list[int] | None = None, final: bool = False
              ) -> VersionTable:
        """The version table of run `un`, whose streams are the shared ones up
        to `ends` (per rank; None: to their ends): the lines check up to there,
        copies of them the rest. The first error, by rank, is raised; `final`:
        no later run reads the lines (memory)."""
        checks = []
        for r, line in enumerate(self.lines):
            line.un = un
            end = len(un.streams[r]) if ends is None else ends[r]
            line.run(self.checked[r], end)
            self.checked[r] = end
        for r, line in enumerate(self.lines):
            check = line if ends is None else line.copy()
            check.run(self.checked[r], len(un.streams[r]))
            check.finish()
            checks.append(check)
        table = VersionTable()
        for check in checks:
            check.base.merge_into(table)  # the line's, then what the epilogue added
            check.table.merge_into(table)
            table.activation_peaks.append(check.alive_peak)
        if final:
            self.lines = []
        return table


# The receive that brings an input from stage s + d: the one whose hop is -d.
_RECV_FROM = {-TABLE[op].hop: op for op in RECV_OPS}


class _RankReplay:
    """One rank's check, with the table of what it read (its own stages only)."""

    def __init__(self, manifest: Manifest, spec: Spec, rank: int) -> None:
        self.manifest, self.spec, self.rank = manifest, spec, rank
        self.un: Unrolled | None = None  # the run checked (VersionCheck.shared, fork)
        self.table = VersionTable()
        # A copy's check (the epilogue's) writes to its own table what it adds or
        # raises; what the line found before is read from the line's (`base`).
        self.base = VersionTable()
        self.maps = manifest.stage_to_rank
        self.last = manifest.num_stages - 1
        self.m = manifest.period.microbatches // manifest.period.steps
        self.replicas: dict[tuple[int, int], _Replica] = defaultdict(_Replica)
        self.done: set[tuple[str, int, int, int]] = set()
        self.received: set[tuple[str, int, int, int]] = set()
        self.alive = 0
        self.alive_peak = (0, 0)
        self.index = 0
        # op -> its _op_ function (not a bound method: no reference cycle, so a
        # check is freed, with the run it holds, as soon as it is dropped)
        self.handlers: dict[str, Callable] = {}
        self.needs = {op: resolve_needs(op, spec.split_backward) for op in TABLE}

    def fail(self, reason: str) -> VerifyError:
        section, idx = self.un.locate(self.rank, self.index)
        return VerifyError(reason, rank=self.rank, index=idx, section=section,
                           instr=self.un.streams[self.rank][self.index].label())

    def run(self, lo: int, hi: int) -> None:
        stream, handlers, replicas = self.un.streams[self.rank], self.handlers, self.replicas
        for self.index in range(lo, hi):
            ins = stream[self.index]
            handler = handlers.get(ins.op)
            if handler is None:
                handler = handlers[ins.op] = getattr(_RankReplay, "_op_" + ins.op, None)
                if handler is None:
                    raise self.fail(f"no version rule for op {ins.op!r} (schedc/versions.py "
                                    "has no handler for it)")
            handler(self, ins, replicas[(ins.pipeline, ins.stage)])

    def copy(self) -> _RankReplay:
        """The check as it stands, to go on apart from this one."""
        new = object.__new__(_RankReplay)
        new.__dict__.update(self.__dict__)
        new.base, new.table = self.table, VersionTable()
        new.replicas = defaultdict(_Replica, {k: rep.copy() for k, rep in self.replicas.items()})
        new.done, new.received = set(self.done), set(self.received)
        return new

    def finish(self) -> None:
        self._check_end()

    def _check_end(self) -> None:
        if self.received:
            op, p, s, mb = sorted(self.received)[0]
            raise VerifyError(f"{op} for stage {s} micro-batch {mb} (pipeline {p}) is "
                              "received but never used", rank=self.rank)
        for (p, s), rep in sorted(self.replicas.items()):
            if rep.stash:
                raise VerifyError(f"stash slot of version {min(rep.stash)} of stage {s} "
                                  f"(pipeline {p}) is never released", rank=self.rank)

    # ---- compute -------------------------------------------------------------------
    def _read(self, ins, rep: _Replica) -> None:
        want = (ins.version, bool(ins.lookahead))
        if rep.active != want:
            have = "a released stash slot" if rep.active is None else \
                f"version {rep.active[0]}{' (look-ahead)' if rep.active[1] else ''}"
            raise self.fail(f"reads version {ins.version}"
                            f"{' (look-ahead)' if ins.lookahead else ''} but stage "
                            f"{ins.stage} points at {have}")

    def _check_needs(self, ins) -> None:
        """The op's `needs` (schedc.instructions): each input ran before it on
        this rank or, from a stage another rank holds, its message arrived.
        (Every instruction passes here: the messages are made only on failure.)"""
        p, s, mb = ins.pipeline, ins.stage, ins.mb
        done, received = self.done, self.received
        for kind, d in self.needs[ins.op]:
            src = s + d
            if d == 0:
                if (kind, p, s, mb) not in done:
                    raise self.fail(f"runs before its {kind}")
            elif not 0 <= src <= self.last:
                continue
            elif self.maps[p][src] == self.rank:
                if (kind, p, src, mb) not in done:
                    raise self.fail(f"runs before {kind} of stage {src} on this rank")
            else:
                key = (_RECV_FROM[d], p, s, mb)
                if key not in received:
                    raise self.fail(f"runs before its {key[0]} from rank {self.maps[p][src]} "
                                    "arrived")
                received.discard(key)

    def _op_F(self, ins, rep: _Replica) -> None:
        p, s, mb = ins.pipeline, ins.stage, ins.mb
        self._read(ins, rep)
        self._check_needs(ins)
        self._done(ins, rep)
        self.table.forward[(p, s, mb)] = ins.version
        rep.inflight += 1
        self._peak("inflight_peaks", (p, s), rep.inflight)
        self.alive += 1
        if self.alive > self.alive_peak[0]:
            self.alive_peak = (self.alive, self.index)

    def _grad_op(self, ins, rep: _Replica) -> None:
        self._read(ins, rep)
        self._check_needs(ins)
        if ins.op in FREES_ACTIVATION:  # the end of "in flight" (schedc.instructions)
            rep.inflight -= 1
            self.alive -= 1
        self._record_backward(ins)
        self._done(ins, rep)

    def _op_B(self, ins, rep: _Replica) -> None:
        self._grad_op(ins, rep)

    def _op_I(self, ins, rep: _Replica) -> None:
        self._grad_op(ins, rep)

    def _op_W(self, ins, rep: _Replica) -> None:
        self._read(ins, rep)
        self._check_needs(ins)
        self._record_backward(ins)
        self._done(ins, rep)

    def _record_backward(self, ins) -> None:
        key = (ins.pipeline, ins.stage, ins.mb)
        before = self.table.backward.get(key)
        if before is None:
            before = self.base.backward.get(key, ins.version)
        self.table.backward[key] = max(before, ins.version)
        self.table.where[key] = (self.rank, self.index)

    def _done(self, ins, rep: _Replica) -> None:
        self.done.add((ins.op, ins.pipeline, ins.stage, ins.mb))

    # ---- communication -----------------------------------------------------------
    def _op_SEND_ACT(self, ins, rep: _Replica) -> None:
        self._check_needs(ins)

    def _op_SEND_GRAD(self, ins, rep: _Replica) -> None:
        self._check_needs(ins)

    def _op_RECV_ACT(self, ins, rep: _Replica) -> None:
        self.received.add(("RECV_ACT", ins.pipeline, ins.stage, ins.mb))

    def _op_RECV_GRAD(self, ins, rep: _Replica) -> None:
        self.received.add(("RECV_GRAD", ins.pipeline, ins.stage, ins.mb))

    # ---- weights -------------------------------------------------------------------
    def _op_ACC(self, ins, rep: _Replica) -> None:
        self._check_needs(ins)
        batch = ins.mb // self.m
        if batch != rep.current:
            raise self.fail(f"adds the gradient of micro-batch {ins.mb} (step {batch + 1}) "
                            f"while stage {ins.stage} is at version {rep.current}")
        if ins.mb in rep.accumulated:
            raise self.fail(f"adds micro-batch {ins.mb} twice")
        rep.accumulated.add(ins.mb)
        self.table.applied[(ins.pipeline, ins.stage, ins.mb)] = batch

    def _op_ALLREDUCE(self, ins, rep: _Replica) -> None:
        self._check_batch_in(ins, rep)
        rep.reduced = True

    def _check_batch_in(self, ins, rep: _Replica) -> None:
        n = self.manifest.num_pipelines
        first = rep.current * self.m
        mine = range(first + (ins.pipeline - first) % n, first + self.m, n)  # mb % n == pipeline
        if not rep.accumulated.issuperset(mine):
            missing = next(mb for mb in mine if mb not in rep.accumulated)
            raise self.fail(f"step {rep.current + 1} of stage {ins.stage} before the gradient "
                            f"of micro-batch {missing} was added")

    def _op_STEP(self, ins, rep: _Replica) -> None:
        if ins.version != rep.current + 1:
            raise self.fail(f"STEP to version {ins.version} from version {rep.current}")
        if ins.count != self.m:
            raise self.fail(f"STEP averages {ins.count} gradients; its batch has {self.m}")
        self._check_batch_in(ins, rep)
        replicated = len({m[ins.stage] for m in self.maps}) > 1
        if replicated and not rep.reduced:
            raise self.fail("STEP of a replicated stage without an ALLREDUCE first")
        rep.current += 1
        rep.accumulated.clear()
        rep.reduced = False
        rep.lookahead = None
        rep.active = (rep.current, False)

    def _op_STASH(self, ins, rep: _Replica) -> None:
        if ins.version != rep.current:
            raise self.fail(f"STASH of version {ins.version} while current is {rep.current}")
        rep.stash.add(ins.version)
        self._peak("copy_peaks", (ins.pipeline, ins.stage), rep.copies())
        self._peak("version_peaks", (ins.pipeline, ins.stage), 1 + len(rep.stash))

    def _op_RELEASE(self, ins, rep: _Replica) -> None:
        if ins.version not in rep.stash:
            raise self.fail(f"RELEASE of version {ins.version}, which is not stashed")
        rep.stash.discard(ins.version)
        if rep.active == (ins.version, False):
            rep.active = None

    def _op_LOOKAHEAD(self, ins, rep: _Replica) -> None:
        if ins.version != rep.current:
            raise self.fail(f"LOOKAHEAD from version {ins.version} while current is "
                            f"{rep.current}")
        rep.lookahead = ins.version
        self._peak("copy_peaks", (ins.pipeline, ins.stage), rep.copies())

    def _op_SPARSE_SYNC(self, ins, rep: _Replica) -> None:
        spec = self.spec
        if spec.dp_mode != "async-sparse":
            raise self.fail("SPARSE_SYNC in a schedule whose dp_mode is not async-sparse")
        if ins.version != rep.current or ins.version % spec.dp_period:
            raise self.fail(f"SPARSE_SYNC at version {ins.version}: it follows the STEP to a "
                            f"multiple of dp_period ({spec.dp_period}); current is "
                            f"{rep.current}")
        key = (ins.pipeline, ins.stage)
        count = self.table.sparse_syncs.get(key)
        self.table.sparse_syncs[key] = 1 + (self.base.sparse_syncs.get(key, 0) if count is None
                                            else count)

    def _op_SWAP(self, ins, rep: _Replica) -> None:
        if ins.lookahead:
            if rep.lookahead != ins.version:
                raise self.fail(f"SWAP to look-ahead weights of version {ins.version}, "
                                "which were not produced")
        elif ins.version != rep.current and ins.version not in rep.stash:
            raise self.fail(f"SWAP to version {ins.version}, neither current "
                            f"({rep.current}) nor stashed")
        rep.active = (ins.version, bool(ins.lookahead))

    def _peak(self, name: str, key, value: int) -> None:
        """Record `value` in the table's peaks `name` if it is a new peak."""
        peaks = getattr(self.table, name)
        peak = peaks.get(key)
        if peak is None:
            peak = getattr(self.base, name).get(key, (0, None))
        if value > peak[0]:
            peaks[key] = (value, (self.rank, self.index))
