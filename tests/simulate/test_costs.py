"""Cost profiles: derived op times (exact values), the per-instruction overhead,
refused fields named file:field, older profiles still load."""

from __future__ import annotations

import json

import pytest

from schedc.compiler import compile_spec
from schedc.presets import preset_spec
from schedc.simulate import figures, load_costs, simulate
from schedc.simulate.costs import CostsError, costs_from_dict
from schedc.simulate.derive import derive

HEAD = {"format": "schedc-costs", "version": 1, "unit": "ms"}


def model(**fields):
    return costs_from_dict({**HEAD, **fields}, "c.json")


def test_i_and_w_from_b_by_the_default_split() -> None:
    c = model(stages=[{"F": 1, "B": 4}, {"F": 2, "B": 6}])
    assert [c.op_time(op, 0) for op in ("B", "I", "W")] == [4.0, 0.0, 4.0]  # no input grad
    assert [c.op_time(op, 1) for op in ("B", "I", "W")] == [6.0, 3.0, 3.0]
    assert c.derivations(2) == {
        "I": ["I = 0 (no input gradient)", "I = 0.5 * B (default split)"],
        "W": ["W = B (no input gradient)", "W = 0.5 * B (default split)"]}


def test_derivations_explained() -> None:
    from schedc.simulate.derive import explain

    c = model(stages=[{"F": 1, "B": 4}, {"F": 2, "B": 6}, {"F": 2, "B": 6}])
    assert explain(c.derivations(3)) == [
        "I = 0 (no input gradient) at stage 0",
        "I = 0.5 * B (default split) at stages 1, 2",
        "W = B (no input gradient) at stage 0",
        "W = 0.5 * B (default split) at stages 1, 2"]
    assert explain(model(stages=[{"F": 1, "B": 2, "I": 1, "W": 1}]).derivations(1)) == []


def test_b_from_i_and_w_and_the_rest_of_b() -> None:
    c = model(stages=[{"F": 1, "I": 1.5, "W": 2.5}, {"F": 1, "B": 5, "I": 2}])
    assert c.op_time("B", 0) == 4.0
    assert c.op_time("W", 1) == 3.0
    assert c.derivations(2) == {"B": ["B = I + W", None], "W": [None, "W = B - I"]}


def test_b_from_f_when_no_backward_is_given() -> None:
    c = model(default={"F": 1.5, "STEP": 0.5})
    assert [c.op_time(op, 1) for op in ("B", "I", "W")] == [3.0, 1.5, 1.5]
    assert derive("I", {"F": 1.5}, 1) == (1.5, "I = 0.5 * B (B = 2 * F (default)) (default split)")
    assert derive("STEP", {"F": 1.5}, 1) is None
    assert c.op_time("STEP", 0) == 0.5 and c.op_time("ACC", 0) == 0.0


def test_zb_h1_is_not_priced_as_free() -> None:
    """A profile from a 1F1B run (F, B only) prices ZB-H1 as the same profile
    with I and W written out by the default split."""
    compiled = compile_spec(preset_spec("zb-h1", stages=2, microbatches=4).validate())
    only_b = model(stages=[{"F": 1, "B": 2}, {"F": 1, "B": 2}])
    explicit = model(stages=[{"F": 1, "B": 2, "I": 0, "W": 2}, {"F": 1, "B": 2, "I": 1, "W": 1}])
    got = figures(simulate(compiled.manifest, list(compiled.programs), only_b))
    want = figures(simulate(compiled.manifest, list(compiled.programs), explicit))
    free = model(stages=[{"F": 1, "B": 2, "I": 0, "W": 0}] * 2)  # the old pricing: 4 F + 1
    assert got.makespan == want.makespan == 14.0  # 12 units of work per rank, + 2 of fill
    assert figures(simulate(compiled.manifest, list(compiled.programs), free)).makespan == 5.0


def test_overhead_is_added_to_every_instruction_but_messages() -> None:
    c = model(stages=[{"F": 1, "B": 2}], overhead={"instruction": 0.25, "message": 0.5},
              activation_bytes=100, link={"latency": 1, "bandwidth": 50})
    assert c.op_time("F", 0) == 1.25
    assert c.op_time("SWAP", 0) == 0.25  # not given: 0, plus the overhead
    assert c.message_time("ACT", 0) == 2.5  # 100 bytes at 50, plus the message's overhead
    assert model(default={"F": 1}, overhead={"message": 0.5}).message_time("GRAD", 0) == 0.5
    compiled = compile_spec(preset_spec("gpipe", stages=2, microbatches=2).validate())
    base = model(stages=[{"F": 1, "B": 2}])
    slow = model(stages=[{"F": 1, "B": 2}], overhead={"instruction": 0.5})
    span = figures(simulate(compiled.manifest, list(compiled.programs), base)).makespan
    # gpipe p2 m2 under F=1, B=2 (ACC, STEP free): 9; 0.5 more for each of the 10
    # instructions on the critical path: F0 | F0 F1 B0 ACC B1 | B1 ACC ACC STEP.
    assert span == 9.0
    assert figures(simulate(compiled.manifest, list(compiled.programs), slow)).makespan == 14.0


