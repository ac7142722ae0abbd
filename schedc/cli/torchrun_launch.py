"""`schedc run DIR` without --local: start torchrun, one process per rank,
and end a failed run in one line.

torchrun's and every rank's output go to a log file; the terminal gets the
progress line and warnings. A rank that fails leaves a record
(`schedc.runtime.exits`: rank, exit status, message). Once the first failure
is known, the other ranks get `GRACE` seconds to end on their own (a peer
notices a dead rank at once; a rank waiting on a frozen one after
`--timeout`), then every process still running is killed: torchrun would
send SIGTERM, which a frozen (stopped) rank cannot act on, and SIGKILL only
30 s later. `schedc run` then prints the first failure, naming its rank, and
the log file, and returns its status (2 a user error, 3 a fault, 124 a
timeout; docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from schedc.runtime.config import RunConfig, to_argv
from schedc.runtime.exits import PREFIX, REPORT_DIR_ENV, read_records

GRACE = 1.0  # seconds the other ranks get after the first failure
_POLL = 0.05
_SHOWN = re.compile(r"^(step \d+/\d+ |schedc: warning: |\[rank \d+\] schedc: warning: )")
EXIT_FAULT = 3  # a run that failed without a rank's record (a crash, a signal)


def torchrun_command(cfg: RunConfig, nproc: int, options: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", *options, "-m", "schedc.runtime.launch",
            *to_argv(cfg)]


def launch(cfg: RunConfig, nproc: int, options: tuple[str, ...] = (),
           end_on_failure: bool = True,
           explain: Callable[[], tuple[str, int] | None] | None = None) -> int:
    """Run `cfg` under torchrun (with torchrun `options`) on `nproc` processes;
    returns the exit status. `end_on_failure=False` leaves a failed attempt
    to torchrun (which restarts the job under --max-restarts); `explain`, when
    it gives one, is the failed run's (line, status) instead of the first
    failing rank's."""
    run_dir = Path(tempfile.mkdtemp(prefix="schedc-run-"))
    reports = run_dir / "failures"
    reports.mkdir()
    log = run_dir / "torchrun.log"
    env = {**os.environ, REPORT_DIR_ENV: str(reports)}
    with open(log, "wb") as sink:
        proc = subprocess.Popen(torchrun_command(cfg, nproc, options), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        reader = threading.Thread(target=_copy, args=(proc.stdout, sink), daemon=True)
        reader.start()
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:  # `kill` of schedc run ends its ranks too, as Ctrl-C does
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            _supervise(proc, reports if end_on_failure else None)
        except KeyboardInterrupt:
            _kill_all(proc)
            print("schedc: interrupted", file=sys.stderr)
            return 130
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
        reader.join(timeout=5)
    records = read_records(reports)
    if proc.returncode == 0 and (not records or not end_on_failure):
        shutil.rmtree(run_dir, ignore_errors=True)
        return 0
    told = explain() if explain is not None else None
    if told is not None:
        print(f"{told[0]} (log: {log})", file=sys.stderr)
        return told[1]
    print(_one_line(records, proc.returncode, nproc, log), file=sys.stderr)
    return records[0]["code"] if records else (proc.returncode or EXIT_FAULT)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _copy(stream, sink) -> None:
    """Everything to the log; the progress line and warnings also to the terminal."""
    seen: set[str] = set()
    for raw in iter(stream.readline, b""):
        sink.write(raw)
        sink.flush()
        line = raw.decode(errors="replace").rstrip("\n")
        if _SHOWN.match(line):
            text = re.sub(r"^\[rank \d+\] ", "", line)
            if text.startswith("step ") or text not in seen:
                seen.add(text)
                print(text, file=sys.stderr, flush=True)


def _supervise(proc: subprocess.Popen, reports: Path | None) -> None:
    """Wait for torchrun; after the first failure, at most GRACE more seconds."""
    first = None
    while proc.poll() is None:
        if first is None and reports is not None and any(reports.glob("rank*.json")):
            first = time.monotonic()
        if first is not None and time.monotonic() - first > GRACE:
            _kill_all(proc)
            break
        time.sleep(_POLL)
    proc.wait()


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc; torchrun starts each rank
    in a session of its own, so a process group does not reach them)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_all(proc: subprocess.Popen) -> None:
    for pid in _children(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _one_line(records: list[dict], code: int, nproc: int, log: Path) -> str:
    if not records:
        return (f"{PREFIX}torchrun failed (exit {code}) before any rank reported an error; "
                f"every rank's output: {log}")
    first = records[0]
    message = first["message"].removeprefix(PREFIX)
    same = sum(1 for r in records if r["message"] == first["message"])
    who = ("every rank" if same == nproc and nproc > 1 else f"rank {first['rank']}")
    if message.startswith(f"rank {first['rank']},") and who != "every rank":
        who = ""  # the message names the rank itself
    return f"{PREFIX}{who + ': ' if who else ''}{message} (log: {log})"
