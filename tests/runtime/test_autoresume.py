"""--save-dir resumes by itself (runtime/autoresume.py), and the last line of a
job that torchrun gave up on (runtime/restarts.py)."""

from __future__ import annotations

import json

import pytest
from runtime_testing import assert_same, compile_preset, run_inprocess
from schedc.runtime import restarts
from schedc.runtime.config import RunConfig

from schedc.errors import UserError


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_preset(tmp_path_factory.mktemp("prog") / "1f1b", "1f1b", 2, 4)


def _lines(path) -> list[dict]:
    return [json.loads(t) for t in path.read_text().splitlines()]


def test_the_same_command_line_continues_the_run(prog, tmp_path, capsys):
    args = ["--save-every", "2", "--save-dir", str(tmp_path / "ck"),
            "--metrics", str(tmp_path / "m.jsonl")]
    whole = run_inprocess(prog, "--steps", "4", "--save-every", "2",
                          "--save-dir", str(tmp_path / "whole"))
    first = run_inprocess(prog, "--steps", "2", *args)
    assert "resuming" not in capsys.readouterr().err
    rest = run_inprocess(prog, "--steps", "4", *args)
    err = capsys.readouterr().err
    assert err.splitlines() == [f"schedc: resuming from {tmp_path / 'ck' / 'step-00000002'} "
                                "(2 of 4 steps done; the newest valid checkpoint)"]
    assert first.losses + rest.losses == whole.losses
    assert [x["loss"] for x in _lines(tmp_path / "m.jsonl")] == whole.losses
    rest.reads = whole.reads = []
    rest.losses = whole.losses
    assert_same(rest, whole)


def test_metrics_are_cut_back_to_the_checkpoint(prog, tmp_path):
    """A run killed after its checkpoint at 2 had logged steps 2 and half of 3:
    the resumed run logs them again, each step once."""
    m = tmp_path / "m.jsonl"
    args = ["--save-every", "2", "--save-dir", str(tmp_path / "ck"), "--metrics", str(m)]
    run_inprocess(prog, "--steps", "2", *args)
    with open(m, "a") as f:
        f.write('{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    run_inprocess(prog, "--steps", "4", *args)
    assert [x["step"] for x in _lines(m)] == [0, 1, 2, 3]
    assert _lines(m)[2]["loss"] != 1.0


def test_a_corrupt_newest_checkpoint_is_skipped_and_named(prog, tmp_path, capsys):
    ck = tmp_path / "ck"
    run_inprocess(prog, "--steps", "2", "--save-every", "1", "--save-dir", str(ck))
    (ck / "step-00000002" / "rank1.pt").write_bytes(b"torn")
    capsys.readouterr()
    rest = run_inprocess(prog, "--steps", "2", "--save-every", "1", "--save-dir", str(ck))
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"schedc: resuming from {ck / 'step-00000001'} (1 of 2 steps done; "
                           "the newest valid checkpoint; refused newer: ")
    assert "step-00000002/rank1.pt: sha256 does not match" in line
    assert len(rest.losses) == 1


def test_no_valid_checkpoint_starts_from_step_0_and_says_so(prog, tmp_path, capsys):
    ck = tmp_path / "ck"
    (ck / "step-00000001").mkdir(parents=True)  # a save killed before meta.json
    run = run_inprocess(prog, "--steps", "1", "--save-every", "1", "--save-dir", str(ck))
    assert len(run.losses) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"schedc: --save-dir {ck} holds no valid checkpoint (")
    assert line.endswith("; starting from step 0")


def test_save_every_is_taken_from_the_checkpoint(prog, tmp_path):
    ck = tmp_path / "ck"
    run_inprocess(prog, "--steps", "2", "--save-every", "2", "--save-dir", str(ck))
    rest = run_inprocess(prog, "--steps", "6", "--resume", str(ck))  # no --save-every
    assert len(rest.losses) == 4
    assert sorted(d.name for d in ck.glob("step-*")) == [
        "step-00000002", "step-00000004", "step-00000006"]


@pytest.mark.parametrize("flags,message", [
    (["--save-every", "3"], "was saved with --save-every 2, this run has --save-every 3: pass "
                            "--save-every 2 (or leave it out) to continue it, or another "
                            "--save-dir to start a new run"),
    (["--save-every", "2", "--optimizer", "sgd"],
     "was saved with --optimizer adamw, this run has --optimizer sgd: pass --optimizer adamw"),
    (["--save-every", "2", "--seed", "7"], "with --seed 0, this run has --seed 7: pass --seed 0"),
    (["--save-every", "2", "--muon-momentum", "0.9"],
     "with optimizer options (the defaults), this run has --muon-momentum 0.9: leave out "
     "--muon-momentum 0.9"),
])
def test_a_differing_flag_is_named_with_the_value_to_pass(prog, tmp_path, flags, message):
    ck = tmp_path / "ck"
    run_inprocess(prog, "--steps", "2", "--save-every", "2", "--save-dir", str(ck))
    with pytest.raises(UserError) as err:
        run_inprocess(prog, "--steps", "4", "--save-dir", str(ck), *flags)
    assert str(err.value).startswith(f"--save-dir {ck}: checkpoint step-00000002 was saved")
    assert message in str(err.value)


