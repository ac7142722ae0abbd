"""Simulate a compiled program directory: unroll, execute, keep what viz needs."""

from __future__ import annotations

from dataclasses import dataclass

from schedc.errors import UserError
from schedc.overlap import Overlap
from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.simulate.contention import simulate_shared
from schedc.simulate.costs import CostModel, unit_costs
from schedc.simulate.engine import Timeline


@dataclass
class Simulation:
    """One simulated run: the programs, the cost model and the timeline.

    body_ends[r][k]: index one past the last instruction of body repetition k
    in rank r's unrolled stream; body_starts[r][k] its first index.
    """

    manifest: Manifest
    costs: CostModel
    steps: int
    timeline: Timeline
    body_starts: list[list[int]]
    body_ends: list[list[int]]
    name: str = ""


def simulate(
    manifest: Manifest,
    programs: list[RankProgram],
    costs: CostModel | None = None,
    steps: int = 1,
    serial_comm: bool | None = None,
    name: str = "",
    lazy_recv: bool = False,
    rule: Overlap | None = None,
) -> Simulation:
    """Run prologue + body x steps + epilogue of every rank under `costs`, and
    under the overlap rule `rule` (default: the manifest's, schedc/overlap.py).
    serial_comm None: as the profile's `comm` says (overlap when it says nothing)."""
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    costs = costs or unit_costs()
    if serial_comm is None:
        serial_comm = costs.comm == "serial"
    costs.check_stages(manifest.num_stages)
    programs = sorted(programs, key=lambda p: p.rank)
    if [p.rank for p in programs] != list(range(manifest.world_size)):
        raise UserError(f"expected one program per rank 0..{manifest.world_size - 1}, "
                        f"got ranks {[p.rank for p in programs]}")
    streams = [unroll(p, steps, manifest.period) for p in programs]
    if rule is None:
        rule = Overlap.from_dict(manifest.overlap)
    timeline = simulate_shared(streams, costs, serial_comm, lazy_recv, rule)
    starts, ends = [], []
    for p in programs:
        first = len(p.prologue)
        starts.append([first + k * len(p.body) for k in range(steps)])
        ends.append([first + (k + 1) * len(p.body) for k in range(steps)])
    return Simulation(manifest, costs, steps, timeline, starts, ends, name)


def unroll(program: RankProgram, repeats: int, period: Period) -> list[Instr]:
    """The program's stream for `repeats` body repetitions (`RankProgram.unrolled`,
    the one unrolling)."""
    if repeats < 1:
        raise UserError("a program runs its body at least once")
    return program.unrolled(repeats, period)
