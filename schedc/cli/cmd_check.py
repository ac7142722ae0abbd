"""`schedc check DIR`: re-verify program files (after a hand edit, say)."""

from __future__ import annotations

import argparse

from schedc.files import load_programs
from schedc.verify import verify


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="re-verify a program directory")
    p.add_argument("dir", help="program directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest, programs = load_programs(args.dir, check_hashes=False)
    verify(manifest, programs)
    print(f"{args.dir}: OK: {manifest.world_size} ranks, complete, dependencies met, "
          "deadlock-free, within the schedule's bounds")
    return 0
