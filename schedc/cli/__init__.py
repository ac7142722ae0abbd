"""The `schedc` command line. Each sub-command lives in its own module that
defines `register(subparsers)`; this module only assembles them and turns
every expected error into a message and an exit status, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from schedc.errors import UserError

# Sub-command modules, in the order `schedc --help` lists them.
_COMMANDS = ("compile", "check", "show", "graph", "simulate", "viz", "compare", "tune", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schedc",
        description="Compile, verify, simulate, draw and run pipeline-parallel schedules.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"schedc.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"schedc.cli.cmd_{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("schedc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file the user named cannot be read or written
        if exc.filename is None:
            raise
        print(f"schedc: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return UserError.exit_code
