"""The cost model of a candidate: the measured profile resampled by depth and
scaled by micro-batch size (schedc/tune/profile.py), exact values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schedc.errors import UserError
from schedc.simulate.costs import costs_from_dict
from schedc.tune.profile import load_measured, scale


def write(tmp_path: Path, **fields) -> str:
    data = {"format": "schedc-costs", "version": 1, "unit": "ms", **fields}
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(data))
    return str(path)


TWO = {"stages": [{"F": 1.0, "B": 2.0, "STEP": 0.5}, {"F": 3.0, "B": 6.0, "STEP": 1.5}],
       "activation_bytes": [100, 0], "grad_bytes": [0, 100],
       "weight_bytes_per_stage": [40, 60], "link": {"latency": 0.25, "bandwidth": 1000}}


def test_same_stages_and_micro_batch_give_the_profile_back(tmp_path: Path) -> None:
    p = load_measured(write(tmp_path, **TWO), 4)
    c = p.costs(2, 4)
    assert c.stage_times == ({"B": 2.0, "F": 1.0, "STEP": 0.5},
                             {"B": 6.0, "F": 3.0, "STEP": 1.5})
    # I and W not measured: the simulator derives them (schedc/simulate/derive.py):
    # stage 0 has no input gradient (W is its whole backward), elsewhere B is halved
    assert [(c.op_time("I", s), c.op_time("W", s)) for s in (0, 1)] == [(0.0, 2.0),
                                                                       (3.0, 3.0)]
    assert c.activation_bytes == (100.0, 0.0) and c.grad_bytes == (0.0, 100.0)
    assert c.weight_bytes == (40.0, 60.0)
    assert (c.latency, c.bandwidth, c.unit) == (0.25, 1000, "ms")
    late = " (not measured; derived on each candidate's stages)"
    assert p.notes == ("I = 0 (no input gradient) at stage 0" + late,
                       "I = 0.5 * B (default split) at stage 1" + late,
                       "W = B (no input gradient) at stage 0" + late,
                       "W = 0.5 * B (default split) at stage 1" + late)


def test_more_stages_split_each_measured_stage_by_depth(tmp_path: Path) -> None:
    c = load_measured(write(tmp_path, **TWO), 4).costs(4, 4)
    assert [t["F"] for t in c.stage_times] == [0.5, 0.5, 1.5, 1.5]
    # derived on the candidate's stages: only its first has no input gradient
    assert [(c.op_time("I", s), c.op_time("W", s)) for s in range(4)] == [
        (0.0, 1.0), (0.5, 0.5), (1.5, 1.5), (1.5, 1.5)]
    assert [t["STEP"] for t in c.stage_times] == [0.25, 0.25, 0.75, 0.75]
    assert c.weight_bytes == (20.0, 20.0, 30.0, 30.0)
    # every inner cut carries the hidden state; the last stage sends nothing
    assert c.activation_bytes == (100.0, 100.0, 100.0, 0.0)
    assert c.grad_bytes == (0.0, 100.0, 100.0, 100.0)


def test_fewer_and_uneven_stages(tmp_path: Path) -> None:
    three = {"stages": [{"F": 1.0}, {"F": 2.0}, {"F": 4.0}], "weight_bytes_per_stage": [3, 6, 9]}
    c = load_measured(write(tmp_path, **three), 1).costs(2, 1)
    assert [t["F"] for t in c.stage_times] == [2.0, 5.0]  # 1 + 2/2, 2/2 + 4
    assert c.weight_bytes == (6.0, 12.0)
    c = load_measured(write(tmp_path, **three), 1).costs(1, 1)
    assert c.stage_times == ({"F": 7.0},)
    assert (c.op_time("B", 0), c.op_time("W", 0)) == (14.0, 14.0)  # B = 2 F, all W at stage 0


def test_micro_batch_size_scales_compute_and_activations_only(tmp_path: Path) -> None:
    c = load_measured(write(tmp_path, **TWO), 4).costs(2, 1)
    assert c.stage_times[1] == {"B": 1.5, "F": 0.75, "STEP": 1.5}
    assert c.op_time("I", 1) == c.op_time("W", 1) == 0.75
    assert c.activation_bytes == (25.0, 0.0) and c.grad_bytes == (0.0, 25.0)
    assert c.weight_bytes == (40.0, 60.0)
    c = load_measured(write(tmp_path, **TWO), 4).costs(2, 6)
    assert c.stage_times[0]["F"] == 1.5 and c.activation_bytes == (150.0, 0.0)


def test_split_derivations(tmp_path: Path) -> None:
    # given on some stages only: derived on the profile's own stages
    prof = {"stages": [{"F": 1.0, "B": 2.0, "I": 1.25}, {"F": 1.0, "I": 1.0, "W": 0.5},
                       {"F": 2.0}]}
    p = load_measured(write(tmp_path, **prof), 1)
    assert p.base.stage_times[0]["W"] == 0.75
    assert p.base.stage_times[1]["B"] == 1.5
    assert (p.base.stage_times[2]["B"], p.base.stage_times[2]["I"]) == (4.0, 2.0)
    assert p.notes == ("W = B - I at stage 0 (not measured)",
                       "W = 0.5 * B (B = 2 * F (default)) (default split) at stage 2 "
                       "(not measured)",
                       "B = I + W at stage 1 (not measured)",
                       "B = 2 * F (default) at stage 2 (not measured)",
                       "I = 0.5 * B (B = 2 * F (default)) (default split) at stage 2 "
                       "(not measured)")


def test_a_profile_without_stage_lists_is_per_rank(tmp_path: Path) -> None:
    p = load_measured(write(tmp_path, default={"F": 2.0, "B": 4.0},
                            weight_bytes_per_stage=10), 4, ranks=4)
    assert p.stages == 4 and p.notes[0].startswith("no per-stage lists")
    c = p.costs(8, 4)  # two chunks per rank: half a stage each
    assert [t["F"] for t in c.stage_times] == [1.0] * 8
    assert c.weight_bytes == (5.0,) * 8


def test_data_parallel_all_reduce_joins_the_step(tmp_path: Path) -> None:
    base = load_measured(write(tmp_path, **TWO), 4).base
    c = scale(base, 2, 1.0, dp=4)
    # ring over 4: 6 latencies + 6/4 of 40 bytes at 1000 bytes/ms
    assert c.stage_times[0]["STEP"] == pytest.approx(0.5 + 6 * 0.25 + 1.5 * 40 / 1000)
    assert c.stage_times[1]["STEP"] == pytest.approx(1.5 + 6 * 0.25 + 1.5 * 60 / 1000)


def test_micro_batch_size_from_the_profile_or_an_error(tmp_path: Path) -> None:
    assert load_measured(write(tmp_path, **TWO, source={"micro_batch_size": 8}), None).mb_size \
        == 8
    with pytest.raises(UserError, match="give --profile-mb-size N"):
        load_measured(write(tmp_path, **TWO), None)
    with pytest.raises(UserError, match="activation_bytes has 3 entries but the profile has 2"):
        load_measured(write(tmp_path, **{**TWO, "activation_bytes": [1, 2, 3]}), 1)


def test_scaling_keeps_fields_it_does_not_know() -> None:
    base = costs_from_dict({"format": "schedc-costs", "version": 1, "stages": [{"F": 1.0}]})
    assert scale(base, 1, 2.0).origin == base.origin
