"""One step numbering everywhere (progress line, metrics file, NaN messages,
checkpoints: step k is the optimizer step that makes weight version k), one
file mode for checkpoints and program files, and SCHEDC_MAX_STEPS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runtime_testing import compile_preset, config
from schedc.runtime.local import run_local

from schedc.errors import UserError
from schedc.files import file_mode

BASE = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> Path:
    return compile_preset(tmp_path_factory.mktemp("p") / "1f1b", "1f1b", stages=2,
                          microbatches=2)


def _config(prog: Path, *extra: str):
    import argparse

    from schedc.runtime.config import add_run_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return config_from_args(parser.parse_args([str(prog), *BASE, *extra]))


def test_progress_and_metrics_count_steps_alike(prog: Path, tmp_path: Path, capsys) -> None:
    metrics = tmp_path / "m.jsonl"
    lines = run_local(_config(prog, "--steps", "3", "--metrics", str(metrics)))
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3]
    progress = capsys.readouterr().err.splitlines()
    assert progress[-1].startswith("step 3/3  loss ")


def test_checkpoints_get_the_program_files_mode(prog: Path, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        run_local(_config(prog, "--steps", "1", "--quiet", "--save-every", "1",
                          "--save-dir", str(tmp_path / "ck")))
        mode = file_mode()
    finally:
        os.umask(old)
    written = [p for p in (tmp_path / "ck").rglob("*") if p.is_file()]
    assert written and {p.stat().st_mode & 0o777 for p in written} == {mode} == {0o640}


def test_schedc_max_steps_caps_steps_and_save_every(prog: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCHEDC_MAX_STEPS", "2")
    cfg = config(prog, "--steps", "50", "--save-every", "10", "--save-dir", "ck")
    assert (cfg.steps, cfg.save_every) == (2, 2)
    assert config(prog, "--steps", "1").steps == 1
    monkeypatch.setenv("SCHEDC_MAX_STEPS", "x")
    with pytest.raises(UserError, match="SCHEDC_MAX_STEPS=x: must be a positive integer"):
        config(prog)
