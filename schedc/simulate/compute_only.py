"""Compute-only orders (PyTorch's pipelining CSV) to full programs with comms.

PyTorch's `torch.distributed.pipelining` exports a schedule as a CSV with one
row per rank and one cell per action, `<stage><op><mb>` (`0F0`, `1B3`, `2I0`,
`2W0`); empty cells are idle slots. Such a schedule is one synchronous step.
We infer the communication: where consecutive stages sit on different ranks,
a SEND after the producing op and a RECV before the consuming one.

Placement: each RECV right before its consumer and each SEND right after its
producer, so consecutive ones form one batch (batch_isend_irecv), which is
deadlock-free for the usual orders (1F1B's send-forward/receive-backward pair
is one batch). Should that placement hang, the replay core's repair
(`schedc.deadlock.place_receives`, the lowering's own) posts the receives a
waiting send needs earlier, where the replay stood. Then one more replay checks
that every op's input is there when it runs (the instruction table's `needs`),
so an order that cannot run is an error naming its rank and op.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from schedc.deadlock import place_receives
from schedc.errors import UserError, VerifyError
from schedc.instructions import (
    AROUND,
    COMPUTE_OPS,
    RECV_OPS,
    TABLE,
    resolve_needs,
    schedule_compute_ops,
)
from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.replay import Observer, Replay

Action = tuple[int, str, int]  # (stage, op, mb)
_CELL = re.compile(r"^\s*(\d+)\s*(" + "|".join(COMPUTE_OPS) + r")\s*(\d+)\s*$")


def load_csv(path: str | Path) -> tuple[Manifest, list[RankProgram]]:
    """Read a PyTorch compute-only CSV into programs (one synchronous step)."""
    orders: list[list[Action]] = []
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    for r, row in enumerate(rows):
        actions = []
        for c, cell in enumerate(row):
            if not cell.strip():
                continue
            match = _CELL.match(cell)
            if not match:
                raise UserError(f"{path}:{r + 1}:{c + 1}: cell {cell!r} is not a compute "
                                "action like 0F0, 1B3, 2I0 or 2W0 (compute-only CSV expected)")
            actions.append((int(match[1]), match[2], int(match[3])))
        orders.append(actions)
    if not any(orders):
        raise UserError(f"{path}: no actions")
    return programs_from_orders(orders, name=Path(path).stem)


def programs_from_orders(
    orders: Sequence[Sequence[Action]], name: str = "compute-only"
) -> tuple[Manifest, list[RankProgram]]:
    """Programs for one synchronous step from per-rank compute orders."""
    owner = _stage_owners(orders)
    stages = len(owner)
    mbs = 1 + max(mb for order in orders for _, _, mb in order)
    whole = schedule_compute_ops(False)  # F, B: any other compute op splits the backward
    split = any(op not in whole for order in orders for _, op, _ in order)
    streams = [_local_placement(order, r, owner) for r, order in enumerate(orders)]
    try:
        place_receives(streams)
        Replay(streams, _Inputs(streams, owner, split)).run()
    except VerifyError as exc:
        where = f"rank {exc.rank}: " if exc.rank is not None else ""
        raise UserError(f"compute order cannot run: {where}{exc.reason}") from None
    for r, stream in enumerate(streams):
        for s in sorted({s for s, o in owner.items() if o == r}):
            stream.append(Instr("STEP", stage=s, pipeline=0, version=1, count=mbs))
    manifest = Manifest(
        spec={"name": name}, spec_hash="", world_size=len(orders), num_stages=stages,
        num_pipelines=1, stage_to_rank=(tuple(owner[s] for s in range(stages)),),
        period=Period(mbs, 1), synchronous=True,
    )
    return manifest, [RankProgram(r, body=tuple(s)) for r, s in enumerate(streams)]


class _Inputs(Observer):
    """Each compute op's inputs (the table's `needs`) ran before it: on this rank,
    or on another whose message this rank has received."""

    def __init__(self, streams: list[list[Instr]], owner: dict[int, int], split: bool) -> None:
        self.streams, self.owner, self.split = streams, owner, split
        self.done: set[tuple[str, int, int]] = set()
        self.received: list[set[tuple[str, int, int]]] = [set() for _ in streams]

    def posted(self, r: int, lo: int, hi: int) -> None:
        for ins in self.streams[r][lo:hi]:
            if ins.op in RECV_OPS:
                self.received[r].add((TABLE[ins.op].message, ins.stage, ins.mb))

    def local(self, r: int, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            ins = self.streams[r][i]
            for kind, offset in resolve_needs(ins.op, self.split):
                s = ins.stage + offset
                if s not in self.owner:
                    continue
                here = self.owner[s] == r
                if (here and (kind, s, ins.mb) not in self.done) or \
                        (not here and (_CARRIER[offset], ins.stage, ins.mb)
                         not in self.received[r]):
                    raise VerifyError(f"waits forever at {ins.stage}{ins.op}"
                                      f"{ins.mb} (its input {s}{kind}{ins.mb} is never "
                                      "produced before it)", rank=r, index=i)
            self.done.add((ins.op, ins.stage, ins.mb))


# The message kind that brings an input from stage s + offset to stage s.
_CARRIER = {-TABLE[recv].hop: TABLE[recv].message for recv in RECV_OPS}


def _local_placement(order: Sequence[Action], r: int, owner: dict[int, int]) -> list[Instr]:
    """A rank's compute order with its messages and ACCs, from the table's
    `AROUND` (the lowering's rule): before an op, the receives it consumes
    (when another rank holds the stage they come from); after it, the sends
    of what it produced (to another rank) and its local followers (ACC)."""
    out: list[Instr] = []
    for s, op, mb in order:
        around = AROUND[op]
        for recv, offset, _ in around.receives:
            peer = owner.get(s + offset)
            if peer is not None and peer != r:
                out.append(Instr(recv, stage=s, mb=mb, pipeline=0, peer=peer))
        out.append(Instr(op, stage=s, mb=mb, pipeline=0, version=0))
        for send, offset in around.sends:
            peer = owner.get(s + offset)
            if peer is not None and peer != r:
                out.append(Instr(send, stage=s, mb=mb, pipeline=0, peer=peer))
        out.extend(Instr(name, stage=s, mb=mb, pipeline=0) for name in around.local)
    return out


def _stage_owners(orders: Sequence[Sequence[Action]]) -> dict[int, int]:
    owner: dict[int, int] = {}
    for r, order in enumerate(orders):
        for s, _, _ in order:
            if owner.setdefault(s, r) != r:
                raise UserError(f"stage {s} appears on ranks {owner[s]} and {r}; "
                                "a compute-only order must place each stage on one rank")
    if sorted(owner) != list(range(len(owner))):
        raise UserError(f"stages must be 0..{len(owner) - 1}, got {sorted(owner)}")
    return owner
