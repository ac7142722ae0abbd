"""Every example in README.md and docs/*.md runs as written (docs/README rule:
every command shown must run). The blocks of one document run in order in a
scratch directory of their own that holds copies of `examples/`, `scripts/`,
`bench/` (scripts only) and `docs/`, and `.venv` (this test's environment,
through links), so relative paths work as from the repository root.

Training runs are shortened by SCHEDC_MAX_STEPS (docs/runtime.md), which caps
every run's --steps; a block that cannot run here (a GPU, several nodes, more
than a minute) says so on its first line (`# docs-test: skip (reason)`); a
block too long for CI runs in the nightly tier only (`# docs-test: nightly
(reason)`, SCHEDC_NIGHTLY=1, tests/tiers.py).
See tests/docs/markdown_blocks.py for the kinds of blocks and what each must do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_blocks import (
    RUN_KINDS,
    SHOWN_KINDS,
    Block,
    blocks,
    console_commands,
    output_matches,
)
from tiers import NIGHTLY

from schedc.dsl import DslError, parse_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STEPS_CAP = "2"  # SCHEDC_MAX_STEPS for every training run the docs show
BLOCK_TIMEOUT = 300  # seconds; a block that takes longer is a failure (and a hang is one)


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_every_block_says_what_it_is(doc: Path) -> None:
    for block in blocks(doc):
        assert block.kind in RUN_KINDS or block.kind in SHOWN_KINDS, (
            f"{block.where}: a fenced block needs a kind ({', '.join(sorted(RUN_KINDS))} to "
            f"be run, or {', '.join(sorted(SHOWN_KINDS))}); found {block.kind or 'none'!r}")
        if block.runs_as and block.skip_reason is not None:
            assert block.skip_reason, f"{block.where}: 'docs-test: skip' needs a (reason)"
        if block.runs_as and block.nightly_reason is not None:
            assert block.nightly_reason, f"{block.where}: 'docs-test: nightly' needs a (reason)"


def _scratch(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("examples", "scripts", "docs"):
        shutil.copytree(ROOT / name, work / name)
    shutil.copytree(ROOT / "bench", work / "bench",
                    ignore=shutil.ignore_patterns("results", "__pycache__"))
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, work / name)
    # .venv: this environment, seen through links, with a fresh stamp so that
    # `make demo` takes it as installed (and could never rebuild the real one).
    venv, real = work / ".venv", Path(sys.prefix)
    venv.mkdir()
    for part in real.iterdir():
        if part.name not in (".installed", "pyvenv.cfg"):
            (venv / part.name).symlink_to(part)
    if (real / "pyvenv.cfg").exists():
        shutil.copy(real / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / ".installed").touch()
    return work


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCHEDC_INJECT")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["SCHEDC_MAX_STEPS"] = STEPS_CAP
    env["OMP_NUM_THREADS"] = "1"
    env["VIRTUAL_ENV"] = sys.prefix
    return env


def _shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=BLOCK_TIMEOUT)


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def _run_sh(block: Block, cwd: Path) -> str | None:
    proc = _shell("set -e\n" + block.text, cwd)
    if proc.returncode:
        return f"exit {proc.returncode}:\n{_tail(proc.stdout)}"
    return None


def _run_console(block: Block, cwd: Path) -> str | None:
    for cmd in console_commands(block):
        proc = _shell(cmd.command, cwd)
        actual = proc.stdout.splitlines()
        if not output_matches(cmd.expected, actual):
            return (f"$ {cmd.command}\nshown:\n" + "\n".join(cmd.expected)
                    + f"\nprinted (exit {proc.returncode}):\n" + proc.stdout)
        if proc.returncode and not any(line.strip() for line in cmd.expected):
            return f"$ {cmd.command}\nexit {proc.returncode}:\n{_tail(proc.stdout)}"
    return None


def _run_python(block: Block, cwd: Path) -> str | None:
    script = cwd / f"_block_{block.line}.py"
    script.write_text(block.text)
    proc = subprocess.run([sys.executable, script.name], cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=BLOCK_TIMEOUT)
    if proc.returncode:
        return f"exit {proc.returncode}:\n{_tail(proc.stdout)}"
    return None


def _check_sched(block: Block, cwd: Path) -> str | None:
    first = block.text.splitlines()[0].strip() if block.text.strip() else ""
    if first.startswith("# expect-error"):
        try:
            parse_text(block.text, block.where)
        except DslError:
            return None
        return "shown as an error, but it parses"
    name = first[2:].split()[0] if first.startswith("# ") and len(first) > 2 else ""
    if name.endswith(".sched"):  # `# examples/x.sched`: the block is that file
        named = cwd / name
        if not named.is_file():
            return f"names {name}, which does not exist"
        if named.read_text() != block.text:
            return f"is not the text of {name}"
    try:
        parse_text(block.text, block.where)
    except DslError as exc:
        return exc.render()
    return None


RUNNERS = {"sh": _run_sh, "console": _run_console, "python": _run_python,
           "sched": _check_sched}


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_docs_run_as_written(doc: Path, tmp_path: Path) -> None:
    work = _scratch(tmp_path)
    failures = []
    for block in blocks(doc):
        if block.runs_as is None or block.skip_reason is not None:
            continue
        if block.nightly_reason is not None and not NIGHTLY:
            continue
        try:
            problem = RUNNERS[block.runs_as](block, work)
        except subprocess.TimeoutExpired:
            problem = f"still running after {BLOCK_TIMEOUT} s"
        if problem:
            failures.append(f"{block.where} ({block.kind}): {problem}")
    assert not failures, "\n\n".join(failures)
