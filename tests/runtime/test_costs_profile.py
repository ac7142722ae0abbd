"""A measured cost profile (`--costs-out`): I and W measured by the run's own
split (bitwise the same training), the links by ping-pong (gloo), ops the run
did not time derived and the derivation recorded, and the simulator reads it."""

from __future__ import annotations

import json

import pytest
from runtime_testing import Result, compile_preset, run_inprocess, run_torchrun
from schedc.runtime.costs import Measured, cost_profile, instruction_overhead, message_overhead
from schedc.runtime.costs_link import fit_link, link_figures
from schedc.runtime.costs_split import SplitProbe, as_programmed

from schedc.program import Instr
from schedc.simulate import load_costs


def test_split_probe_splits_every_second_b_of_each_stage() -> None:
    stream = [Instr("B", stage=s, mb=j, pipeline=0) for j in range(3) for s in (0, 1)]
    probe = SplitProbe()
    got = [f"{i.op}{i.stage}.{i.mb}" for i in probe.piece(stream[:2]) + probe.piece(stream[2:])]
    assert got == ["B0.0", "B1.0", "I0.1", "W0.1", "I1.1", "W1.1", "B0.2", "B1.2"]
    i01, w01 = Instr("I", stage=0, mb=1, pipeline=0), Instr("W", stage=0, mb=1, pipeline=0)
    events = [("F", "F", 0, 0.0, 1.0), ("I", i01.label(), 0, 1.0, 0.5),
              ("W", w01.label(), 0, 1.75, 1.0), ("I", "I native", 0, 3.0, 1.0)]
    assert as_programmed(events, probe.labels) == [
        ("F", "F", 0, 0.0, 1.0), ("B", stream[2].label(), 0, 1.0, 1.75),
        ("I", "I native", 0, 3.0, 1.0)]


def test_fit_link_exact() -> None:
    got = fit_link([100, 200, 400], [1 + 100 / 50, 1 + 200 / 50, 1 + 400 / 50])
    assert got["latency"] == pytest.approx(1.0, rel=1e-12)
    assert got["bandwidth"] == pytest.approx(50.0, rel=1e-12)
    bent = fit_link([100, 200, 400, 800], [3.0, 5.0, 9.0, 100.0], upto=400)  # 800: not fitted
    assert (bent["latency"], bent["bandwidth"], bent["fitted_upto"]) == \
        (pytest.approx(1.0, rel=1e-12), pytest.approx(50.0, rel=1e-12), 400)
    flat = fit_link([100, 200], [2.0, 2.0])
    assert (flat["latency"], flat["bandwidth"]) == (2.0, None)
    assert link_figures([{"latency": 1.0, "bandwidth": 10.0}, {"latency": 3.0, "bandwidth": None},
                         {"latency": 2.0, "bandwidth": 30.0}]) == {"latency": 2.0,
                                                                   "bandwidth": 20.0}
    assert link_figures([{"latency": 1.0, "bandwidth": None, "message_cpu": 0.5},
                         {"latency": 3.0, "bandwidth": None, "message_cpu": 0.25}]) == \
        {"latency": 2.0, "cpu": 0.375}
    assert link_figures([]) is None


def test_a_zb_run_derives_b_and_records_it(tmp_path) -> None:
    from schedc.files import load_programs

    manifest, _ = load_programs(compile_preset(tmp_path / "zb", "zb-h1", 2, 2))
    events = {0: [("F", "F", 0, 0.0, 1.0), ("COMM", "a + b", 0, 1.0, 0.5),
                  ("I", "I", 0, 1.5, 0.5), ("W", "W", 0, 2.5, 2.0)],
              1: [("F", "F", 1, 0.0, 1.0), ("COMM", "c", 1, 1.0, 0.25),
                  ("I", "I", 1, 1.25, 1.5), ("W", "W", 1, 3.0, 1.5)]}
    prof = cost_profile(manifest, events, {}, [10, 10])
    assert [s["B"] for s in prof["stages"]] == [2.5, 3.0]
    assert prof["derived"] == {"B": "B = I + W"}
    # gaps: rank 0 0, 0, 0.5; rank 1 0, 0, 0.25. A message: 0.5 / 2 and 0.25 / 1.
    assert prof["overhead"] == {"instruction": 0.0, "message": 0.25}
    cpu = {0: [(0.0, 1.0), (1.0, 0.25), (1.25, 0.5), (2.0, 2.0)],
           1: [(0.0, 0.5), (0.75, 0.25), (1.0, 1.5), (3.0, 1.5)]}
    on_cpu = cost_profile(manifest, events, {}, [10, 10], measured=Measured(cpu=cpu))
    assert [s["I"] for s in on_cpu["stages"]] == [0.5, 1.5]  # thread CPU times
    assert on_cpu["stages"][0]["F"] == 1.0 and on_cpu["stages"][1]["F"] == 0.5
    # CPU gaps: rank 0 0, 0, 0.25 (median 0); rank 1 0.25, 0, 0.5 (0.25). Per message:
    # 0.25 / 2 and 0.25 / 1.
    assert on_cpu["overhead"] == {"instruction": 0.125, "message": 0.1875}
    assert on_cpu["source"]["times"] == "thread CPU time"
    assert message_overhead(events, {r: [(e[3], e[4]) for e in ev] for r, ev in events.items()},
                            0.1) == pytest.approx(0.15)
    assert "link" not in prof
    assert instruction_overhead({0: []}) == 0.0


