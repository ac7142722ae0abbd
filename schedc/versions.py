"""Replay each rank's stream against the weight-version and data state it
implies, checking every dependency, and tabulate the versions read.

Per stage replica the replay tracks the current version, the stash slots, the
look-ahead buffer and which of them the parameters point at; a compute op
whose `version` is not what its stage points at, a step taken before its
batch's gradients are in, or an input consumed before it arrived is an error
naming the instruction.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schedc import versions_periodic as periodic
from schedc.errors import VerifyError
from schedc.instructions import (
    COMPUTE_OPS,
    FREES_ACTIVATION,
    RECV_OPS,
    SEND_OPS,
    TABLE,
    resolve_needs,
)
from schedc.program import Instr, Manifest
from schedc.spec import Spec
from schedc.unroll import Unrolled, stream_parts
from schedc.version_table import Columns, VersionTable
from schedc.weight_ops import WeightOps


@dataclass
class _Replica:
    current: int = 0
    stash: set[int] = field(default_factory=set)
    lookahead: int | None = None
    active: tuple[int, bool] | None = (0, False)
    accumulated: set[int] = field(default_factory=set)
    reduced: bool = False
    inflight: int = 0
    # per op, a byte per micro-batch: 1 once the op ran for it on this replica
    # (read by _check_needs; a set of (op, pipeline, stage, mb) took ~100 bytes each)
    ran: dict[str, bytearray] = field(default_factory=dict)
    inflight_peak: int = 0  # the most in flight so far (the table's peak, kept at hand)

    def copies(self) -> int:
        return 1 + len(self.stash) + (self.lookahead is not None)

    def copy(self) -> _Replica:
        return _Replica(self.current, set(self.stash), self.lookahead, self.active,
                        set(self.accumulated), self.reduced, self.inflight,
                        {op: bytearray(b) for op, b in self.ran.items()}, self.inflight_peak)

    def has_run(self, op: str, mb: int) -> bool:
        ran = self.ran.get(op)
        return ran is not None and 0 <= mb < len(ran) and ran[mb] == 1

    def mark_run(self, op: str, mb: int) -> None:
        ran = self.ran.get(op)
        if ran is None:
            ran = self.ran[op] = bytearray()
        if mb >= len(ran):
            ran.extend(bytes(mb + 1 - len(ran) + len(ran) // 2))  # grown by half
        ran[mb] = 1


class VersionCheck:
    """Every rank's version check over runs of the same programs with 1, 2,
    3 ... bodies, which agree up to their epilogues (schedc.runs). A rank's
    check reads nothing but its own stream, in order, so it needs no replay:
    each rank has one *line* that checks the shared part once, and a run's
    epilogue is checked on a copy of the line. Where the lines repeat
    themselves a body later (schedc.versions_periodic), a run's epilogue is
    not checked again, and the next run's table follows without a check."""

    def __init__(self, manifest: Manifest, ranks: int) -> None:
        spec = Spec.from_dict(manifest.spec)
        self.lines = [_RankReplay(manifest, spec, r) for r in range(ranks)]
        self.checked = [0] * ranks  # per rank, where its line has checked to
        self.comparable = periodic.comparable(manifest, spec)
        # the last run stopped at and the lines' states before its epilogue
        # (line_state); per run stopped at, their sparse synchronisations so far
        self.stood: tuple[int, list[periodic.LineState]] | None = None
        self.syncs: dict[int, list[dict]] = {}
        self.skipped: int | None = None  # the run whose epilogue was not checked
        self.previous: tuple[int, VersionTable] | None = None  # the last table made
        self.windows: list[tuple[int, int]] | None = None

    def check(self, un: Unrolled, ends: list[int] | None = None, final: bool = False
              ) -> VersionTable | None:
        """The version table of run `un`, whose streams are the shared ones up
        to `ends` (per rank; None: to their ends): the lines check up to there,
        copies of them the rest. The first error, by rank, is raised; `final`:
        no later run reads the lines (memory). None (not `final`): the lines
        stand before this run's epilogue as before the last run's, a body
        later, so its epilogue checks as that one did, and each entry and
        peak of this run is one of the next run's, a body later or the same:
        its bounds follow from the next run's. The run after such a run is
        not checked: its table follows (_derived)."""
        if final and self.skipped == un.repeats - 1:
            table = self._derived(un)
            if table is not None:
                self.lines = []
                return table
        for r, line in enumerate(self.lines):
            line.un = un
            end = len(un.streams[r]) if ends is None else ends[r]
            line.run(self.checked[r], end)
            self.checked[r] = end
        if ends is not None and not final and self.comparable and self._stands_as_before(un):
            self.skipped = un.repeats
            return None
        checks = []
        for r, line in enumerate(self.lines):
            check = line if ends is None else line.copy()
            check.run(self.checked[r], len(un.streams[r]))
            check.finish()
            checks.append(check)
        table = VersionTable()
        for r, check in enumerate(checks):
            check.table.merge_into(table)  # its replicas' columns, handed over
            table.activation_peaks.append(check.alive_peak)
            if final:  # each rank's check goes once merged
                checks[r] = self.lines[r] = None
        if final:
            self.lines = []
        else:
            self.previous = (un.repeats, table)
        return table

    def _stands_as_before(self, un: Unrolled) -> bool:
        """The lines stand before run un's epilogue as before the last
        run's, a body later (versions_periodic.shifted)."""
        if self.windows is None:  # per rank, the micro-batches the rest reads (window)
            self.windows = [periodic.window(prog, un.period) for prog in un.programs]
        states = [periodic.line_state(x, un, w) for x, w in zip(self.lines, self.windows,
                                                                  strict=True)]
        self.syncs[un.repeats] = [dict(x.table.sparse_syncs) for x in self.lines]
        last, self.stood = self.stood, (un.repeats, states)
        return last is not None and last[0] == un.repeats - 1 and all(
            periodic.shifted(a, b) for a, b in zip(last[1], states, strict=True))

    def _derived(self, un: Unrolled) -> VersionTable | None:
        """Run un's table, where run n = un - 1 stood as run n - 1 did a body
        later (its check skipped): run n's table is run n - 1's with the lines'
        entries from the stop on a body later, and run un's is run n's so
        (versions_periodic.next_table). None where that does not line up."""
        n = un.repeats - 1
        if self.previous is None or self.previous[0] != n - 1 or n - 1 not in self.syncs:
            return None
        period, progs = un.period, un.programs
        bodies = [len(prog.body) for prog in progs]
        before, now = self.syncs[n - 1], self.syncs[n]
        syncs: dict = {}
        for a, b in zip(before, now, strict=True):
            for key in a.keys() | b.keys():
                syncs[key] = b.get(key, 0) - a.get(key, 0)
        back = (n - 1) * period.microbatches
        windows = [(lo + back, hi + back) for lo, hi in self.windows]
        lines = [line.table for line in self.lines]
        table = self.previous[1]
        for k in (n - 1, n):  # run k's table to run k + 1's
            epilogues = [len(prog.prologue) + k * body for prog, body in zip(progs, bodies,
                                                                             strict=True)]
            table = periodic.next_table(table, lines, windows, epilogues, bodies, period, syncs)
            if table is None:
                return None
        return table


