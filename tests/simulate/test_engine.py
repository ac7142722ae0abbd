"""The engine on hand-written programs: hand-computed times, deadlocks."""

from __future__ import annotations

import pytest

from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.simulate import Deadlock, figures, simulate
from schedc.simulate.costs import costs_from_dict


def _i(op: str, **kw) -> Instr:
    return Instr(op, pipeline=0, **kw)


def two_rank_gpipe(drop: str | None = None) -> tuple[Manifest, list[RankProgram]]:
    """Stage 0 on rank 0, stage 1 on rank 1, two micro-batches, fill-drain."""
    r0 = [
        _i("F", stage=0, mb=0, version=0), _i("SEND_ACT", stage=0, mb=0, peer=1),
        _i("F", stage=0, mb=1, version=0), _i("SEND_ACT", stage=0, mb=1, peer=1),
        _i("RECV_GRAD", stage=0, mb=0, peer=1), _i("B", stage=0, mb=0, version=0),
        _i("RECV_GRAD", stage=0, mb=1, peer=1), _i("B", stage=0, mb=1, version=0),
        _i("STEP", stage=0, version=1, count=2),
    ]
    r1 = [
        _i("RECV_ACT", stage=1, mb=0, peer=0), _i("F", stage=1, mb=0, version=0),
        _i("RECV_ACT", stage=1, mb=1, peer=0), _i("F", stage=1, mb=1, version=0),
        _i("B", stage=1, mb=0, version=0), _i("SEND_GRAD", stage=1, mb=0, peer=0),
        _i("B", stage=1, mb=1, version=0), _i("SEND_GRAD", stage=1, mb=1, peer=0),
        _i("STEP", stage=1, version=1, count=2),
    ]
    if drop:
        r1 = [i for i in r1 if i.label() != drop]
    manifest = Manifest(spec={"name": "hand"}, spec_hash="", world_size=2, num_stages=2,
                        num_pipelines=1, stage_to_rank=((0, 1),), period=Period(2, 1),
                        synchronous=True)
    return manifest, [RankProgram(0, body=tuple(r0)), RankProgram(1, body=tuple(r1))]


COSTS = costs_from_dict({
    "format": "schedc-costs", "version": 1, "unit": "s",
    "stages": [{"F": 1, "B": 2, "STEP": 0.5}, {"F": 2, "B": 3, "STEP": 1}],
    "activation_bytes": 100, "grad_bytes": 50, "link": {"latency": 0.5, "bandwidth": 100},
})


def test_unit_costs_two_ranks() -> None:
    fig = figures(simulate(*two_rank_gpipe()))
    assert fig.makespan == 9  # (m + p - 1) * (F + B)
    assert fig.bubble_ratio == pytest.approx(1 / 3)


def test_hand_computed_makespan_overlapped_comm() -> None:
    # rank 0: F0 [0,1] F1 [1,2]; act 0 on the wire [1,2] lands 2.5, act 1 [2,3] lands 3.5.
    # rank 1: F0 [2.5,4.5] F1 [4.5,6.5] B0 [6.5,9.5] B1 [9.5,12.5] STEP [12.5,13.5];
    # grad 0 leaves 9.5, lands 10.5; grad 1 leaves 12.5, lands 13.5.
    # rank 0: B0 [10.5,12.5] B1 [13.5,15.5] STEP [15.5,16].
    sim = simulate(*two_rank_gpipe(), COSTS)
    assert figures(sim).makespan == pytest.approx(16.0)
    assert sim.timeline.starts[1][1] == pytest.approx(2.5)
    assert sim.timeline.starts[0][7] == pytest.approx(13.5)


def test_hand_computed_makespan_serial_comm() -> None:
    # Both ends block for the transfer: act 0 [1,2.5], act 1 [4.5,6] (rank 1 busy until 4.5),
    # grad 0 [11,12], grad 1 [15,16]; rank 0: B0 [12,14] B1 [16,18] STEP [18,18.5].
    sim = simulate(*two_rank_gpipe(), COSTS, serial_comm=True)
    assert figures(sim).makespan == pytest.approx(18.5)


def test_dropped_receive_is_a_deadlock_naming_each_rank() -> None:
    # Rank 0 posts [SEND_ACT mb1, RECV_GRAD mb0] as one batch: the receive is
    # matched, the send never is; rank 1 then waits in its SEND_GRAD mb1.
    with pytest.raises(Deadlock) as info:
        simulate(*two_rank_gpipe(drop="RECV_ACT s1 mb1 <-0"))
    blocked = {(b.rank, b.index, b.label) for b in info.value.blocked}
    assert blocked == {(0, 3, "SEND_ACT s0 mb1 ->1"), (1, 6, "SEND_GRAD s1 mb1 ->0")}
    text = info.value.render()
    assert "deadlock" in text and "rank 0, instruction 3 (SEND_ACT s0 mb1 ->1)" in text


def test_missing_allreduce_partner_is_a_deadlock() -> None:
    manifest = Manifest(spec={}, spec_hash="", world_size=2, num_stages=1, num_pipelines=2,
                        stage_to_rank=((0,), (1,)), period=Period(2, 1), synchronous=True)
    ar = Instr("ALLREDUCE", stage=0, pipeline=0, group=(0, 1))
    progs = [RankProgram(0, body=(ar,)), RankProgram(1, body=())]
    with pytest.raises(Deadlock) as info:
        simulate(manifest, progs)
    assert info.value.blocked[0].rank == 0
    assert "1 of 2 ranks" in info.value.blocked[0].waiting_for


def test_versions_give_inconsistency_and_delay() -> None:
    manifest, progs = two_rank_gpipe()
    fig = figures(simulate(manifest, progs, steps=3))
    assert fig.inconsistency_histogram == {0: 12}
    assert fig.delay_histogram == {0: 12}


def test_fast_unroll_equals_unrolled() -> None:
    from schedc.simulate.run import unroll

    prog = RankProgram(0, prologue=(_i("F", stage=0, mb=0, version=0),),
                       body=(_i("F", stage=0, mb=1, version=0), _i("ACC", stage=0, mb=1),
                             Instr("STEP", stage=0, pipeline=0, version=1, count=2)),
                       epilogue=(_i("B", stage=0, mb=2, version=1),))
    period = Period(2, 1)
    slow = [*prog.prologue, *(i.shifted(2 * k, k) for k in range(3) for i in prog.body),
            *(i.shifted(4, 2) for i in prog.epilogue)]
    assert unroll(prog, 3, period) == prog.unrolled(3, period) == slow
    assert hash(unroll(prog, 3, period)[4]) == hash(slow[4])
