"""The replay under an overlap rule (K posted batches > 1, early receives;
schedc/overlap.py, docs/programs.md "Overlap"): how a rank advances, waits
for its sends and posts receives ahead, and where it is blocked. The rest of
the replay, matching included, is schedc.replay's, whose Replay holds the
state these methods read (pend, sending, ahead, deferred)."""

from __future__ import annotations

from schedc.replay_code import COLL, LOCAL, MSG
from schedc.replay_events import Blocked


class OverlapRules:
    """Replay's methods for overlap rules (mixed into schedc.replay.Replay)."""

    def advance_overlapped(self, r: int) -> None:
        code, obs, pend, sending = self.code[r], self.obs, self.pend[r], self.sending[r]
        kinds, ends = code.kind, code.end
        n, pc = len(code), self.pc[r]
        stop = n if self.limit is None else self.limit[r]
        while True:
            if pc >= stop and stop < n:  # a limit (run_to): the rest waits
                self.pc[r] = pc
                return
            if pc >= n or kinds[pc] == COLL:  # a drain point: every send completed first
                self.pc[r] = pc
                if not self.sends_done(r, 0) or pc >= n or not self.gather(r, pc):
                    return
                pc += 1
                continue
            kind, end = kinds[pc], ends[pc]
            if kind == LOCAL:
                end = min(end, stop)
                obs.local(r, pc, end)
                pc = end
                continue
            self.pc[r] = pc
            if self.batch_end[r] < 0:
                ahead = self.ahead[r] == pc
                self.ahead[r] = -1
                self.post(r, pc, end, True if ahead else None)
                if any(code.send[pc:end]):
                    sending.append((pc, end))
            if pend.get(end, (0, 0))[0] or not self.sends_done(r, self.k - 1):
                return
            self.batch_end[r] = -1
            obs.finished(r, pc, end)
            pc = end
            if self.early:
                self.post_ahead(r, pc)

    def sends_done(self, r: int, keep: int) -> bool:
        """Wait for the oldest batches' sends until at most `keep` batches hold
        sends; False while one of them is unmatched."""
        sending, pend = self.sending[r], self.pend[r]
        while len(sending) > keep:
            lo, hi = sending[0]
            if pend.get(hi, (0, 0))[1]:
                return False
            sending.popleft()
            self.obs.sends_waited(r, lo, hi)
        return True

    def post_ahead(self, r: int, pc: int) -> None:
        """Post the receives of the next batch after pc, unless a collective or
        the end of the stream comes first."""
        kinds, ends, sent = self.code[r].kind, self.code[r].end, self.code[r].send
        n = len(kinds)
        while pc < n and kinds[pc] == LOCAL:
            pc = ends[pc]
        if self.limit is not None and pc >= self.limit[r] and pc < n:
            self.deferred.add(r)  # past the limit: posted when the limit moves (run_to, fork)
            return
        if pc < n and kinds[pc] == MSG:
            end = ends[pc]
            if not all(sent[pc:end]):
                self.ahead[r] = pc
                self.post(r, pc, end, False)

    def blocked_overlapped(self, r: int) -> Blocked:
        pc, code = self.pc[r], self.code[r]
        if pc < len(code) and code.kind[pc] == COLL and r in self.gathering.get(code.chan[pc], {}):
            chan, stage = code.chan[pc], self.streams[r][pc].stage
            why = f"all-reduce of stage {stage} has {len(self.gathering[chan])} of " \
                  f"{len(chan)} ranks"
            return Blocked(r, pc, self.streams[r][pc].label(), why)
        waits = [(pc, self.batch_end[r], False)] if self.batch_end[r] >= 0 else []
        waits += [(lo, hi, True) for lo, hi in self.sending[r]]
        for lo, hi, send in waits:  # the current batch's receives, then the oldest sends
            for i in range(lo, hi):
                chan, is_send = code.chan[i], bool(code.send[i])
                if is_send == send and i in (self.sends if send else self.recvs).get(
                        chan, ()):
                    ins = self.streams[r][i]
                    why = (f"no matching RECV on rank {ins.peer}" if is_send
                           else f"no matching SEND from rank {ins.peer}")
                    return Blocked(r, i, ins.label(), why)
        i = min(pc, len(code) - 1)  # pragma: no cover
        return Blocked(r, i, self.streams[r][i].label(), "blocked")  # pragma: no cover
