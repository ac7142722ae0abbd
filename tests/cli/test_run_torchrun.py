"""`schedc run` under torchrun: a user error, a NaN stop or a frozen rank ends
in one line naming the rank and the cause, with the documented status, and no
traceback on the terminal (the log file the line names keeps every rank's
output). Also `--local`'s faults, and the world-size message's hints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schedc.cli import main
from schedc.cli.torchrun_launch import _children

BASE = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("p") / "1f1b"
    assert main(["compile", "--preset", "1f1b", "--stages", "2", "--microbatches", "4",
                 "-o", str(out), "-q"]) == 0
    return out


def _schedc_run(*argv: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`schedc run ...` in a process of its own; its log goes under `tmp`."""
    return subprocess.Popen([sys.executable, "-m", "schedc", "run", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp),
                                 **(env or {})})


def _error_line(stderr: str) -> str:
    """The one line besides progress lines; and no traceback anywhere."""
    assert "Traceback" not in stderr and "torch.distributed" not in stderr, stderr
    lines = [x for x in stderr.splitlines() if not x.startswith("step ")]
    assert len(lines) == 1, stderr
    return lines[0]


def _log_of(line: str) -> Path:
    m = re.search(r"\(log: (\S+)\)$", line)
    assert m, line
    return Path(m.group(1))


def test_a_model_that_cannot_load_is_one_line_and_status_2(prog: Path, tmp_path: Path) -> None:
    proc = _schedc_run(str(prog), *BASE, "--model", "no_such_module:build", "--steps", "2",
                       tmp=tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    line = _error_line(err)
    assert re.match(r"schedc: error: (rank [01]|every rank): --model no_such_module:build: "
                    r"cannot import", line), line
    log = _log_of(line)
    assert log.parent.parent == tmp_path and "no_such_module" in log.read_text()


def test_a_nan_stop_is_one_line_naming_the_rank_and_status_3(prog: Path, tmp_path: Path
                                                             ) -> None:
    proc = _schedc_run(str(prog), *BASE, "--steps", "3", tmp=tmp_path,
                       env={"SCHEDC_INJECT": "nan-grad@1:5"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3
    line = _error_line(err)
    assert line.startswith("schedc: error: rank 1, instruction "), line
    assert "NumericalFault: non-finite gradient (NaN or Inf) at step 2, stage 1, " \
           "micro-batch 5" in line


def test_a_frozen_rank_ends_the_run_with_status_124(prog: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = _schedc_run(str(prog), *BASE, "--steps", "2000", "--timeout", "8",
                       "--metrics", str(metrics), tmp=tmp_path)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not (metrics.exists() and metrics.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        torchrun = _children(proc.pid)
        workers = sorted(pid for t in torchrun for pid in _children(t))
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGSTOP)
        _, err = proc.communicate(timeout=120)
        gone = [not Path(f"/proc/{pid}").exists()
                or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                for pid in workers]
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    assert proc.returncode == 124
    line = _error_line(err)
    assert re.match(r"schedc: error: rank [01], instruction \d+ \(\w+ .*\): timeout: waited "
                    r"8 s for ", line), line
    assert gone == [True, True]  # the frozen rank too: schedc run ended it


def test_local_nan_stop_is_one_line_and_status_3(prog: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCHEDC_INJECT", "nan-loss@2")
    assert main(["run", str(prog), "--local", *BASE, "--steps", "2", "--quiet"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("schedc: error: rank 1, instruction ") and "\n" not in err
    assert "non-finite loss (NaN or Inf) at step 1, stage 1, micro-batch 2" in err


@pytest.mark.parametrize("rank, world, dp, hint", [
    ("0", 4, 1, "(for 2 pipeline replicas, pass --dp 2)"),
    ("0", 2, 2, "(start 4: torchrun --nproc-per-node 4)"),
    (None, 1, 1, "(this module runs under torchrun, one process per rank: use `schedc run"),
])
def test_world_size_message_says_what_to_do(prog: Path, monkeypatch, rank, world, dp,
                                            hint) -> None:
    from types import SimpleNamespace

    from schedc.runtime.launch import _world_size_message

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    text = _world_size_message(SimpleNamespace(programs=prog, dp=dp), 2, world)
    assert text.startswith(f"{prog}/manifest.json: field 'world_size': the programs need 2 "
                           f"ranks x --dp {dp} = {2 * dp} processes, torchrun started {world} ")
    assert hint in text


def test_the_cause_comes_first_among_failure_records(tmp_path: Path, monkeypatch) -> None:
    from schedc.runtime.exits import REPORT_DIR_ENV, read_records, record

    monkeypatch.setenv(REPORT_DIR_ENV, str(tmp_path))
    record(0, "schedc: error: rank 0, ...: Connection closed by peer [127.0.0.1]:1", 3)
    record(3, "schedc: error: rank 3, ...: timeout: waited 6 s for ... from rank 2", 124)
    record(1, "schedc: error: rank 1, ...: timeout: waited 6 s for ... from rank 2", 124)
    assert [r["rank"] for r in read_records(tmp_path)] == [3, 1, 0]
