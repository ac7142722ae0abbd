"""Compile every preset at several sizes and every examples/*.sched into DIR,
for checking that a refactoring leaves the programs byte-identical:

    git stash && .venv/bin/python scripts/compile_all.py /tmp/before && git stash pop
    .venv/bin/python scripts/compile_all.py /tmp/after && diff -r /tmp/before /tmp/after

Each compile is written with `write_programs` under DIR/<name>; a synchronous
one-pipeline set is also exported to PyTorch's CSV and read back through the
compute-only import (DIR/<name>/co). DIR/log.txt says which compiled and why the
others did not (sizes a family refuses are expected there). About a minute.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from schedc.compiler import compile_spec
from schedc.dsl import parse_file
from schedc.errors import UserError
from schedc.export_csv import torch_csv
from schedc.files import write_programs
from schedc.presets import PRESETS, preset_spec
from schedc.simulate.compute_only import load_csv
from schedc.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((2, 4), (4, 8), (4, 16), (8, 16), (3, 6), (5, 10), (4, 4), (6, 12))
WITH_RANKS = (("interleaved-1f1b", 4, 2, 8), ("interleaved-1f1b", 8, 2, 8),
              ("interleaved-1f1b", 6, 3, 12), ("interleaved-1f1b", 8, 4, 16),
              ("interleaved-1f1b", 16, 8, 16), ("zbv", 8, 4, 8))


def jobs() -> list[tuple[str, Callable[[], Spec]]]:
    out: list[tuple[str, Callable[[], Spec]]] = []
    for name in PRESETS:
        for s, m in SIZES:
            out.append((f"{name}_{s}x{m}",
                        lambda n=name, s=s, m=m: preset_spec(n, stages=s, microbatches=m)))
        out.append((f"{name}_dp2", lambda n=name: preset_spec(
            n, stages=4, microbatches=8, dp_period=2)))
        out.append((f"{name}_split_4x8", lambda n=name: preset_spec(
            n, stages=4, microbatches=8, split_backward=True)))
    for name, s, r, m in WITH_RANKS:
        out.append((f"{name}_{s}r{r}x{m}", lambda n=name, s=s, r=r, m=m: preset_spec(
            n, stages=s, ranks=r, microbatches=m)))
    for path in sorted((ROOT / "examples").glob("*.sched")):
        out.append((f"example_{path.stem}", lambda p=path: parse_file(p)))
    return out


def main(directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    log = []
    for tag, make in jobs():
        try:
            compiled = compile_spec(make().validate())
        except (UserError, ValueError) as exc:
            log.append(f"{tag}: {type(exc).__name__}: {exc}")
            continue
        write_programs(out / tag, compiled.manifest, compiled.programs)
        try:
            csv = out / tag / "torch.csv"
            csv.write_text(torch_csv(compiled.manifest, compiled.programs))
            manifest, programs = load_csv(csv)
            write_programs(out / tag / "co", manifest, programs)
        except UserError as exc:
            (out / tag / "co_refused.txt").write_text(f"{exc}\n")
        log.append(f"{tag}: ok")
    (out / "log.txt").write_text("\n".join(log) + "\n")
    print(f"{sum(line.endswith(': ok') for line in log)} of {len(log)} compiled into {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: compile_all.py DIR")
    main(sys.argv[1])
