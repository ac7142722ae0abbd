"""`schedc run DIR`: train with program files.

    schedc run out/1f1b --local --model gpt-tiny --steps 20      # every rank in this process
    schedc run out/1f1b --model gpt-tiny --steps 20              # torchrun, one process per rank

torch is imported inside the handler only: this module is imported whenever
the `schedc` command starts, and `schedc compile` must not pay for torch.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from schedc.runtime.config import add_run_arguments  # torch-free

    parser = subparsers.add_parser(
        "run", help="train with program files (in-process or under torchrun)",
        description="Execute compiled program files: in this process (--local) or one "
                    "process per rank under torchrun (the default).",
    )
    add_run_arguments(parser)
    parser.add_argument("--local", action="store_true",
                        help="run every rank in this process (in-process transport)")
    parser.add_argument("--max-restarts", type=int, default=0, metavar="N",
                        help="torchrun restarts the job up to N times after a rank dies; "
                             "each restart resumes from --save-dir (docs/reliability.md)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from schedc.runtime.config import config_from_args
    from schedc.runtime.restarts import failures_mark, give_up_line, restart_options

    cfg = config_from_args(args)
    restarts = restart_options(cfg, args.max_restarts, args.local)
    if args.local:
        return _run_local(cfg)
    from schedc.cli.torchrun_launch import launch
    from schedc.runtime.programs import load

    manifest, _ = load(cfg.programs)
    mark = failures_mark(cfg.save_dir)
    explain = (lambda: give_up_line(cfg.save_dir, mark, args.max_restarts)) if restarts else None
    return launch(cfg, manifest.world_size * cfg.dp, tuple(restarts),
                  end_on_failure=not restarts, explain=explain)


def _run_local(cfg) -> int:
    """In-process: a run-time fault (NaN stop, a failed instruction) is one line too."""
    from schedc.runtime.exits import classify
    from schedc.runtime.local import run_local  # imports torch

    try:
        run_local(cfg)
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        print(known[0], file=sys.stderr)
        return known[1]
    return 0