# The ops whose handler marks them as run (rep.mark_run): the compute ops.
_MARKED = frozenset(COMPUTE_OPS)

# The receive that brings an input from stage s + d: the one whose hop is -d.
_RECV_FROM = {-TABLE[op].hop: op for op in RECV_OPS}


class _RankReplay(WeightOps):
    """One rank's check, with the table of what it read (its own stages only);
    the ops that change a stage's weights are WeightOps'."""

    def __init__(self, manifest: Manifest, spec: Spec, rank: int) -> None:
        self.manifest, self.spec, self.rank = manifest, spec, rank
        self.un: Unrolled | None = None  # the run checked (VersionCheck.shared, fork)
        # its own replicas' entries and peaks (a copy's check writes to a copy of it)
        self.table = VersionTable()
        self.maps = manifest.stage_to_rank
        self.last = manifest.num_stages - 1
        self.m = manifest.period.microbatches // manifest.period.steps
        self.replicas: dict[tuple[int, int], _Replica] = defaultdict(_Replica)
        # messages received and not yet used: marked in their replica's `ran` under
        # the receive's op (its stage is the consumer's), and counted here
        self.unused = 0
        self.alive = 0
        self.alive_peak = (0, 0)
        self.index = 0
        # op -> its _op_ function (not a bound method: no reference cycle, so a
        # check is freed, with the run it holds, as soon as it is dropped)
        self.handlers: dict[str, Callable] = {}
        # per section of the programs: each instruction's handler and replica key
        # (shared with the line's copies: it depends on the section alone)
        self.plans: dict[int, tuple[Sequence[Instr], bytes | array, list[tuple]]] = {}
        self.needs = {op: resolve_needs(op, spec.split_backward) for op in TABLE}
        self.met = 0  # the instruction checked has its needs met in its section (_met)

    def fail(self, reason: str) -> VerifyError:
        section, idx = self.un.locate(self.rank, self.index)
        return VerifyError(reason, rank=self.rank, index=idx, section=section,
                           instr=self.un.streams[self.rank][self.index].label())

    def run(self, lo: int, hi: int) -> None:
        replicas = self.replicas
        for seq, a, b, dm, dv, base in stream_parts(self.un.streams[self.rank], lo, hi):
            _, at, combos = self._plan(seq)
            # the handlers take the shifted micro-batch and version beside the
            # instruction as the program holds it (no shifted copies)
            for j in range(a, b):
                handler, replica, self.met = combos[at[j]]
                if handler is None:  # a send whose inputs its section holds: nothing to do
                    continue
                self.index = base + j
                ins = seq[j]
                mb, v = ins.mb, ins.version
                handler(self, ins, replicas[replica],
                        mb if mb is None else mb + dm, v if v is None else v + dv)

    def _plan(self, seq: Sequence[Instr]) -> tuple[Sequence[Instr], bytes | array, list[tuple]]:
        """(section, per instruction the index of its (handler, replica key,
        needs met), those triples): a section holds few distinct ones (memory).
        A send whose needs are met has no handler: its check is all needs."""
        held = self.plans.get(id(seq))
        if held is None or held[0] is not seq:
            handlers = self.handlers
            for op in {ins.op for ins in seq} - handlers.keys():
                handlers[op] = getattr(_RankReplay, "_op_" + op, _RankReplay._no_rule)
            met = self._met(seq)
            pairs: dict[tuple, int] = {}
            at = [pairs.setdefault((ins.op, ins.pipeline, ins.stage, met[j]), len(pairs))
                  for j, ins in enumerate(seq)]
            combos = [(None if m and op in SEND_OPS else handlers[op], (p, s), m)
                      for op, p, s, m in pairs]
            held = self.plans[id(seq)] = (seq, bytes(at) if len(pairs) < 256 else
                                          array("l", at), combos)
        return held

    def _met(self, seq: Sequence[Instr]) -> bytearray:
        """Per instruction of section `seq`, 1 where every need it has on this
        rank (schedc.instructions' `needs`: its own stage's, or a stage this
        rank also holds) is met by an op earlier in the section, and it needs
        no message: so in every run, at every shift, since what ran stays
        marked (a received message is used up, so never counted here)."""
        met, seen = bytearray(len(seq)), set()
        maps, rank, last, needs = self.maps, self.rank, self.last, self.needs
        for j, ins in enumerate(seq):
            op, p, s, mb = ins.op, ins.pipeline, ins.stage, ins.mb
            if not needs.get(op):
                met[j] = 1  # nothing to check
            elif p is not None and s is not None and mb is not None:
                for kind, d in needs[op]:
                    src = s + d
                    if d and not 0 <= src <= last:
                        continue
                    if (d and maps[p][src] != rank) or (kind, p, src, mb) not in seen:
                        break
                else:
                    met[j] = 1
            if op in _MARKED:
                seen.add((op, p, s, mb))
        return met

    def _no_rule(self, ins, rep: _Replica, mb, v) -> None:
        raise self.fail(f"no version rule for op {ins.op!r} (schedc/versions.py has no "
                        "handler for it)")

    def copy(self) -> _RankReplay:
        """The check as it stands, to go on apart from this one."""
        new = object.__new__(_RankReplay)
        new.__dict__.update(self.__dict__)
        new.table = self.table.copy()
        new.replicas = defaultdict(_Replica, {k: rep.copy() for k, rep in self.replicas.items()})
        return new

    def finish(self) -> None:
        self._check_end()

    def _check_end(self) -> None:
        if self.unused:
            op, p, s, mb = min((op, p, s, mb) for (p, s), rep in self.replicas.items()
                               for op, ran in rep.ran.items() if op in RECV_OPS
                               for mb, mark in enumerate(ran) if mark)
            raise VerifyError(f"{op} for stage {s} micro-batch {mb} (pipeline {p}) is "
                              "received but never used", rank=self.rank)
        for (p, s), rep in sorted(self.replicas.items()):
            if rep.stash:
                raise VerifyError(f"stash slot of version {min(rep.stash)} of stage {s} "
                                  f"(pipeline {p}) is never released", rank=self.rank)

    # ---- compute -------------------------------------------------------------------
    def _read(self, ins, rep: _Replica, v) -> None:
        want = (v, bool(ins.lookahead))
        if rep.active != want:
            have = "a released stash slot" if rep.active is None else \
                f"version {rep.active[0]}{' (look-ahead)' if rep.active[1] else ''}"
            raise self.fail(f"reads version {v}"
                            f"{' (look-ahead)' if ins.lookahead else ''} but stage "
                            f"{ins.stage} points at {have}")

    def _check_needs(self, ins, rep: _Replica, mb) -> None:
        """The op's `needs` (schedc.instructions): each input ran before it on
        this rank or, from a stage another rank holds, its message arrived.
        (Every instruction passes here: the messages are made only on failure.)"""
        if self.met:  # met within its section (_met)
            return
        p, s = ins.pipeline, ins.stage
        for kind, d in self.needs[ins.op]:
            src = s + d
            if d == 0:
                ran = rep.ran.get(kind)  # rep.has_run, inline: the check's hottest line
                if ran is None or not 0 <= mb < len(ran) or ran[mb] != 1:
                    raise self.fail(f"runs before its {kind}")
            elif not 0 <= src <= self.last:
                continue
            elif self.maps[p][src] == self.rank:
                other = self.replicas.get((p, src))
                if other is None or not other.has_run(kind, mb):
                    raise self.fail(f"runs before {kind} of stage {src} on this rank")
            else:
                received = _RECV_FROM[d]
                ran = rep.ran.get(received)
                if ran is None or not 0 <= mb < len(ran) or ran[mb] != 1:
                    raise self.fail(f"runs before its {received} from rank "
                                    f"{self.maps[p][src]} arrived")
                ran[mb] = 0  # used
                self.unused -= 1

    def _op_F(self, ins, rep: _Replica, mb, v) -> None:
        p, s = ins.pipeline, ins.stage
        self._read(ins, rep, v)
        self._check_needs(ins, rep, mb)
        rep.mark_run(ins.op, mb)
        cols, i = self._columns(ins, mb)
        cols.forward[i] = v
        rep.inflight += 1
        if rep.inflight > rep.inflight_peak:  # a new peak: the table records where
            rep.inflight_peak = rep.inflight
            self._peak("inflight_peaks", (p, s), rep.inflight)
        self.alive += 1
        if self.alive > self.alive_peak[0]:
            self.alive_peak = (self.alive, self.index)

    def _grad_op(self, ins, rep: _Replica, mb, v) -> None:
        self._read(ins, rep, v)
        self._check_needs(ins, rep, mb)
        if ins.op in FREES_ACTIVATION:  # the end of "in flight" (schedc.instructions)
            rep.inflight -= 1
            self.alive -= 1
        self._record_backward(ins, rep, mb, v)
        rep.mark_run(ins.op, mb)

    def _op_B(self, ins, rep: _Replica, mb, v) -> None:
        self._grad_op(ins, rep, mb, v)

    def _op_I(self, ins, rep: _Replica, mb, v) -> None:
        self._grad_op(ins, rep, mb, v)

    def _op_W(self, ins, rep: _Replica, mb, v) -> None:
        self._read(ins, rep, v)
        self._check_needs(ins, rep, mb)
        self._record_backward(ins, rep, mb, v)
        rep.mark_run(ins.op, mb)

    def _record_backward(self, ins, rep: _Replica, mb, v) -> None:
        cols, i = self._columns(ins, mb)
        if v > cols.backward[i]:  # the later of I and W (ABSENT is below every version)
            cols.backward[i] = v
        cols.where[i] = self.index

    def _columns(self, ins, mb: int) -> tuple[Columns, int]:
        """The table's columns of the instruction's replica, and the slot of
        `mb` in them."""
        key = (ins.pipeline, ins.stage)
        cols = self.table.columns.get(key)
        if cols is None:
            n = self.manifest.num_pipelines
            cols = self.table.columns[key] = Columns(self.rank, n, ins.pipeline % n)
        i = mb if cols.stride == 1 else cols.slot(mb)
        if i >= len(cols.forward):
            cols.room(i)
        return cols, i

    # ---- communication -----------------------------------------------------------
    def _op_SEND_ACT(self, ins, rep: _Replica, mb, v) -> None:
        self._check_needs(ins, rep, mb)

    def _op_SEND_GRAD(self, ins, rep: _Replica, mb, v) -> None:
        self._check_needs(ins, rep, mb)

    def _op_RECV_ACT(self, ins, rep: _Replica, mb, v) -> None:
        self._received(ins, rep, mb)

    def _op_RECV_GRAD(self, ins, rep: _Replica, mb, v) -> None:
        self._received(ins, rep, mb)

    def _received(self, ins, rep: _Replica, mb) -> None:
        ran = rep.ran.get(ins.op)
        if ran is None or mb >= len(ran) or not ran[mb]:  # not has_run (inline)
            rep.mark_run(ins.op, mb)
            self.unused += 1

    def _peak(self, name: str, key, value: int) -> None:
        """Record `value` in the table's peaks `name` if it is a new peak."""
        peaks = getattr(self.table, name)
        if value > peaks.get(key, (0, None))[0]:
            peaks[key] = (value, (self.rank, self.index))
