"""One replay for every run the verifier checks and the analysis times.

A run of n bodies is prologue + n bodies + epilogue, and the runs of 1, 2, 3
... bodies agree up to their epilogues. The replay core is determinate: which
send meets which receive, and where every rank ends, do not depend on the
order in which ranks advance. So one replay of the longest run, stopped before
a shorter run's epilogue (Replay.run_to, never inside a batch), is that
shorter run up to there, and a fork of it (Replay.fork) replays the shorter
run's epilogue alone. A rank's version check reads only its own stream, so it
runs beside the replay, not in it (schedc.versions.VersionCheck: each rank's
line checks the shared part once, a copy each epilogue). The unit-cost clock
observes the shared replay, which times the longest run for the analysis.

Periodicity spares replays: where the shared replay stops before run n's
epilogue as it stopped before run n - 1's, a body later (_stopped_state),
run n from there, and every longer run, is run n - 1 from there shifted: run
n's epilogue is not forked and no longer run is replayed (`settled`). Where
the clock also reads the same times there, one body's time later, the
longest run's timing is run n's with a body's times repeated, then run n -
1's epilogue's times from its clocked fork (_fold). The version check
skips and derives the same way (schedc.versions_periodic).

Nothing is copied per body: a run's streams are RunStreams (schedc.unroll),
the programs' own sections with the shift each runs at; the replay encodes a
section once and copies its encoding, keys shifted (schedc.replay_code); a
fork encodes its epilogue on in the shared encoding, lent and given back.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterator, Sequence

from schedc.clock import Clock, UnitCosts
from schedc.overlap import Overlap
from schedc.program import Manifest, RankProgram
from schedc.replay import Replay
from schedc.replay_code import KEY_SHIFT
from schedc.timing import Timing
from schedc.unroll import RunStream, Unrolled
from schedc.version_table import VersionTable
from schedc.versions import VersionCheck


class Runs:
    """The runs of 1 .. `longest` bodies of `programs`, proven in order of
    length (`prove`); `timed`: the longest run is also clocked under unit
    costs (`timing`). The shared streams grow a body at a time, as the runs
    proven reach them (the longest run's last body and epilogue are made
    only once the shorter runs' checks are gone: memory)."""

    def __init__(self, manifest: Manifest, programs: Sequence[RankProgram], longest: int,
                 timed: bool = False) -> None:
        self.programs, self.period, self.longest = tuple(programs), manifest.period, longest
        self.streams = tuple(RunStream([(p.prologue, 0, 0)]) for p in programs)
        self.bodies = 0  # body repetitions in the shared streams so far
        self.rule = rule = Overlap.from_dict(manifest.overlap)  # the deadlock proof's rule
        self.clock = Clock(self.streams, UnitCosts(), overlap=rule.overlapped,
                           keep_messages=False) if timed else None
        # Receives posted ahead are not posted past a stop (the limit: where
        # the next batch would be), so a stopped replay posts them later than
        # the run itself: its clock is not the run's timing, which is then
        # clocked again, unstopped (timing).
        self.stale = rule.early_receives
        self.replay = Replay(self.streams, self.clock, rule=rule)
        self.versions = VersionCheck(manifest, len(self.programs))
        self.ended = False  # the shared replay has reached the end of the longest run
        # per run proven, the shared replay's state stopped before its epilogue
        # (_stopped_state; None: not comparable); and the forks replayed
        self.stopped: dict[int, tuple | None] = {}
        self.forks = 0
        # per run proven, the clock's times there (Clock.times_read); and where
        # the longest run's timing comes from a shorter run's (_fold)
        self.clocked: dict[int, tuple | None] = {}
        self.folded: tuple[int, float, list[int], tuple | None] | None = None
        # the last run whose epilogue a clocked fork replayed: (run, where the
        # shared replay stood, the fork's starts and ends) (_fork)
        self.epilogue_times: tuple[int, list[int], list[array], list[array]] | None = None
        # the run from whose stop on every longer run is proven (prove): none is replayed
        self.settled: int | None = None

    def prove(self, n: int, last: bool = False) -> VersionTable | None:
        """Replay run n (after runs 1 .. n - 1): deadlock freedom, then every
        version; its table. The longest run is the shared replay itself, run to
        its end; a shorter one stops the shared replay before its epilogue
        and forks, unless it stops as run n - 1 did a body later
        (_stopped_state): then run n, and every longer run, from there is run
        n - 1 from there shifted, and the replay is over (`settled`; timed:
        where the clock also reads the same times a body's time later, _fold).
        None: run n's epilogue checks as run n - 1's did and its bounds follow
        from run n + 1's (VersionCheck.check). `last`: no longer run is proven
        (the check's lines go as its table is made)."""
        un = self.run(n)
        self.replay.locate = un.locate
        ends = [un.epilogue_start(r) for r in range(len(un.streams))]
        if self.settled is not None:  # proven by run `settled`'s replay
            return self.versions.check(un, None if n == self.longest else ends, final=last)
        if n == self.longest:
            self._end()
            return self.versions.check(un, final=True)
        limits = [self.replay.batch_start(r, i) for r, i in enumerate(ends)]
        self.replay.run_to(limits)
        state = _stopped_state(self.replay, ends, self.bodies_at,
                               (n - 1) * self.period.microbatches * KEY_SHIFT)
        same = state is not None and state == self.stopped.get(n - 1)
        if self.clock is not None and state is not None:
            self.clocked[n] = self.clock.times_read(*_posted(self.replay))
        if same and self.clock is None:
            self.settled = n
        elif same:
            shift = _time_shift(self.clocked.get(n - 1), self.clocked[n])
            if shift is not None and not self.stale:
                self._fold(n, shift)
        else:
            self._fork(un, ends, state is not None)
        self.stopped[n] = state
        return self.versions.check(un, ends, final=last)

    def _fork(self, un: Unrolled, ends: list[int], timed: bool) -> None:
        """Replay run un's epilogue in a fork of the shared replay, stopped
        before it; `timed`, with a fork of the clock: run un's times from
        there are kept for a fold at the next run (_fold)."""
        self.forks += 1
        clock = self.clock.fork(un.streams, ends) if self.clock is not None and timed else None
        try:  # the shared streams end where the epilogue starts: the fork encodes on in them
            self.replay.fork(un.streams, ends, clock, un.locate, lend=True).run()
        finally:
            self.replay.take_back(ends)
        self.epilogue_times = None if clock is None else (
            un.repeats, list(self.replay.pc), clock.starts, clock.ends)

    def _fold(self, n: int, shift: float) -> None:
        """Run n stands before its epilogue as run n - 1 did a body and
        `shift` time units earlier, replay and clock alike: so each longer run
        from there is run n from there, a body and `shift` later for each
        body more, and the replay is over. The longest run's timing is run
        n's up to there, its last body's times repeated `shift` apart, then
        run n - 1's times from its stop on, the epilogue's included, where a
        clocked fork replayed them (_fork); else the shared replay goes on
        with run n's epilogue, whose times follow (_folded_timing)."""
        before = self.epilogue_times
        self.epilogue_times = None
        if before is not None and before[0] == n - 1:
            self.folded = (n, shift, list(self.replay.pc), before[1:])
        else:
            self.folded = (n, shift, list(self.replay.pc), None)
            for r, prog in enumerate(self.programs):
                self.streams[r].append(prog.epilogue, *self._shift(n - 1))
                self.replay.extend(r)
                self.clock.extend(r)
            self.replay.locate = Unrolled(self.programs, self.period, n, self.streams).locate
            self._end()
        self.replay.keys.sections.clear()
        self.clock.sections.clear()
        self.settled = n

    @property
    def bodies_at(self) -> list[int]:
        """Per rank, the length of its body."""
        return [len(prog.body) for prog in self.programs]

    def run(self, n: int) -> Unrolled:
        """The run of n bodies (the same as Unrolled.of): the shared streams'
        prologue and first n bodies, then the epilogue shifted as the last body
        is (RunStream: the programs' own instructions, shifted when read). The
        longest run's are the shared streams themselves. Past a settled run
        (no more is replayed) the bodies beyond it are appended to its own."""
        if self.settled is not None and n > self.settled:
            return Unrolled(self.programs, self.period, n, tuple(
                self._extended(prog, seq, self.settled, n)
                for prog, seq in zip(self.programs, self.streams, strict=True)))
        self._grow(n)
        if n == self.longest:
            return Unrolled(self.programs, self.period, n, self.streams)
        streams = []
        for prog, seq in zip(self.programs, self.streams, strict=True):
            stream = seq.head(1 + n)
            stream.append(prog.epilogue, *self._shift(n - 1))
            streams.append(stream)
        return Unrolled(self.programs, self.period, n, tuple(streams))

    def _extended(self, prog: RankProgram, seq: RunStream, n: int, more: int) -> RunStream:
        """The shared stream's prologue and first n bodies, then bodies n ..
        more - 1 and the epilogue of the run of `more` bodies."""
        stream = seq.head(1 + n)
        for k in range(n, more):
            stream.append(prog.body, *self._shift(k))
        stream.append(prog.epilogue, *self._shift(more - 1))
        return stream

    def _shift(self, k: int) -> tuple[int, int]:
        """(micro-batch, version) shift of body repetition k."""
        return k * self.period.microbatches, k * self.period.steps

    def _grow(self, n: int) -> None:
        """The shared streams hold n bodies (and the epilogue: the longest)."""
        if n <= self.bodies:
            return
        for r, (prog, seq) in enumerate(zip(self.programs, self.streams, strict=True)):
            for k in range(self.bodies, n):
                seq.append(prog.body, *self._shift(k))
            if n == self.longest:
                seq.append(prog.epilogue, *self._shift(n - 1))
            self.replay.extend(r)
            if self.clock is not None:
                self.clock.extend(r)
        self.bodies = n
        if n == self.longest:  # nothing more to encode or time: the sections' copies go
            self.replay.keys.sections.clear()
            if self.clock is not None:
                self.clock.sections.clear()

    def proven(self) -> None:
        """No more runs are proven: the version check goes (memory)."""
        self.versions.lines = []

    def timing(self) -> tuple[Unrolled, Timing]:
        """The longest run and its unit timing, once the shorter runs are
        proven: the shared replay goes on to the end with the clock alone."""
        assert self.clock is not None, "Runs(timed=True) clocks the longest run"
        if self.folded is not None:
            return self._folded_timing()
        un = self.run(self.longest)
        if self.stale:  # clocked again, unstopped
            self.proven()
            clock = Clock(un.streams, UnitCosts(), overlap=self.rule.overlapped,
                          keep_messages=False)
            Replay(un.streams, clock, un.locate, self.rule).run()
            return un, Timing(clock.starts, clock.ends)
        if not self.ended:  # the longest run is timed, not proven
            self.proven()
            self.replay.locate = un.locate
            self._end()
        return un, Timing(self.clock.starts, self.clock.ends)

    def _folded_timing(self) -> tuple[Unrolled, Timing]:
        """The longest run and its timing, from the run folded (_fold): a
        rank's times up to where it stood then; its last body's times from
        there, `shift` later for each body more; then what followed them in
        that run (or, where run n - 1's were clocked apart, what followed in
        that run from its stop on, a body's `shift` later again)."""
        n, shift, stood, before = self.folded
        more = self.longest - n
        streams, starts, ends = [], [], []
        for r, (prog, seq) in enumerate(zip(self.programs, self.streams, strict=True)):
            streams.append(self._extended(prog, seq, n, self.longest))
            at, again = stood[r], stood[r] - len(prog.body)
            for k, out in ((0, starts), (1, ends)):
                times = (self.clock.starts, self.clock.ends)[k][r]
                run = times[:at]
                for j in range(1, more):
                    run += _later(times[again:at], j * shift)
                if before is None:
                    out.append(run + _later(times[again:], more * shift))
                else:
                    tail = before[1 + k][r][before[0][r]:]
                    out.append(run + _later(times[again:at], more * shift)
                               + _later(tail, (more + 1) * shift))
        self.proven()
        return Unrolled(self.programs, self.period, self.longest, tuple(streams)), \
            Timing(starts, ends)

    def _end(self) -> None:
        self.replay.run_to(None)
        self.replay.report_stuck()
        self.ended = True


def _stopped_state(replay: Replay, ends: list[int], bodies: list[int], dkey: int
                   ) -> tuple | None:
    """The state of `replay`, stopped before run n's epilogues (which start at
    `ends`), as run 1 would see it: each rank's position counted from there,
    message keys shifted back by run n's `dkey`. If the states before the
    epilogues of runs n - 1 and n are equal so, run n from there is run n - 1
    from there shifted by a body (each rank stands in its last body, at the
    same place, and what follows is that body's rest and the epilogue, both
    shifted), and the replay is determinate: run n's epilogue completes as run
    n - 1's did, and need not be replayed. None where that does not follow: a
    rank stands before its last body, or an overlap rule's state is pending."""
    if replay.pend is not None or replay.deferred or replay.ready or \
            any(a >= 0 for a in replay.ahead):
        return None
    ranks = []
    for pc, end, held, start, body in zip(replay.pc, replay.batch_end, replay.open, ends,
                                          bodies, strict=True):
        if start - pc > body:
            return None
        ranks.append((pc - start, end - start if end >= 0 else -1, held))
    queues = []  # the messages posted and not yet met, by what they carry
    for owner, chan, queue in _unmatched(replay):
        keys = replay.code[chan[owner]].key
        queues.append((owner, chan, tuple(k - dkey if k >= 0 else k
                                          for k in map(keys.__getitem__, queue))))
    gathering = [(group, tuple(sorted((r, i - ends[r]) for r, i in members.items())))
                 for group, members in replay.gathering.items()]
    return tuple(ranks), tuple(sorted(queues)), tuple(sorted(gathering))


def _posted(replay: Replay) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Each rank's posted batch (lo, hi; lo == hi: none), and the messages
    posted and not yet met, as (rank, index)."""
    posted = [(pc, max(pc, end)) for pc, end in zip(replay.pc, replay.batch_end, strict=True)]
    unmatched = {(chan[owner], i) for owner, chan, queue in _unmatched(replay) for i in queue}
    return posted, unmatched


def _unmatched(replay: Replay) -> Iterator[tuple[int, tuple, deque[int]]]:
    """(owner, channel, stream indices) of each channel side with messages
    posted and not yet met: owner 0 its sends (the sender's), 1 its receives."""
    for owner, side in ((0, replay.sends), (1, replay.recvs)):
        for chan, queue in side.items():
            if queue:
                yield owner, chan, queue


def _later(times: array, shift: float) -> array:
    return array("d", [t + shift for t in times])


def _time_shift(before: tuple | None, after: tuple | None) -> float | None:
    """The one time by which every time of `after` (Clock.times_read) is
    later than the same time of `before`; None if there is none."""
    if before is None or after is None or before[0] != after[0] or \
            len(before[1]) != len(after[1]) or not after[1]:
        return None
    shift = after[1][0] - before[1][0]
    same = all(b - a == shift for a, b in zip(before[1], after[1], strict=True))
    return shift if same else None


def replay_versions(manifest: Manifest, un: Unrolled) -> VersionTable:
    """The version table of run `un` alone."""
    return Runs(manifest, un.programs, un.repeats).prove(un.repeats)
