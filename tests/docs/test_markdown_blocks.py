"""The docs test's reading of Markdown: blocks, console commands, shown output."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_blocks import blocks, console_commands, output_matches

DOC = """# Title

```sh
# docs-test: skip (needs a GPU)
schedc run out --device cuda
```

text

```console
$ echo a \\
  b
a b
$ true
```

````python
print("```")
````

```
untagged
```
"""


def test_blocks_are_read_with_kind_line_and_text(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(DOC)
    got = blocks(doc)
    assert [(b.line, b.kind) for b in got] == [(3, "sh"), (10, "console"), (17, "python"),
                                               (21, "")]
    assert got[0].skip_reason == "needs a GPU" and got[1].skip_reason is None
    assert got[2].text == 'print("```")\n'
    assert [b.runs_as for b in got] == ["sh", "console", "python", None]


def test_console_commands_with_continuations_and_output(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(DOC)
    cmds = console_commands(blocks(doc)[1])
    assert [(c.command, c.expected) for c in cmds] == [("echo a \\\n  b", ["a b"]),
                                                       ("true", [])]


def test_unclosed_block_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("```sh\nls\n")
    with pytest.raises(ValueError, match="d.md:1: the block is never closed"):
        blocks(doc)


@pytest.mark.parametrize("expected, actual, ok", [
    (["a", "b"], ["a", "b", ""], True),
    (["a", "b"], ["a", "c"], False),
    (["a", "b"], ["a"], False),
    (["a", "...", "z"], ["a", "b", "c", "z"], True),
    (["a", "...", "z"], ["a", "z"], True),
    (["took ... s"], ["took 1.5 s"], True),
    (["took ... s"], ["took 1.5 ms"], False),
    (["x  "], ["x"], True),
])
def test_shown_output_matching(expected, actual, ok) -> None:
    assert output_matches(expected, actual) is ok


def test_nightly_marker_is_read_with_its_reason(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("```sh\n# docs-test: nightly (four torchrun jobs)\nls\n```\n\n"
                   "```console\n# docs-test: nightly (long)\n$ true\n```\n")
    first, second = blocks(doc)
    assert first.nightly_reason == "four torchrun jobs" and first.skip_reason is None
    assert [(c.command, c.expected) for c in console_commands(second)] == [("true", [])]
