"""The examples of README.md and docs/*.md, as the docs test runs them.

Every fenced block must name its kind in the info string, so that nothing
runnable hides in an untagged block:

- `sh` (or `bash`, `shell`): commands, run as one bash script (`set -e`);
- `console`: `$ command` lines, each followed by the output it prints; the
  output shown is compared with the real one (a line `...` stands for any
  lines, `...` inside a line for any text);
- `python`: a script, run with the project's python;
- `sched`: a schedule (docs/dsl.md); it must parse, or, when its first line
  is `# expect-error`, must be refused; when its first line names a file
  (`# examples/x.sched`) it must be that file's text;
- anything else (`text`, `json`, `ebnf`, ...): shown, not run.

A block that cannot run in CI says so on its first line, where readers see it
too: `# docs-test: skip (needs a GPU)`. The reason is required. A block that
runs, but too long for CI (several torchrun launches), says
`# docs-test: nightly (reason)`: it runs in the nightly tier only
(SCHEDC_NIGHTLY=1, tests/tiers.py); no later block may need what it makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_KINDS = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "console",
             "python": "python", "sched": "sched"}
SHOWN_KINDS = {"text", "json", "ebnf", "csv", "toml", "ini", "dot", "diff"}
SKIP = re.compile(r"^\s*#\s*docs-test:\s*skip\s*(?:\((?P<reason>[^)]*)\))?")
NIGHTLY = re.compile(r"^\s*#\s*docs-test:\s*nightly\s*(?:\((?P<reason>[^)]*)\))?")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Block:
    path: Path  # the Markdown file
    line: int  # 1-based line of the opening fence
    kind: str  # the info string as written
    text: str  # the block's content

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def runs_as(self) -> str | None:
        return RUN_KINDS.get(self.kind)

    @property
    def skip_reason(self) -> str | None:
        """Why the block is not run ('' when the marker gives no reason), or None."""
        return self._marker(SKIP)

    @property
    def nightly_reason(self) -> str | None:
        """Why the block runs in the nightly tier only ('' without a reason), or None."""
        return self._marker(NIGHTLY)

    def _marker(self, pattern: re.Pattern) -> str | None:
        first = self.text.splitlines()[0] if self.text else ""
        m = pattern.match(first)
        if not m:
            return None
        return (m.group("reason") or "").strip()


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    out, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start, body = m.group("fence"), i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m.group("indent")):])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: the block is never closed")
        out.append(Block(path, start + 1, m.group("info"), "\n".join(body) + "\n"))
        i += 1
    return out


@dataclass(frozen=True)
class Command:
    command: str  # without the prompt; continuation lines joined as written
    expected: list[str]  # the output lines shown after it


def console_commands(block: Block) -> list[Command]:
    """The `$ command` lines of a console block and the output shown after each."""
    out: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if out:
                out[-1].expected.append(line)
            elif line.strip() and not SKIP.match(line) and not NIGHTLY.match(line):
                raise ValueError(f"{block.where}: output before the first '$ ' command")
            i += 1
            continue
        cmd = [line[2:]]
        while cmd[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i].removeprefix("> "))
        out.append(Command("\n".join(cmd), []))
        i += 1
    return out


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """`expected` (with `...` wildcards) against `actual`, trailing blanks ignored."""
    exp = [e.rstrip() for e in expected]
    act = [a.rstrip() for a in actual]
    while exp and not exp[-1]:
        exp.pop()
    while act and not act[-1]:
        act.pop()
    pattern = "".join(
        r"(?:.*\n)*?" if e == "..." else ".*".join(map(re.escape, e.split("..."))) + r"\n"
        for e in exp)
    return re.fullmatch(pattern, "".join(a + "\n" for a in act)) is not None
