"""Malformed inputs in corpus/: each names its expected error on line 1,

    # expect: LINE:COL: message fragment

and must fail with a DslError at exactly that place, containing the fragment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schedc.dsl import DslError, parse_file

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.sched"))
EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_corpus_file(path: Path) -> None:
    header = path.read_text(encoding="utf-8").splitlines()[0]
    match = EXPECT.fullmatch(header.strip())
    assert match, f"{path.name}: first line must be '# expect: LINE:COL: fragment'"
    line, col, fragment = int(match[1]), int(match[2]), match[3]
    with pytest.raises(DslError) as info:
        parse_file(path)
    err = info.value
    assert (err.line, err.col) == (line, col), err.render()
    assert fragment in err.message, err.render()
    rendered = err.render().splitlines()
    assert rendered[0] == f"{path}:{line}:{col}: error: {err.message}"
    assert len(rendered) == 3 and rendered[2].rstrip().endswith("^")
