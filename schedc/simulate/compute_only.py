"""Compute-only orders (PyTorch's pipelining CSV) to full programs with comms.

PyTorch's `torch.distributed.pipelining` exports a schedule as a CSV with one
row per rank and one cell per action, `<stage><op><mb>` (`0F0`, `1B3`, `2I0`,
`2W0`); empty cells are idle slots. Such a schedule is one synchronous step.
We infer the communication: where consecutive stages sit on different ranks,
a SEND after the producing op and a RECV before the consuming one.

Placement: each RECV right before its consumer and each SEND right after its
producer, so consecutive ones form one batch (batch_isend_irecv), which is
deadlock-free for the usual orders (1F1B's send-forward/receive-backward pair
is one batch). Should that placement hang, the receives are placed by a global
execution instead: running all ranks' orders together and emitting each send
and its receive at the same point of one sequence always completes, at the
price of receives posted early.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from schedc.errors import UserError
from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.simulate.costs import unit_costs
from schedc.simulate.engine import Deadlock, simulate_streams

Action = tuple[int, str, int]  # (stage, op, mb)
_CELL = re.compile(r"^\s*(\d+)\s*([FBIW])\s*(\d+)\s*$")


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
    streams = _global_placement(orders, owner, stages)
    lazy = [_local_placement(order, r, owner, stages) for r, order in enumerate(orders)]
    try:
        simulate_streams(lazy, unit_costs())
        streams = lazy
    except Deadlock:
        pass
    for r, stream in enumerate(streams):
        for s in sorted({s for s, o in owner.items() if o == r}):
            stream.append(Instr("STEP", stage=s, pipeline=0, version=1, count=mbs))
    manifest = Manifest(
        spec={"name": name}, spec_hash="", world_size=len(orders), num_stages=stages,
        num_pipelines=1, stage_to_rank=(tuple(owner[s] for s in range(stages)),),
        period=Period(mbs, 1), synchronous=True,
    )
    return manifest, [RankProgram(r, body=tuple(s)) for r, s in enumerate(streams)]


def _local_placement(order: Sequence[Action], r: int, owner: dict[int, int],
                     stages: int) -> list[Instr]:
    out: list[Instr] = []
    for s, op, mb in order:
        up, down = owner.get(s - 1), owner.get(s + 1)
        if op == "F" and up is not None and up != r:
            out.append(Instr("RECV_ACT", stage=s, mb=mb, pipeline=0, peer=up))
        if op in ("B", "I") and down is not None and down != r:
            out.append(Instr("RECV_GRAD", stage=s, mb=mb, pipeline=0, peer=down))
        out.append(Instr(op, stage=s, mb=mb, pipeline=0, version=0))
        if op == "F" and down is not None and down != r:
            out.append(Instr("SEND_ACT", stage=s, mb=mb, pipeline=0, peer=down))
        if op in ("B", "I") and up is not None and up != r:
            out.append(Instr("SEND_GRAD", stage=s, mb=mb, pipeline=0, peer=up))
        if op in ("B", "W"):
            out.append(Instr("ACC", stage=s, mb=mb, pipeline=0))
    return out


def _global_placement(orders: Sequence[Sequence[Action]], owner: dict[int, int],
                      stages: int) -> list[list[Instr]]:
    streams: list[list[Instr]] = [[] for _ in orders]
    done: set[tuple[str, int, int]] = set()
    pcs = [0] * len(orders)
    progress = True
    while progress:
        progress = False
        for r, order in enumerate(orders):
            while pcs[r] < len(order) and _ready(order[pcs[r]], done, stages):
                _emit(order[pcs[r]], r, owner, streams, done, stages)
                pcs[r] += 1
                progress = True
    stuck = [(r, order[pcs[r]]) for r, order in enumerate(orders) if pcs[r] < len(order)]
    if stuck:
        r, (s, op, mb) = stuck[0]
        raise UserError(f"compute order cannot run: rank {r} waits forever at {s}{op}{mb} "
                        "(its input is never produced before it)")
    return streams


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


def _ready(action: Action, done: set, stages: int) -> bool:
    s, op, mb = action
    if op == "F":
        return s == 0 or ("F", s - 1, mb) in done
    if op == "W":
        return ("I", s, mb) in done
    return ("F", s, mb) in done and (s == stages - 1 or ("G", s + 1, mb) in done)


def _emit(action: Action, r: int, owner: dict[int, int], streams: list[list[Instr]],
          done: set, stages: int) -> None:
    s, op, mb = action
    streams[r].append(Instr(op, stage=s, mb=mb, pipeline=0, version=0))
    if op == "F":
        done.add(("F", s, mb))
        peer = owner.get(s + 1)
        if peer is not None and peer != r:
            streams[r].append(Instr("SEND_ACT", stage=s, mb=mb, pipeline=0, peer=peer))
            streams[peer].append(Instr("RECV_ACT", stage=s + 1, mb=mb, pipeline=0, peer=r))
        return
    if op in ("B", "I"):
        done.add(("G", s, mb))
        done.add((op, s, mb))
        peer = owner.get(s - 1)
        if peer is not None and peer != r:
            streams[r].append(Instr("SEND_GRAD", stage=s, mb=mb, pipeline=0, peer=peer))
            streams[peer].append(Instr("RECV_GRAD", stage=s - 1, mb=mb, pipeline=0, peer=r))
    if op in ("B", "W"):
        streams[r].append(Instr("ACC", stage=s, mb=mb, pipeline=0))
