"""The replay core: every rank's instruction stream executed under the
runtime's exact blocking and matching rules, once, for every client.

The rules (docs/programs.md, "Execution rules"):

- A maximal run of consecutive send/receive instructions on a rank is one
  *batch*, posted at once (`batch_isend_irecv`) and waited for whole before
  the rank goes on; a rank holds at most one posted batch.
- A message travels on the channel (sender, receiver, pipeline) (one
  communicator per pipeline): the k-th send on a channel meets the k-th
  receive on it, whatever their kind, and they must carry the same thing
  (`schedc.instructions.message_key`), or the programs are wrong.
- Collectives (ALLREDUCE) run in one order per group, as on one NCCL
  communicator per group: the k-th ALLREDUCE of a group on one rank meets the
  k-th of that group on every other member, blocks until all are there, and
  they must reduce the same stage.
- Everything else runs when reached.
- Under an overlap rule (`schedc.overlap.Overlap`, the manifest's `overlap`)
  with K posted batches > 1, a batch is waited for its receives only; a rank
  waits for the sends of its oldest batch once more than K - 1 batches hold
  sends, and for all of them before a collective and at the end of its
  stream; with early receives the receives of the next batch are posted as
  soon as a batch is done. Matching is the same per-channel order
  (schedc.replay_overlap).

Clients plug in as an `Observer` (schedc.replay_events: callbacks on
ranges of a rank's stream): the verifier's deadlock proof (no observer;
`schedc.runs` stops it before an epilogue and forks it), the unit-cost
timing (`schedc.timing`) and the cost-model simulator
(`schedc.simulate.engine`). The replay is linear in the number of
instructions: a rank runs until it blocks and is woken only when a peer
completes what it waits for.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

from schedc.errors import VerifyError
from schedc.overlap import DEFAULT, Overlap
from schedc.program import Instr
from schedc.replay_code import COLL, KEY_SHIFT, LOCAL, MSG, Keys, RankCode, encode
from schedc.replay_events import (
    Blocked,
    Fanout,
    Locate,
    Observer,
    ReplayDeadlock,
    ReplayMismatch,
    does,
    stream_locate,
)
from schedc.replay_overlap import OverlapRules
from schedc.unroll import RunStream, stream_parts

__all__ = ["COLL", "LOCAL", "MSG", "Blocked", "Fanout", "Locate", "Observer", "Replay",
           "ReplayDeadlock", "ReplayMismatch", "stream_locate"]

# Per rank, (code, same): the encoding of a stream that agrees with this run's
# on its first `same` instructions (Replay.fork; same = -1: all of code, which
# the new replay encodes on in). Replay empties the list's entries as it goes
# (memory: the caller still holds the list).
Reuse = list[tuple[RankCode, int] | None]


class Replay(OverlapRules):
    """One execution of `streams` (lists of instructions, one per rank)."""

    def __init__(self, streams: Sequence[Sequence[Instr]], observer: Observer | None = None,
                 locate: Locate = stream_locate, rule: Overlap = DEFAULT,
                 reuse: Reuse | None = None, keys: Keys | None = None) -> None:
        self.streams = streams
        self.obs = observer or Observer()
        # the per-message and per-batch callbacks, None where the observer does nothing
        self.on_matched = self.obs.matched if does(self.obs, "matched") else None
        self.on_finished = self.obs.finished if does(self.obs, "finished") else None
        self.on_local = self.obs.local if does(self.obs, "local") else None
        self.on_posted = self.obs.posted if does(self.obs, "posted") else None
        self.locate, self.rule = locate, rule
        n = len(streams)
        self.keys = Keys() if keys is None else keys  # shared with forks
        self.code: list[RankCode] = []
        for r in range(n):
            if reuse is None:
                self.code.append(self.encode_rest(r, RankCode()))
            else:  # the shorter run's encoding goes as the new one is made
                code, same = reuse[r]
                reuse[r] = None
                self.code.append(self.encode_rest(r, code if same < 0 else code.head(same)))
        self.pc = [0] * n
        self.batch_end = [-1] * n  # end of the posted batch; -1 when none
        self.open = [0] * n  # messages of the posted batch not yet matched
        # per channel, the unmatched messages of each side, oldest first
        # (stream indices: a channel's sends are its sender's, its receives its receiver's)
        self.sends: defaultdict[tuple, deque[int]] = defaultdict(deque)
        self.recvs: defaultdict[tuple, deque[int]] = defaultdict(deque)
        self.gathering: dict[tuple[int, ...], dict[int, int]] = {}  # group -> rank -> index
        self.ready: deque[int] = deque(range(n))
        self.queued = [True] * n
        # Overlap rules (K > 1): per rank, open [receives, sends] per batch (by its
        # end), the batches holding sends not yet waited for, the batch posted ahead.
        self.k, self.early = rule.posted_batches, rule.early_receives
        self.pend: list[dict[int, list[int]]] | None = [{} for _ in range(n)] \
            if self.k > 1 else None
        self.sending: list[deque[tuple[int, int]]] = [deque() for _ in range(n)]
        self.ahead = [-1] * n
        # Per rank, the index it stops at (run_to): None, the end of its stream;
        # the ranks whose receives posted ahead wait for the limit to move.
        self.limit: list[int] | None = None
        self.deferred: set[int] = set()

    # ---- encoding (schedc.replay_code) -----------------------------------------------
    def encode_rest(self, r: int, code: RankCode) -> RankCode:
        """`code`, the encoding of rank r's stream up to len(code), encoded on
        to the stream's end. A whole section of a RunStream is encoded once
        (Keys.sections) and copied, its keys shifted."""
        seq = self.streams[r]
        sections = isinstance(seq, RunStream)
        for part, a, b, dm, _, base in stream_parts(seq, len(code)):
            if sections and a == 0 and b == len(part):
                code.append_shifted(self._section(r, part, base), base, dm * KEY_SHIFT)
                continue
            code.grow(b - a)
            instrs = part[a:b]
            encode(code, r, len(self.streams), instrs, [dm] * (b - a) if dm else None,
                   base + a, base + b, self.keys, lambda i, reason: self.fail(r, i, reason))
            code.join(base + a)
        return code

    def _section(self, r: int, part: Sequence[Instr], base: int) -> RankCode:
        """Section `part` of rank r encoded at index 0, unshifted (made where it
        first stands, at `base`: an error names that place)."""
        held = self.keys.sections.get((r, id(part)))
        if held is not None and held[0] is part:
            return held[1]
        code = RankCode(len(part))
        encode(code, r, len(self.streams), part, None, 0, len(part), self.keys,
               lambda i, reason: self.fail(r, base + i, reason))
        self.keys.sections[(r, id(part))] = (part, code)  # the section held: its id stays
        return code

    def extend(self, r: int) -> None:
        """Rank r's stream has grown at its end (schedc.runs): encode the new
        instructions, and join the run that reaches into them. The rank must
        not stand inside that run's batch (Replay.batch_start)."""
        self.encode_rest(r, self.code[r])

    def fail(self, rank: int, index: int, reason: str, cls=VerifyError, **extra) -> VerifyError:
        section, idx = self.locate(rank, index)
        return cls(reason, rank=rank, index=idx, section=section,
                   instr=self.streams[rank][index].label(), **extra)

    # ---- running ------------------------------------------------------------------
    def run(self) -> None:
        """Run to the end; raise ReplayMismatch or ReplayDeadlock if the streams
        are wrong."""
        self.drain()
        self.report_stuck()

    def drain(self) -> None:
        ready, queued, advance = self.ready, self.queued, self.advance
        while ready:
            r = ready.popleft()
            queued[r] = False
            advance(r)

    def run_to(self, limit: list[int] | None) -> None:
        """Run until every rank has stopped at its `limit` or blocks before it
        (None: run to the end, without reporting a rank that is stuck). The
        replay is determinate, so running to limits first and on later ends in
        the state a run straight to the later limits ends in, provided no
        limit falls inside a batch (`batch_start`)."""
        self.limit = limit
        self.post_deferred()
        for r in range(len(self.streams)):
            self.wake(r)
        self.drain()

    def post_deferred(self) -> None:
        deferred, self.deferred = self.deferred, set()
        for r in sorted(deferred):
            self.post_ahead(r, self.pc[r])

    def batch_start(self, r: int, i: int) -> int:
        """The start of the batch holding instruction i - 1 if it is a message
        (i itself otherwise): a limit there cuts no batch."""
        kind = self.code[r].kind
        while i and kind[i - 1] == MSG:
            i -= 1
        return i

    def fork(self, streams: Sequence[Sequence[Instr]], same: list[int],
             observer: Observer | None = None, locate: Locate = stream_locate,
             lend: bool = False) -> Replay:
        """A replay of `streams` that goes on from this one's state: each rank's
        stream equals this replay's on its first `same[r]` instructions, and no
        rank has passed `batch_start(r, same[r])`. This replay is not changed.
        `lend`: where this replay's encoding is exactly those instructions, the
        fork encodes on in it rather than in a copy (memory: a long run's); this
        replay must not run until `take_back(same)`."""
        reuse: Reuse = []
        for r, code in enumerate(self.code):
            lent = lend and len(code) == same[r]
            reuse.append((code, same[r]) if not lent else (code, -1))
        new = Replay(streams, observer, locate, self.rule, reuse, self.keys)
        new.pc, new.batch_end, new.open = list(self.pc), list(self.batch_end), list(self.open)
        for mine, theirs in ((self.sends, new.sends), (self.recvs, new.recvs)):
            for chan, queue in mine.items():
                if queue:
                    theirs[chan] = deque(queue)
        new.gathering = {g: dict(members) for g, members in self.gathering.items()}
        if self.pend is not None:
            new.pend = [{end: list(c) for end, c in p.items()} for p in self.pend]
        new.sending = [deque(s) for s in self.sending]
        new.ahead = list(self.ahead)
        new.deferred = set(self.deferred)
        new.post_deferred()
        return new

    def take_back(self, same: list[int]) -> None:
        """The encoding lent to a fork (fork's `lend`) as it was before."""
        for code, n in zip(self.code, same, strict=True):
            code.truncate(n)

    def wake(self, r: int) -> None:
        if not self.queued[r]:
            self.queued[r] = True
            self.ready.append(r)

    def advance(self, r: int) -> None:
        if self.pend is not None:
            self.advance_overlapped(r)
            return
        code, finished = self.code[r], self.on_finished
        on_local, on_posted = self.on_local, self.on_posted
        batch_end, opened = self.batch_end, self.open
        kinds, ends = code.kind, code.end
        n, pc = len(code) if self.limit is None else self.limit[r], self.pc[r]
        while pc < n:
            kind, end = kinds[pc], ends[pc]
            if kind == LOCAL:
                if end > n:
                    end = n
                if on_local is not None:
                    on_local(r, pc, end)
                pc = end
            elif kind == MSG:
                if batch_end[r] < 0:  # post the batch (post's common case, inline)
                    if on_posted is not None:
                        on_posted(r, pc, end)
                    batch_end[r] = end
                    self.post_whole(r, pc, end, code)
                if opened[r]:
                    self.pc[r] = pc
                    return
                end = batch_end[r]
                batch_end[r] = -1
                if finished is not None:
                    finished(r, pc, end)
                pc = end
            else:
                self.pc[r] = pc
                if not self.gather(r, pc):
                    return
                pc += 1
        self.pc[r] = pc

    def post(self, r: int, lo: int, hi: int, part: bool | None = None) -> None:
        """Post the batch lo..hi as r reaches it; `part` (overlap rules only): just
        its sends (True; its receives were posted ahead) or just its receives
        (False: posted ahead)."""
        if part is False:
            self.obs.posted_early(r, lo, hi)
        else:
            self.obs.posted(r, lo, hi)
            self.batch_end[r] = hi
        code, sends, recvs, opened = self.code[r], self.sends, self.recvs, self.open
        matched, pend = self.on_matched, self.pend
        if pend is None and part is None:
            self.post_whole(r, lo, hi, code)
            return
        chans, sent, keys = code.chan, code.send, code.key
        for i in range(lo, hi):
            chan, is_send = chans[i], sent[i]
            if part is not None and bool(is_send) != part:
                continue
            theirs = (recvs if is_send else sends).get(chan)
            if theirs:  # the other end is there: the oldest unmatched one meets this one
                o_r, o_i = chan[1] if is_send else chan[0], theirs.popleft()
                if self.code[o_r].key[o_i] != keys[i]:
                    self.mismatch(*((r, i, o_r, o_i) if is_send else (o_r, o_i, r, i)))
                if matched is None:
                    pass
                elif is_send:
                    matched(r, i, o_r, o_i)
                else:
                    matched(o_r, o_i, r, i)
                if pend is None:
                    opened[o_r] -= 1
                    if not opened[o_r] and o_r != r:
                        self.wake(o_r)
                else:
                    pend[o_r][self.code[o_r].end[o_i]][not is_send] -= 1
                    if o_r != r:
                        self.wake(o_r)
            else:
                (sends if is_send else recvs)[chan].append(i)
                if pend is None:
                    opened[r] += 1
                else:
                    pend[r].setdefault(hi, [0, 0])[is_send] += 1

    def post_whole(self, r: int, lo: int, hi: int, code: RankCode) -> None:
        """post of a whole batch without an overlap rule (the common case, its
        own loop: the replay's hottest)."""
        sends, recvs, opened, codes = self.sends, self.recvs, self.open, self.code
        matched, queued, ready = self.on_matched, self.queued, self.ready
        chans, sent, keys = code.chan, code.send, code.key
        for i in range(lo, hi):
            chan, is_send, key = chans[i], sent[i], keys[i]
            theirs = (recvs if is_send else sends).get(chan)
            if theirs:  # the other end is there: the oldest unmatched one meets this one
                o_r, o_i = chan[1] if is_send else chan[0], theirs.popleft()
                if codes[o_r].key[o_i] != key:
                    self.mismatch(*((r, i, o_r, o_i) if is_send else (o_r, o_i, r, i)))
                if matched is not None:
                    if is_send:
                        matched(r, i, o_r, o_i)
                    else:
                        matched(o_r, o_i, r, i)
                left = opened[o_r] = opened[o_r] - 1
                if not left and o_r != r and not queued[o_r]:  # wake o_r (inline)
                    queued[o_r] = True
                    ready.append(o_r)
            else:
                (sends if is_send else recvs)[chan].append(i)
                opened[r] += 1

    def mismatch(self, sr: int, si: int, rr: int, ri: int) -> None:
        send, recv = self.streams[sr][si], self.streams[rr][ri]
        section, idx = self.locate(rr, ri)
        plain = (f"send/receive mismatch: rank {sr} instruction {si} ({send.label()}) meets "
                 f"rank {rr} instruction {ri} ({recv.label()})")
        raise self.fail(sr, si, f"send/receive mismatch: {send.label()} meets "
                        f"{recv.label()} on rank {rr} ({section} {idx})", ReplayMismatch,
                        plain=plain)

    def gather(self, r: int, i: int) -> bool:
        """Rank r stands at its collective i; True once the whole group is there
        (every member then stands one past it)."""
        group, stage = self.code[r].chan[i], self.streams[r][i].stage
        members = self.gathering.setdefault(group, {})
        members[r] = i
        if len(members) < len(group):
            return False
        del self.gathering[group]
        at = [(g, members[g]) for g in group]
        for g, j in at:
            other = self.streams[g][j].stage
            if other != stage:
                raise self.fail(r, i, f"ALLREDUCE mismatch: rank {g} reduces stage {other} "
                                f"while this rank reduces stage {stage}", ReplayMismatch,
                                plain=f"ALLREDUCE mismatch: rank {g} instruction {j} "
                                f"reduces stage {other}, rank {r} instruction {i} stage "
                                f"{stage}")
        self.obs.collective(at)
        for g, j in at:
            if g != r:
                self.pc[g] = j + 1
                self.wake(g)
        return True

    # ---- reporting ------------------------------------------------------------------
    def stuck(self) -> list[int]:
        return [r for r in range(len(self.streams))
                if self.pc[r] < len(self.code[r]) or self.sending[r]]

    def report_stuck(self) -> None:
        stuck = self.stuck()
        if not stuck:
            return
        if self.pend is not None:
            blocked = [self.blocked(r) for r in stuck]
            parts = [f"rank {b.rank} at {' '.join(map(str, self.locate(b.rank, b.index)))} "
                     f"({b.label}): {b.waiting_for}" for b in blocked]
            b = blocked[0]
            raise self.fail(b.rank, b.index, "deadlock: " + "; ".join(parts), ReplayDeadlock,
                            blocked=blocked)
        parts = []
        for r in stuck:
            section, idx = self.locate(r, self.pc[r])
            parts.append(f"rank {r} at {section} {idx} ({self.streams[r][self.pc[r]].label()})")
        raise self.fail(stuck[0], self.pc[stuck[0]], "deadlock: " + "; ".join(parts),
                        ReplayDeadlock, blocked=[self.blocked(r) for r in stuck])

    def blocked(self, r: int) -> Blocked:
        pc = self.pc[r]
        if self.pend is not None:
            return self.blocked_overlapped(r)
        kind, chan, stage = self.code[r].kind[pc], self.code[r].chan[pc], self.streams[r][pc].stage
        if kind == COLL:
            got = len(self.gathering.get(chan, {}))
            why = f"all-reduce of stage {stage} has {got} of {len(chan)} ranks"
            return Blocked(r, pc, self.streams[r][pc].label(), why)
        for i in range(pc, self.batch_end[r]):  # the first message still unmatched
            chan, is_send = self.code[r].chan[i], self.code[r].send[i]
            if i in (self.sends if is_send else self.recvs).get(chan, ()):
                ins = self.streams[r][i]
                why = (f"no matching RECV on rank {ins.peer}" if is_send
                       else f"no matching SEND from rank {ins.peer}")
                return Blocked(r, i, ins.label(), why)
        return Blocked(r, pc, self.streams[r][pc].label(), "blocked")  # pragma: no cover