@pytest.mark.parametrize(("fields", "message"), [
    ({"overhead": 3}, 'c.json: overhead: must be {"instruction": .., "message": ..}'),
    ({"overhead": {"batch": 1}},
     "c.json: overhead: unknown field 'batch'; known: instruction, message"),
    ({"overhead": {"message": "x"}},
     "c.json: overhead.message: must be a non-negative number, got 'x'"),
    ({"overhead": {"instruction": -1}},
     "c.json: overhead.instruction: must be a non-negative number, got -1"),
    ({"derived": ["I"]}, 'c.json: derived: must be an object, e.g. {"I": "0.5 * B"}'),
    ({"derived": {"X": "?"}}, "c.json: derived: unknown op 'X'; timed ops: "),
    ({"derived": {"I": 0.5}}, "c.json: derived.I: must be a string, got 0.5"),
    ({"link": {"latency": -2}}, "c.json: link.latency: must be a non-negative number, got -2"),
    ({"link": {"bandwidth": 0}}, "c.json: link.bandwidth: must be positive"),
    ({"stages": [{"I": "x"}]}, "c.json: stages[0].I: must be a non-negative number, got 'x'"),
])
def test_bad_fields_are_named(fields, message) -> None:
    with pytest.raises(CostsError) as err:
        model(**{"default": {"F": 1}, **fields})
    assert str(err.value).startswith(message)


def test_older_profile_loads_and_derives(tmp_path) -> None:
    """A profile written before derived/overhead/link existed (a 1F1B run's)."""
    old = {**HEAD, "unit": "s",
           "source": {"run": "schedc.runtime measured run", "memory": []},
           "stages": [{"ACC": 1e-05, "B": 0.004, "F": 0.002, "STEP": 0.0003},
                      {"ACC": 1e-05, "B": 0.006, "F": 0.003, "STEP": 0.0003}],
           "activation_bytes": [131072, 0], "grad_bytes": [0, 131072],
           "weight_bytes_per_stage": [1000, 1000]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    c = load_costs(path)
    assert (c.overhead, c.message_overhead, c.latency, c.notes, c.cores, c.comm) == \
        (0.0, 0.0, 0.0, {}, None, None)
    assert (c.op_time("I", 1), c.op_time("W", 1), c.op_time("W", 0)) == (0.003, 0.003, 0.004)


def test_contention_stretches_ops_by_the_sharing_of_cores() -> None:
    from schedc.program import Instr
    from schedc.simulate.contention import simulate_shared

    f = [Instr("F", stage=0, mb=j) for j in range(2)]
    both_busy = [f, [Instr("F", stage=1, mb=j) for j in range(2)]]
    c = model(stages=[{"F": 1.0}], cores=1)
    assert simulate_shared(both_busy, c).makespan == 4.0  # 2 ranks always busy, 1 core: x2
    assert simulate_shared(both_busy, model(stages=[{"F": 1.0}], cores=2)).makespan == 2.0
    one_idle = [f[:1], both_busy[1]]  # 3 units of work, 1 core: the work itself
    assert simulate_shared(one_idle, c).makespan == pytest.approx(3.0, rel=1e-9)
    assert simulate_shared(one_idle, model(stages=[{"F": 1.0}])).makespan == 2.0  # no cores


def test_comm_mode_comes_from_the_profile() -> None:
    compiled = compile_spec(preset_spec("1f1b", stages=2, microbatches=2).validate())
    kw = {"stages": [{"F": 1, "B": 2}], "activation_bytes": 10, "link": {"latency": 0.5}}
    serial = figures(simulate(compiled.manifest, list(compiled.programs),
                              model(comm="serial", **kw))).makespan
    want = figures(simulate(compiled.manifest, list(compiled.programs), model(**kw),
                            serial_comm=True)).makespan
    overlap = figures(simulate(compiled.manifest, list(compiled.programs), model(**kw)))
    assert serial == want and overlap.makespan < serial
    assert figures(simulate(compiled.manifest, list(compiled.programs),
                            model(comm="serial", **kw), serial_comm=False)).makespan \
        == overlap.makespan


@pytest.mark.parametrize(("fields", "message"), [
    ({"cores": 0}, "c.json: cores: must be a positive integer, got 0"),
    ({"cores": 1.5}, "c.json: cores: must be a positive integer, got 1.5"),
    ({"comm": "eager"}, "c.json: comm: must be one of overlap, serial, got 'eager'"),
])
def test_bad_cores_and_comm_are_named(fields, message) -> None:
    with pytest.raises(CostsError, match="^" + message.replace(".", r"\.")):
        model(default={"F": 1}, **fields)