def test_other_programs_are_refused(prog, tmp_path):
    ck = tmp_path / "ck"
    run_inprocess(prog, "--steps", "2", "--save-every", "2", "--save-dir", str(ck))
    other = compile_preset(tmp_path / "gpipe", "gpipe", 2, 4)
    with pytest.raises(UserError, match="was saved by other programs .* pass the program "
                                        "directory it was saved with"):
        run_inprocess(other, "--steps", "4", "--save-every", "2", "--save-dir", str(ck))


def test_steps_at_or_below_done_say_so(prog, tmp_path, capsys):
    ck = tmp_path / "ck"
    first = run_inprocess(prog, "--steps", "2", "--save-every", "2", "--save-dir", str(ck))
    capsys.readouterr()
    again = run_inprocess(prog, "--steps", "2", "--save-every", "2", "--save-dir", str(ck))
    assert capsys.readouterr().err.splitlines() == [
        f"schedc: checkpoint {ck / 'step-00000002'} has all 2 steps done; nothing to run "
        "(pass --steps above 2 to train further)"]
    assert again.losses == []
    first.losses = again.losses
    first.reads = again.reads
    assert_same(again, first)  # the final weights are loaded
    with pytest.raises(UserError, match=r"--steps 1: checkpoint .*step-00000002 has 2 steps "
                                        r"done already; pass --steps above 2 to train further"):
        run_inprocess(prog, "--steps", "1", "--save-every", "2", "--save-dir", str(ck))


# ---- the last line when torchrun gives up ------------------------------------------------
def _record(tmp_path, monkeypatch, attempt, rank, step, error, code=3):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))
    restarts.record_failure(tmp_path, rank, step, code, error)


def test_a_deterministic_crash_is_named_once(tmp_path, monkeypatch):
    (tmp_path / restarts.FAILURES).write_text('{"attempt": 0, "rank": 0, "step": 3, '
                                              '"code": 3, "error": "an older job"}\n')
    mark = restarts.failures_mark(tmp_path)
    for a in range(3):
        _record(tmp_path, monkeypatch, a, 0, 12, "rank 0, instruction 9 (RECV_GRAD s0 mb49 <-1)"
                ": while waiting ...: Connection closed by peer")
        _record(tmp_path, monkeypatch, a, 1, 12, "rank 1, instruction 50 (F s1 mb50): non-finite "
                "loss (NaN or Inf) at step 12")
    line, code = restarts.give_up_line(tmp_path, mark, 2)
    assert line == ("schedc: error: gave up after --max-restarts 2: every one of 3 attempts died "
                    "at step 12: [rank 1] rank 1, instruction 50 (F s1 mb50): non-finite loss "
                    "(NaN or Inf) at step 12")
    assert code == 3


def test_a_killed_rank_is_named_through_the_ranks_that_saw_it(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, 0, 1, 7, "x: from rank 0: Connection reset by peer")
    _record(tmp_path, monkeypatch, 1, 1, 9, "x: from rank 0: Connection reset by peer")
    line, _ = restarts.give_up_line(tmp_path, 0, 1)
    assert line == ("schedc: error: gave up after --max-restarts 1: the last attempt died at "
                    "step 9: [rank 1] x: from rank 0: Connection reset by peer")


def test_failures_are_recorded_under_torchrun_only(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    restarts.record_failure(tmp_path, 0, 1, 3, "boom")
    assert not (tmp_path / restarts.FAILURES).exists()
    assert restarts.give_up_line(tmp_path, 0, 1) is None


def test_max_restarts_needs_a_save_dir_and_torchrun(tmp_path):
    cfg = RunConfig(programs=tmp_path)
    assert restarts.restart_options(cfg, 0, False) == []
    with pytest.raises(UserError, match="--max-restarts needs --save-dir"):
        restarts.restart_options(cfg, 2, False)
    with_dir = RunConfig(programs=tmp_path, save_dir=tmp_path / "ck", save_every=5)
    assert restarts.restart_options(with_dir, 2, False) == ["--max-restarts=2"]
    with pytest.raises(UserError, match="leave out --local"):
        restarts.restart_options(with_dir, 2, True)
    with pytest.raises(UserError, match="at least 0"):
        restarts.restart_options(with_dir, -1, False)


def test_a_failure_before_training_is_named_as_start_up(tmp_path, monkeypatch):
    for a in range(2):
        _record(tmp_path, monkeypatch, a, 0, None, "--save-dir ck: checkpoint step-00000005 was "
                "saved with --seed 0, this run has --seed 7: pass --seed 0 ...", code=2)
    assert restarts.give_up_line(tmp_path, 0, 1) == (
        "schedc: error: gave up after --max-restarts 1: every one of 2 attempts died at "
        "start-up: [rank 0] --save-dir ck: checkpoint step-00000005 was saved with --seed 0, "
        "this run has --seed 7: pass --seed 0 ...", 2)
