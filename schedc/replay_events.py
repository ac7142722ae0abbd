"""What a replay (schedc.replay) tells its clients: the observer's
callbacks, and where a replay that cannot finish stops (Blocked,
ReplayDeadlock, ReplayMismatch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schedc.errors import VerifyError

Locate = Callable[[int, int], tuple[str, int]]  # (rank, stream index) -> (section, index)


def stream_locate(rank: int, index: int) -> tuple[str, int]:
    return "stream", index


@dataclass(frozen=True)
class Blocked:
    """Where a rank of a hung replay waits, and for what."""

    rank: int
    index: int  # in the rank's stream
    label: str
    waiting_for: str


class ReplayDeadlock(VerifyError):
    """Every unfinished rank is blocked; `blocked` says where and why."""

    def __init__(self, reason: str, blocked: list[Blocked], **where) -> None:
        super().__init__(reason, **where)
        self.blocked = blocked


class ReplayMismatch(VerifyError):
    """A send met a receive for something else, or a collective met another."""

    def __init__(self, reason: str, plain: str, **where) -> None:
        super().__init__(reason, **where)
        self.plain = plain  # the same, naming both ends by rank and stream index


class Observer:
    """Callbacks of a replay; the defaults do nothing (a pure progress check).

    local(r, lo, hi): rank r runs instructions lo..hi-1, none a message or a
    collective. posted(r, lo, hi): rank r posts the batch lo..hi-1.
    matched(sr, si, rr, ri): the send at (sr, si) meets the receive at (rr, ri).
    finished(r, lo, hi): every message of r's batch has been matched (under an
    overlap rule: every receive); r goes on. collective(members): the (rank,
    index) of each member of a completed collective, in group order.
    Overlap rules only: posted_early(r, lo, hi): r posts the receives of the
    batch lo..hi ahead (`posted` follows when r reaches the batch);
    sends_waited(r, lo, hi): r has waited for the sends of its batch lo..hi.
    """

    def local(self, r: int, lo: int, hi: int) -> None:
        pass

    def posted(self, r: int, lo: int, hi: int) -> None:
        pass

    def matched(self, sr: int, si: int, rr: int, ri: int) -> None:
        pass

    def finished(self, r: int, lo: int, hi: int) -> None:
        pass

    def collective(self, members: list[tuple[int, int]]) -> None:
        pass

    def posted_early(self, r: int, lo: int, hi: int) -> None:
        pass

    def sends_waited(self, r: int, lo: int, hi: int) -> None:
        pass


def does(obs: Observer, name: str) -> bool:
    """Whether `obs` does something on callback `name` (not Observer's no-op)."""
    if isinstance(obs, Fanout):
        return any(does(o, name) for o in obs.observers)
    return getattr(type(obs), name) is not getattr(Observer, name)


class Fanout(Observer):
    """Several observers of one replay, called in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers
        # the per-message callback: only to the observers that do something on it
        self._matched = [o.matched for o in observers if does(o, "matched")]

    def local(self, r: int, lo: int, hi: int) -> None:
        for o in self.observers:
            o.local(r, lo, hi)

    def posted(self, r: int, lo: int, hi: int) -> None:
        for o in self.observers:
            o.posted(r, lo, hi)

    def matched(self, sr: int, si: int, rr: int, ri: int) -> None:
        for matched in self._matched:
            matched(sr, si, rr, ri)

    def finished(self, r: int, lo: int, hi: int) -> None:
        for o in self.observers:
            o.finished(r, lo, hi)

    def collective(self, members: list[tuple[int, int]]) -> None:
        for o in self.observers:
            o.collective(members)

    def posted_early(self, r: int, lo: int, hi: int) -> None:
        for o in self.observers:
            o.posted_early(r, lo, hi)

    def sends_waited(self, r: int, lo: int, hi: int) -> None:
        for o in self.observers:
            o.sends_waited(r, lo, hi)
