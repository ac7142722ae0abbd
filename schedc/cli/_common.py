"""Helpers the sub-commands share: turning a file or preset into a Spec."""

from __future__ import annotations

import argparse

from schedc.errors import UserError, suggest
from schedc.presets import PRESETS, preset_spec
from schedc.spec import Spec, SpecError


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a .sched file (or use --preset)")
    p.add_argument("--preset", type=preset_name, metavar="NAME",
                   help=f"a named schedule: {', '.join(PRESETS)}")
    p.add_argument("--stages", type=int, help="total stages S")
    p.add_argument("--ranks", type=int, help="ranks R (default S; S/R chunks per rank)")
    p.add_argument("--microbatches", type=int, help="micro-batches per optimizer step")


def preset_name(name: str) -> str:
    """A preset's name, or argparse's error with the nearest one (as the DSL does)."""
    if name in PRESETS:
        return name
    raise argparse.ArgumentTypeError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})"
                                     f"{suggest(name, list(PRESETS))}")


def spec_from_args(args: argparse.Namespace) -> Spec:
    overrides = {k: getattr(args, k) for k in ("stages", "ranks", "microbatches")
                 if getattr(args, k) is not None}
    if args.file and args.preset:
        raise UserError("give a .sched file or --preset, not both")
    try:
        if args.file:
            from schedc.dsl import parse_file

            spec = parse_file(args.file)
            return spec.with_(**overrides).validate() if overrides else spec
        if args.preset:
            return preset_spec(args.preset, **overrides).validate()
    except SpecError as exc:
        raise UserError(f"invalid schedule: {exc}") from None
    raise UserError("nothing to compile: give a .sched file or --preset NAME")
