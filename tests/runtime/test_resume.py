"""(e) Checkpoint and resume: a resumed run equals an uninterrupted one, bit for
bit; a save that dies half-way leaves the previous checkpoint loadable."""

from __future__ import annotations

import pytest
import torch
from runtime_testing import assert_same, compile_preset, run_inprocess
from schedc.runtime import checkpoint


@pytest.mark.parametrize("name", ["1f1b", "paci", "pipedream-2bw"])
def test_resume_equals_uninterrupted(name, tmp_path):
    d = compile_preset(tmp_path / "prog", name, 2, 4)
    every = ["--save-every", "2"]
    whole = run_inprocess(d, "--steps", "4", *every, "--save-dir", str(tmp_path / "a"))
    first = run_inprocess(d, "--steps", "2", *every, "--save-dir", str(tmp_path / "b"))
    rest = run_inprocess(d, "--steps", "4", *every, "--resume", str(tmp_path / "b"))
    assert first.losses + rest.losses == whole.losses
    rest.reads = whole.reads = []
    whole.losses = rest.losses
    assert_same(rest, whole)  # final weights, versions


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    d = compile_preset(tmp_path / "prog", "1f1b", 2, 4)
    ck = tmp_path / "ck"
    run_inprocess(d, "--steps", "1", "--save-every", "1", "--save-dir", str(ck))
    good = checkpoint.find(ck)

    def dying_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk gone")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(Exception, match="disk gone"):
        run_inprocess(d, "--steps", "2", "--save-every", "1", "--resume", str(ck))
    monkeypatch.undo()
    assert checkpoint.find(ck) == good  # `latest` still names the complete one
    assert not list((ck / "step-00000002").glob("rank*.pt"))  # only temp files, never renamed
    resumed = run_inprocess(d, "--steps", "2", "--save-every", "1", "--resume", str(ck))
    assert len(resumed.losses) == 1
