"""Program mutations for the verifier tests, and where the verifier must point."""

from __future__ import annotations

from dataclasses import replace

from schedc.compiler import Compiled
from schedc.deadlock import matches
from schedc.errors import VerifyError
from schedc.program import COMM_OPS, RECV_OPS, Instr, RankProgram
from schedc.unroll import Unrolled
from schedc.verify import verify


def with_body(c: Compiled, rank: int, body: list[Instr]) -> list[RankProgram]:
    progs = list(c.programs)
    progs[rank] = replace(progs[rank], body=tuple(body))
    return progs


def rejection(c: Compiled, programs: list[RankProgram]) -> VerifyError:
    try:
        verify(c.manifest, programs)
    except VerifyError as exc:
        return exc
    raise AssertionError("the verifier accepted a broken program")


def sending_site(c: Compiled, rank: int, recv: Instr) -> tuple[int, str, int, str]:
    """(rank, section, index, batch section/index) of the send matching `recv` (N=1)."""
    un = Unrolled.of(c.programs, c.manifest.period, 1)
    peer = recv.peer
    for i, ins in enumerate(un.streams[peer]):
        if ins.op in COMM_OPS and ins.op not in RECV_OPS and matches(ins, recv):
            start = i
            while start > 0 and un.streams[peer][start - 1].op in COMM_OPS:
                start -= 1
            section, idx = un.locate(peer, i)
            bsec, bidx = un.locate(peer, start)
            return peer, section, idx, f"rank {peer} at {bsec} {bidx}"
    raise AssertionError(f"no send for {recv.label()}")


def names_send(err: VerifyError, site: tuple[int, str, int, str]) -> bool:
    """A mismatch names the send itself; a deadlock lists the sender's blocked batch."""
    rank, section, idx, blocked = site
    if (err.rank, err.section, err.index) == (rank, section, idx):
        return True
    return err.reason.startswith("deadlock") and blocked in err.reason
