"""Ranks sharing cores (schedc/simulate/contention.py): hand-computed timelines
under processor sharing, with and without the ranks' background threads."""

from __future__ import annotations

import pytest

from schedc.program import Instr
from schedc.simulate.contention import compute_capacity, simulate_shared
from schedc.simulate.costs import CostsError, costs_from_dict

HEAD = {"format": "schedc-costs", "version": 1, "unit": "unit"}
# stage r's F takes r + 1 units
TIMES = [{"F": 1.0}, {"F": 2.0}, {"F": 3.0}, {"F": 4.0}]


def model(**fields):
    return costs_from_dict({**HEAD, "stages": TIMES, **fields}, "c.json")


def independent() -> list[list[Instr]]:
    """4 ranks, no messages: rank r runs two F of stage r (2, 4, 6, 8 units)."""
    return [[Instr("F", stage=r, mb=j) for j in range(2)] for r in range(4)]


def test_four_ranks_on_two_cores_share_them_fairly() -> None:
    # Processor sharing by hand: 4 ranks at 1/2 speed until rank 0 has done its
    # 2 units (t = 4); 3 at 2/3 until rank 1 has done its other 2 (t = 7); 2 at full
    # speed until rank 2 has (t = 9); rank 3 alone for its last 2 (t = 11).
    t = simulate_shared(independent(), model(cores=2))
    assert [ends[-1] for ends in t.ends] == [4.0, 7.0, 9.0, 11.0]
    # first ops: rank 1's 2 units by t = 4; rank 2's 3rd unit at 2/3 speed, 4 + 1.5;
    # rank 3's 4 units: 2 by t = 4 and 2 more by t = 7
    assert [ends[0] for ends in t.ends] == [2.0, 4.0, 5.5, 7.0]
    assert t.makespan == 11.0
    assert simulate_shared(independent(), model()).makespan == 8.0  # each its own core


def test_background_threads_take_their_share_first() -> None:
    # background 1/4 of a core per rank: 4 x 1/4 = 1 core left to compute on, so
    # n computing ranks stretch n times: 2 x 4 + 2 x 3 + 2 x 2 + 2 x 1 = 20 (all the
    # ops' work, 1 + 2 + 3 + 4 units twice, on one core).
    c = model(cores=2, host={"cores": 2, "threads_per_rank": 1, "ranks": 4,
                             "background": 0.25})
    assert (c.cores, c.background) == (2, 0.25)
    assert simulate_shared(independent(), c).makespan == 20.0
    assert compute_capacity(2, 4, 0.25) == 1.0


def test_efficiency_scales_what_the_ops_get() -> None:
    # 2 cores at efficiency 0.5: one core's worth. All four ranks' work (20) on it: 20.
    c = model(cores=2, host={"efficiency": 0.5})
    assert simulate_shared(independent(), c).makespan == 20.0
    # 2 ranks on 2 cores compute at 1/efficiency of their own time while both do
    two = [[Instr("F", stage=0, mb=0)], [Instr("F", stage=0, mb=1)]]
    assert simulate_shared(two, model(cores=2, host={"efficiency": 0.8})).makespan == 1.25
    assert compute_capacity(2, 4, 0.25, 0.5) == 0.5


def test_a_waiting_rank_gives_its_core_away() -> None:
    # rank 0: F (4 units) then sends to rank 1, which then computes 1 unit; ranks 2, 3:
    # 2 units each. 3 ranks compute on 2 cores at 2/3 speed: ranks 2, 3 end at 3,
    # rank 0 has 2 left, alone: ends at 5; rank 1 (waiting, no core) runs 5..6.
    times = [{"F": 4.0}, {"F": 1.0}, {"F": 2.0}, {"F": 2.0}]
    c = costs_from_dict({**HEAD, "stages": times, "cores": 2}, "c.json")
    streams = [[Instr("F", stage=0, mb=0), Instr("SEND_ACT", stage=0, mb=0, peer=1)],
               [Instr("RECV_ACT", stage=1, mb=0, peer=0), Instr("F", stage=1, mb=0)],
               [Instr("F", stage=2, mb=0)], [Instr("F", stage=3, mb=0)]]
    t = simulate_shared(streams, c)
    assert [ends[-1] for ends in t.ends] == [5.0, 6.0, 3.0, 3.0]


def test_cores_from_the_host_when_not_given() -> None:
    c = model(host={"cores": 8, "threads_per_rank": 2, "ranks": 4})
    assert (c.cores, c.background) == (4, 0.0)
    assert model(cores=3, host={"cores": 8}).cores == 3  # `cores` stands


@pytest.mark.parametrize("host, message", [
    ([], 'c.json: host: must be {"cores": .., "threads_per_rank": .., "ranks": .., '
         '"background": .., "efficiency": ..}'),
    ({"cpus": 2}, "c.json: host: unknown field 'cpus'; known: cores, threads_per_rank, "
                  "ranks, background, efficiency"),
    ({"efficiency": 0}, "c.json: host.efficiency: must be above 0 and at most 1, got 0.0"),
    ({"cores": 0}, "c.json: host.cores: must be a positive integer, got 0"),
    ({"background": 1.5}, "c.json: host.background: must be below 1 (a share of one core), "
                          "got 1.5"),
    ({"background": -0.1}, "c.json: host.background: must be a non-negative number, got -0.1"),
])
def test_bad_host_is_named(host, message) -> None:
    with pytest.raises(CostsError) as err:
        model(host=host)
    assert str(err.value) == message


def test_a_batch_computes_for_its_messages_cpu() -> None:
    # rank 0: F (1), then sends (0.5 of runtime CPU per message, on the wire as well);
    # rank 1 posts its receive at 0 (0.5 of CPU), gets the data at 1.5, F till 2.5.
    # On 1 core: [0, 0.5] both compute (x2: 1.0), then one at a time: 1.0 + 1.0.
    streams = [[Instr("F", stage=0, mb=0), Instr("SEND_ACT", stage=0, mb=0, peer=1)],
               [Instr("RECV_ACT", stage=1, mb=0, peer=0), Instr("F", stage=1, mb=0)]]
    times = [{"F": 1.0}, {"F": 1.0}]
    shared = costs_from_dict({**HEAD, "stages": times, "cores": 1,
                              "overhead": {"message": 0.5}}, "c.json")
    assert simulate_shared(streams, shared).makespan == 3.0
    own = costs_from_dict({**HEAD, "stages": times, "overhead": {"message": 0.5}}, "c.json")
    assert simulate_shared(streams, own).makespan == 2.5
    # the library's CPU (link.cpu) counts alike; on the wire it is inside the latency
    library = costs_from_dict({**HEAD, "stages": times, "cores": 1, "link": {"cpu": 0.25},
                               "overhead": {"message": 0.25}}, "c.json")
    assert library.link_cpu == 0.25
    # arrival at 1.25; rank 0 computes till 1.5 (its batch: 0.5 of CPU), rank 1's F
    # 1.25..2.25. Both at [0, 0.5] and [1.25, 1.5]: 0.5 x 2 + 0.75 + 0.25 x 2 + 0.75
    assert simulate_shared(streams, library).makespan == 3.0
