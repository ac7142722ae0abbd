"""`schedc show DIR`: the programs as a per-rank text grid, and the analysis."""

from __future__ import annotations

import argparse

from schedc.files import load_programs
from schedc.report import grid, summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print the programs as a per-rank grid")
    p.add_argument("dir", help="program directory")
    p.add_argument("--comms", action="store_true", help="also show communication and weights")
    p.add_argument("--rank", type=int, action="append", help="only this rank (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest, programs = load_programs(args.dir)
    if args.rank:
        from schedc.errors import UserError

        bad = [r for r in args.rank if not 0 <= r < manifest.world_size]
        if bad:
            raise UserError(f"--rank {bad[0]}: the program has ranks 0..{manifest.world_size - 1}")
    print(summary(manifest))
    print()
    print(grid(manifest, programs, comms=args.comms, ranks=args.rank))
    return 0
