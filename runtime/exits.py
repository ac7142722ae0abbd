"""How a run ends on an error: one line, one exit status, and a record.

Exit statuses (docs/reliability.md): 2 a user error (bad programs, options,
model, checkpoint), 3 a fault (NaN under `--on-nan stop`, a peer that died,
an instruction that failed), 124 a wait that outlived `--timeout`.

A rank started by `schedc run` also leaves a record of its failure in the
directory named by SCHEDC_REPORT_DIR (`rank<g>.json`: rank, exit status,
message, time), so that `schedc run` can name the rank whose failure came
first, in one line, instead of every rank's output. This module is torch-free:
`schedc run` reads the records.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .watchdog import EXIT_FAULT, EXIT_HANG

REPORT_DIR_ENV = "SCHEDC_REPORT_DIR"
PREFIX = "schedc: error: "


def classify(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) of an error a run may end with; None for a bug."""
    from schedc.errors import UserError

    if isinstance(exc, UserError):
        return exc.render(), exc.exit_code
    from .interpreter import ExecutionError  # imports torch: only where a run happened

    if isinstance(exc, ExecutionError):
        code = EXIT_HANG if exc.reason.startswith("timeout:") else EXIT_FAULT
        return f"{PREFIX}{exc}", code
    return None


def record(rank: int, message: str, code: int) -> None:
    """Leave the failure's record for `schedc run` (when it started this process)."""
    folder = os.environ.get(REPORT_DIR_ENV)
    if not folder:
        return
    data = {"rank": rank, "code": code, "message": message, "time": time.time()}
    path = Path(folder) / f"rank{rank}.json"
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # the line on stderr still says it


# A rank that lost its connection to a peer failed because that peer did (or
# because the peer's own wait timed out, which closes gloo's connection at
# once, before the peer has said why): the peer's record is the cause.
_CONSEQUENCE = re.compile(r"Connection (closed|reset)|Broken pipe", re.IGNORECASE)


def read_records(folder: Path) -> list[dict]:
    """Every rank's failure record, the cause first: first failure first,
    failures caused by a lost connection after every other one."""
    out = []
    for path in sorted(Path(folder).glob("rank*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and {"rank", "code", "message", "time"} <= set(data):
            out.append(data)
    return sorted(out, key=lambda d: (bool(_CONSEQUENCE.search(str(d["message"]))),
                                      d["time"], d["rank"]))
