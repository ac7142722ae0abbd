"""`schedc compile`: a .sched file or preset to verified program files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from schedc.cli._common import add_spec_arguments, spec_from_args
from schedc.compiler import compile_spec, few_collections
from schedc.errors import UserError
from schedc.export_csv import torch_csv
from schedc.files import write_programs
from schedc.overlap import Overlap
from schedc.report import summary
from schedc.verify import prove_overlap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile and verify a schedule into program files")
    add_spec_arguments(p)
    p.add_argument("-o", "--output", required=True, help="program directory to write")
    p.add_argument("--emit", nargs=2, metavar=("FORMAT", "FILE"), action="append", default=[],
                   help="also write FORMAT to FILE; FORMAT: torch-csv")
    p.add_argument("--posted-batches", type=int, default=1, metavar="K",
                   help="prove the programs under K posted batches (sends complete in the "
                        "background, receives posted one batch ahead; docs/programs.md, "
                        "\"Overlap\"); `schedc run` then runs them so")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.posted_batches < 1:
        raise UserError(f"--posted-batches must be at least 1, got {args.posted_batches}")
    for fmt, _ in args.emit:
        if fmt != "torch-csv":
            raise UserError(f"unknown --emit format {fmt!r}; supported: torch-csv")
    with few_collections(pause=True):  # compiling and writing: millions of objects
        compiled = compile_spec(spec)
        compiled = replace(compiled, manifest=prove_overlap(
            compiled.manifest, compiled.programs, Overlap.posting(args.posted_batches)))
        csvs = [(f, torch_csv(compiled.manifest, compiled.programs)) for _, f in args.emit]
        out = write_programs(args.output, compiled.manifest, compiled.programs)
    for path, text in csvs:
        Path(path).write_text(text)
    if not args.quiet:
        print(summary(compiled.manifest))
        print(f"wrote {len(compiled.programs)} rank programs to {out}/")
    return 0