def test_acc_is_timed_after_a_whole_b(tmp_path) -> None:
    """After the split probe's W the ACC adds a whole gradient; after a B it costs
    almost nothing (the backward added into the accumulator): the profile prices
    the B case, which every unsplit schedule runs, and counts the difference in W,
    which its ACC always follows."""
    from schedc.files import load_programs

    manifest, _ = load_programs(compile_preset(tmp_path / "p", "1f1b", 2, 2))
    events = {0: [("B", "B", 0, 0.0, 2.0), ("COMM", "c", 0, 2.0, 0.5), ("ACC", "A", 0, 2.5, 0.1),
                  ("I", "I", 0, 3.0, 1.0), ("W", "W", 0, 4.0, 1.0), ("ACC", "A", 0, 5.0, 0.9),
                  ("W", "W", 0, 6.0, 1.0), ("ACC", "A", 0, 7.0, 0.8)],
              1: [("I", "I", 1, 0.0, 1.0), ("W", "W", 1, 1.0, 1.0), ("ACC", "A", 1, 2.0, 0.7)]}
    prof = cost_profile(manifest, events, {}, [10, 10])
    assert [s["ACC"] for s in prof["stages"]] == [0.1, 0.7]  # stage 1: no ACC after a B
    # stage 0: an ACC after a W costs 0.85 (median) against 0.1: W holds the 0.75
    assert [s["W"] for s in prof["stages"]] == [pytest.approx(1.75, rel=1e-12), 1.0]
    assert prof["derived"]["W"] == ("W holds what its ACC costs beyond an ACC after a B "
                                    "(750.00 ms at stage 0)")


def assert_same_training(plain: Result, measured: Result) -> None:
    """Bitwise the same losses and weights; the same versions read, where a split
    B reads as its I and its W."""
    assert plain.losses == measured.losses
    assert plain.weights.keys() == measured.weights.keys()
    for key, w in plain.weights.items():
        assert w.equal(measured.weights[key]), key
    assert plain.versions == measured.versions
    as_b = {("B" if op in "IW" else op, *rest) for op, *rest in measured.reads}
    assert as_b == set(plain.reads)
    assert {op for op, *_ in measured.reads} == {"F", "B", "I", "W"}


def _check_profile(path, stages: int) -> dict:
    prof = json.loads(path.read_text())
    for times in prof["stages"]:
        assert {"F", "B", "I", "W", "ACC", "STEP"} <= set(times)
        assert all(times[op] > 0 for op in ("F", "B", "W"))
    assert prof["derived"]["I"].startswith("measured: 1 B in 2 of each stage ran as I then W")
    assert prof["overhead"]["instruction"] > 0 and prof["overhead"]["message"] >= 0
    load_costs(path).check_stages(stages)  # the simulator reads it
    return prof


def test_inprocess_profile_has_measured_split_and_trains_the_same(tmp_path) -> None:
    d = compile_preset(tmp_path / "p", "1f1b", 2, 4)
    costs = tmp_path / "costs.json"
    plain = run_inprocess(d, "--steps", "2")
    measured = run_inprocess(d, "--steps", "2", "--costs-out", str(costs))
    assert_same_training(plain, measured)
    prof = _check_profile(costs, 2)
    assert "link" not in prof and prof["source"]["links"] == []  # in-process: no links
    assert (prof["comm"], prof["cores"]) == ("overlap", 1)  # every rank in one thread
    assert prof["host"]["ranks"] == 2 and "slots" not in prof["host"]
    assert load_costs(costs).background == prof["host"]["background"]


def test_torchrun_profile_measures_the_link(tmp_path) -> None:
    d = compile_preset(tmp_path / "p", "1f1b", 2, 4)
    costs = tmp_path / "costs.json"
    got = run_torchrun({"plain": [str(d), "--steps", "2"],
                        "costs": [str(d), "--steps", "2", "--costs-out", str(costs)]},
                       2, tmp_path / "out")
    assert_same_training(got["plain"], got["costs"])
    prof = _check_profile(costs, 2)
    (link,) = prof["source"]["links"]
    assert link["ranks"] == [0, 1]
    assert link["sizes"] == [64, 4096, 65536, 262144, 1048576]  # gpt-tiny's message: 4096
    assert all(t > 0 for t in link["one_way"]) and link["message_cpu"] > 0
    assert link["fitted_upto"] == 262144 and prof["comm"] == "serial" and prof["cores"] >= 1
    assert prof["host"]["ranks"] == 2 and prof["host"]["threads_per_rank"] >= 1
    assert 0 <= prof["host"]["background"] < 1
    assert prof["link"]["latency"] == link["latency"]
    # None: no slope above the noise (then the simulator takes no bandwidth term)
    assert prof["link"].get("bandwidth") == link["bandwidth"]
    assert link["bandwidth"] is None or link["bandwidth"] > 0
    assert load_costs(costs).latency == link["latency"]
    assert load_costs(costs).link_cpu == prof["link"]["cpu"] == link["message_cpu"] > 0
