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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or of `command` alone (its module is
    the only one imported: the others' imports cost a fifth of a small
    compile)."""
    parser = argparse.ArgumentParser(
        prog="schedc",
        description="Compile, verify, simulate, draw and run pipeline-parallel schedules.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS if command not in _COMMANDS else (command,):
        try:
            module = importlib.import_module(f"schedc.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"schedc.cli.cmd_{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
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
