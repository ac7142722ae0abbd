"""The simulator under an overlap rule (schedc/overlap.py): sends complete in
the background, receives posted one batch ahead take their data while the
rank computes; under unit costs nothing changes from the compiler's analysis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_engine import COSTS, two_rank_gpipe
from test_sweep import check_simulation_matches_analysis

from schedc.cli import main
from schedc.compiler import compile_spec
from schedc.overlap import Overlap
from schedc.presets import preset_spec
from schedc.simulate import figures, simulate
from schedc.verify import prove_overlap
from schedc.viz.trace import COMM_TID, COMPUTE_TID, trace_events

K2 = Overlap.posting(2)


def test_hand_computed_serial_comm_without_and_with_overlap() -> None:
    # K = 1, --serial-comm: a transfer starts once both ends are posted and holds
    # both ranks until it lands. act 0 [1,2] lands 2.5; act 1 leaves at 4.5 (rank 1
    # posts its receive after F0 [2.5,4.5]), lands 6; F1 [6,8] B0 [8,11]; grad 0
    # [11,11.5] lands 12; B1 [12,15]; grad 1 lands 16; rank 0 B1 [16,18] STEP -18.5.
    k1 = simulate(*two_rank_gpipe(), COSTS, serial_comm=True)
    assert figures(k1).makespan == pytest.approx(18.5)
    # K = 2: rank 0 goes on after posting act 0; rank 1 posts its receive of act 1
    # as soon as act 0 is in (2.5), so act 1 travels [2.5,3.5] during F0 [2.5,4.5]
    # and lands 4.0; rank 0's receive of grad 0 (in one batch with its send of act 1)
    # was posted ahead at 1, so grad 0 leaves the moment B0 ends (9.5) and lands
    # 10.5: the overlapped figure, 16.
    k2 = simulate(*two_rank_gpipe(), COSTS, serial_comm=True, rule=K2)
    tl = k2.timeline
    assert figures(k2).makespan == pytest.approx(16.0)
    recv_act1 = 2  # rank 1: RECV_ACT mb0, F mb0, RECV_ACT mb1
    assert (tl.starts[1][recv_act1], tl.ends[1][recv_act1]) == (2.5, 4.0)
    assert (tl.starts[1][1], tl.ends[1][1]) == (2.5, 4.5)  # F mb0: the data came under it
    assert (tl.starts[0][4], tl.ends[0][4]) == (1.0, 10.5)  # RECV_GRAD mb0, posted ahead
    # Overlapped transfers (the default) already leave when posted: K changes nothing.
    assert figures(simulate(*two_rank_gpipe(), COSTS, rule=K2)).makespan == pytest.approx(16.0)


@pytest.mark.parametrize("name,stages,mbs", [("1f1b", 3, 6), ("zb-h1", 2, 4),
                                             ("chimera", 4, 4), ("paci", 3, 6)])
def test_unit_costs_under_two_posted_batches_reproduce_the_analysis(name, stages, mbs) -> None:
    c = compile_spec(preset_spec(name, stages=stages, microbatches=mbs))
    proven = replace(c, manifest=prove_overlap(c.manifest, c.programs, K2))
    check_simulation_matches_analysis(proven)  # the manifest's rule: K = 2


def test_simulate_reads_the_manifest_rule_or_the_flag(tmp_path, capsys) -> None:
    out = tmp_path / "p"
    assert main(["compile", "--preset", "1f1b", "--stages", "2", "--microbatches", "4",
                 "--posted-batches", "2", "-o", str(out), "-q"]) == 0
    assert main(["simulate", str(out), "--serial-comm", "--posted-batches", "1"]) == 0
    assert main(["simulate", str(out), "--posted-batches", "0"]) == 2
    assert "--posted-batches must be at least 1" in capsys.readouterr().err


def test_the_trace_shows_a_receive_posted_ahead_under_compute() -> None:
    sim = simulate(*two_rank_gpipe(), COSTS, serial_comm=True, rule=K2)
    events = {(e["pid"], e["name"]): e for e in trace_events(sim)["traceEvents"]
              if e["ph"] == "X"}
    recv, fwd = events[1, "RECV_ACT s1 mb1 <-0"], events[1, "F s1 mb0 v0"]
    assert (recv["tid"], fwd["tid"]) == (COMM_TID, COMPUTE_TID)
    assert fwd["ts"] == recv["ts"] and recv["ts"] + recv["dur"] < fwd["ts"] + fwd["dur"]
    serial = simulate(*two_rank_gpipe(), COSTS, serial_comm=True)  # K = 1: on the stream
    assert {e["tid"] for e in trace_events(serial)["traceEvents"]
            if e["ph"] == "X" and e["cat"] == "RECV_ACT"} == {COMPUTE_TID}
