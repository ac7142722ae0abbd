"""`schedc check DIR [--rehash]`: re-verify program files (after a hand edit, say).

The verifier re-proves the programs whatever their hashes say. A hand-edited
set that verifies is accepted by simulate/run only once `--rehash` has
recorded its new hashes in the manifest.
"""

from __future__ import annotations

import argparse

from schedc.errors import ProgramFileError
from schedc.files import load_programs, rehash_programs
from schedc.overlap import Overlap
from schedc.verify import verify


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="re-verify a program directory (after a hand edit)")
    p.add_argument("dir", help="program directory")
    p.add_argument("--rehash", action="store_true",
                   help="once verified, record the files' new hashes in manifest.json so "
                        "that simulate/run accept the edited set")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest, programs = load_programs(args.dir, check_hashes=False)
    verify(manifest, programs)
    rule = Overlap.from_dict(manifest.overlap)
    under = f" under {rule.describe()}" if rule.overlapped else ""
    ok = (f"{args.dir}: OK: {manifest.world_size} ranks, complete, dependencies met, "
          f"deadlock-free{under}, within the schedule's bounds")
    if args.rehash:
        rehash_programs(args.dir)
        print(f"{ok}; hashes recorded in manifest.json")
        return 0
    try:
        load_programs(args.dir)
    except ProgramFileError:
        print(f"{ok}; but the files changed after compile: run `schedc check --rehash "
              f"{args.dir}` to record their hashes (until then simulate/run refuse them)")
        return 0
    print(ok)
    return 0
