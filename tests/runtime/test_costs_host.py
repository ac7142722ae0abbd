"""What a CPU run had on its host (runtime/costs_host.py): the task list's
background CPU, the host facts of a run, and the sharing efficiency of ops
against hand-computed processor sharing."""

from __future__ import annotations

import pytest
from schedc.runtime.costs_host import background_share, host_facts, sharing_efficiency


def test_background_share_from_the_task_list(tmp_path) -> None:
    import os
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    uptime = float(open("/proc/uptime").read().split()[0])
    me, other = tmp_path / str(threading.get_native_id()), tmp_path / "1"
    for task, (cpu, start) in ((me, (999, 0)), (other, (tick, int((uptime - 10) * tick)))):
        task.mkdir()
        fields = ["S"] + ["0"] * 10 + [str(cpu), "0"] + ["0"] * 6 + [str(start)]
        (task / "stat").write_text(f"1 (a (b) c) {' '.join(fields)}\n")
    # one other thread: 1 s of CPU over the ~10 s since it started
    assert background_share(str(tmp_path)) == pytest.approx(0.1, rel=0.05)
    assert background_share(str(tmp_path / "none")) is None


def test_host_facts_of_an_in_process_run() -> None:
    facts = host_facts(4)
    assert facts["slots"] == 1 and facts["ranks"] == 4 and facts["cores"] >= 1
    assert facts["threads_per_rank"] >= 1 and 0 <= facts["background"] < 1


def test_sharing_efficiency_against_processor_sharing() -> None:
    # 3 ranks on 2 cores: ranks 0 and 1 compute over [0, 3], rank 2 over [1, 2]. While
    # 3 compute ([1, 2]) each is due 2/3 of a core: due = 2 x (2 + 2/3) + 2/3 = 6.
    events = {0: [("F", "F", 0, 0.0, 3.0)], 1: [("F", "F", 1, 0.0, 3.0)],
              2: [("F", "F", 2, 1.0, 1.0), ("COMM", "c", 2, 2.0, 1.0)]}
    fair = {0: [(0.0, 8 / 3)], 1: [(0.0, 8 / 3)], 2: [(0.0, 2 / 3), (0.0, 0.0)]}
    assert sharing_efficiency(events, fair, 2.0) == pytest.approx(1.0, rel=1e-12)
    slow = {0: [(0.0, 2.0)], 1: [(0.0, 2.0)], 2: [(0.0, 0.5), (0.0, 0.0)]}
    assert sharing_efficiency(events, slow, 2.0) == pytest.approx(4.5 / 6, rel=1e-12)
    more = {r: [(0.0, 9.0)] * len(evs) for r, evs in events.items()}
    assert sharing_efficiency(events, more, 2.0) == 1.0  # at most 1
    assert sharing_efficiency({0: [("COMM", "c", 0, 0.0, 1.0)]}, {0: [(0.0, 0.0)]}, 2) is None
    # a batch is demand for its CPU time from its posting (not its wait), judged no
    # efficiency itself: rank 2's COMM [2, 2.5] (0.5 of CPU) makes 3 ranks compute
    # there, so ranks 0 and 1 are due 1 + 2/3 + 1/3 + 1/2 = 2.5 each
    comm_events = {**events, 2: [("F", "F", 2, 1.0, 1.0), ("COMM", "c", 2, 2.0, 1.0)]}
    comm = {0: [(0.0, 2.5)], 1: [(0.0, 2.5)], 2: [(0.0, 2 / 3), (0.0, 0.5)]}
    assert sharing_efficiency(comm_events, comm, 2.0) == pytest.approx(1.0, rel=1e-12)
    half = {0: [(0.0, 1.25)], 1: [(0.0, 1.25)], 2: [(0.0, 1 / 3), (0.0, 0.5)]}
    assert sharing_efficiency(comm_events, half, 2.0) == pytest.approx(0.5, rel=1e-12)
