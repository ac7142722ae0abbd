"""bench/tune_speed.py runs and counts what it tuned (its timing is not asserted)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "tune_speed.py"


def test_tune_speed_reports_candidates_and_compiles(capsys) -> None:
    spec = importlib.util.spec_from_file_location("tune_speed", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--ranks", "2", "--batch", "4", "--model", "gpt-125m", "--warm-cache"])
    lines = capsys.readouterr().out.splitlines()
    cold = re.fullmatch(r"cold: 70 candidates \((.*)\), (\d+) compiles, 0 from the cache, "
                        r"[0-9.]+ s \([0-9.]+ s compiling, [0-9.]+ s simulating\); best .*",
                        lines[0])
    assert cold, lines[0]
    compiles = int(cold.group(2))
    assert compiles >= 60  # every candidate but those refused before compiling
    # the second tune reads every compile back from the first one's cache
    assert re.fullmatch(rf"warm cache: 70 candidates \(.*\), 0 compiles, {compiles} from the "
                        r"cache, [0-9.]+ s \(.*\); best .*", lines[1]), lines[1]
    assert lines[2].startswith("target: >= 50 candidates compiled and evaluated in <= 60 s: ")
