"""Event-driven execution of every rank's instruction stream under a cost model.

Two clocks matter and are kept apart:

- *Progress* (which rank may run its next instruction) is the replay core's
  (`schedc.replay`), the rules the verifier proves and the runtime follows: a
  maximal run of consecutive sends and receives on a rank is one batch, posted
  at once and waited for whole; the k-th send on a (sender, receiver,
  pipeline) channel meets the k-th receive on it; an ALLREDUCE completes when
  its whole group stands at it. Progress that stalls with instructions left is
  a `Deadlock`, named per rank, never a loop. This module is only the clock:
  an observer of that replay.
- *Time* follows the cost model. With overlapping communication (the default)
  communication runs beside compute: a send leaves when posted and never
  holds its rank; a batch's receives hold the rank until their data has
  arrived, as the runtime waits on the batch (and as the compiler's analysis
  counts). With `lazy_recv` a receive holds only the compute op that consumes
  it (receives prefetched on their own stream). With `serial_comm` a batch
  blocks its rank until every message in it has arrived, and a transfer
  starts only when both ends are posted.

Each directed link carries one message at a time, in the sender's order:
transfer = bytes / bandwidth, then latency until arrival.

Under an overlap rule (`rule`, the manifest's `overlap`: K posted batches,
receives posted ahead) progress and time follow that rule instead: a send
completes in the background and holds its rank only where the replay waits
for it, and a receive posted ahead starts when posted, so with `serial_comm`
its data travels while the rank computes (docs/programs.md, "Overlap").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedc.clock import Clock
from schedc.errors import UserError
from schedc.overlap import DEFAULT, Overlap
from schedc.program import Instr
from schedc.replay import Replay, ReplayDeadlock, ReplayMismatch
from schedc.simulate.costs import CostModel


@dataclass(frozen=True)
class BlockedAt:
    rank: int
    index: int  # in the rank's unrolled stream
    label: str
    waiting_for: str


class Deadlock(UserError):
    """The programs would hang: every unfinished rank is blocked."""

    def __init__(self, blocked: Sequence[BlockedAt]) -> None:
        self.blocked = list(blocked)
        lines = [f"  rank {b.rank}, instruction {b.index} ({b.label}): {b.waiting_for}"
                 for b in self.blocked]
        super().__init__("deadlock: the programs would hang\n" + "\n".join(lines))


@dataclass
class Timeline:
    """When every instruction of every rank's unrolled stream ran.

    For compute and local ops, [start, end) is time on the rank's stream. For
    a send, start = posted, end = arrival at the peer; for a receive, start =
    posted, end = data available. messages: (send rank, send index, recv rank,
    recv index) in the order they were matched.
    """

    streams: list[list[Instr]]
    starts: list[list[float]]
    ends: list[list[float]]
    messages: list[tuple[int, int, int, int]]
    serial_comm: bool
    overlapped: bool = False  # under an overlap rule with K > 1 (sends in the background)

    @property
    def comm_on_clock(self) -> bool:
        """Do messages occupy their rank's stream (--serial-comm under K = 1)? Else
        they run beside compute: a timeline draws them on a row of their own."""
        return self.serial_comm and not self.overlapped

    @property
    def makespan(self) -> float:
        return max((max(e) for e in self.ends if e), default=0.0)


def simulate_streams(
    streams: Sequence[Sequence[Instr]], costs: CostModel, serial_comm: bool = False,
    lazy_recv: bool = False, rule: Overlap = DEFAULT,
) -> Timeline:
    """Run every rank's unrolled stream under the overlap rule `rule`; raise
    `Deadlock` if progress stalls."""
    clock = Clock([list(s) for s in streams], costs, serial_comm, lazy_recv,
                  overlap=rule.overlapped)
    try:
        Replay(clock.streams, clock, rule=rule).run()
    except ReplayDeadlock as exc:
        raise Deadlock([BlockedAt(b.rank, b.index, b.label, b.waiting_for)
                        for b in exc.blocked]) from None
    except ReplayMismatch as exc:
        raise MessageMismatch(exc.plain) from None
    return Timeline(clock.streams, clock.starts, clock.ends, clock.messages, clock.serial,
                    rule.overlapped)


class MessageMismatch(UserError):
    """The k-th send on a channel meets a receive for something else."""
