"""bench/tune_speed.py runs and counts what it tuned (its timing is not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "tune_speed.py"


def test_tune_speed_reports_candidates_and_compiles(capsys) -> None:
    spec = importlib.util.spec_from_file_location("tune_speed", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--ranks", "2", "--batch", "4", "--model", "gpt-125m", "--warm-cache"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cold: 67 candidates (")
    # two refused when validated, before any compile
    assert "2 refused" in lines[0] and ", 65 compiles, 0 from the cache, " in lines[0]
    assert lines[1].startswith("warm cache: 67 candidates (")
    assert ", 0 compiles, 65 from the cache, " in lines[1]
    assert lines[2].startswith("target: >= 50 candidates compiled and evaluated in <= 60 s: ")
