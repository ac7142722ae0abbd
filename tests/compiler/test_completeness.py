"""Completeness (schedc.completeness): the check by sections settles every
sound run, and whatever it cannot settle is named as the instruction by
instruction check names it."""

from __future__ import annotations

import pytest
from compiling import compiled
from mutate import with_body

from schedc.completeness import Completeness
from schedc.errors import VerifyError
from schedc.runs import Runs
from schedc.verify import _fail

CASES = [("paci", 4, 8), ("pipedream-2bw", 3, 6), ("amdp", 4, 8), ("pipedream", 3, 1),
         ("1f1b", 4, 8), ("zb-h1", 4, 4), ("chimera", 4, 4)]


@pytest.mark.parametrize("name,p,m", CASES)
def test_sound_runs_are_settled_by_sections(name, p, m):
    c = compiled(name, p, m)
    check = Completeness(c.manifest, _fail)
    runs = Runs(c.manifest, c.programs, 3)
    for n in ((1,) if c.manifest.synchronous else (1, 2, 3)):
        un = runs.run(n)
        assert check._settled(un)
        check._exact(un)  # and the plain check agrees


def _error(check, un) -> tuple:
    try:
        check(un)
    except VerifyError as exc:
        return exc.reason, exc.rank, exc.section, exc.index
    return None


def _broken(c, mutation: str):
    body = list(c.programs[1].body)
    k = next(j for j, x in enumerate(body) if x.op == "F")
    if mutation == "missing":
        del body[k]
    elif mutation == "twice":
        body.insert(k, body[k])
    else:  # a micro-batch of another pipeline
        body[k] = body[k].shifted(1, 0)
    return with_body(c, 1, body)


@pytest.mark.parametrize("name,p,m", [("paci", 4, 8), ("amdp", 4, 8), ("1f1b", 4, 8)])
@pytest.mark.parametrize("mutation", ["missing", "twice", "shifted"])
def test_what_sections_cannot_settle_is_named_instruction_by_instruction(name, p, m,
                                                                          mutation):
    c = compiled(name, p, m)
    programs = _broken(c, mutation)
    runs = Runs(c.manifest, programs, 3)
    for n in ((1,) if c.manifest.synchronous else (1, 2, 3)):
        un = runs.run(n)
        named = _error(Completeness(c.manifest, _fail)._exact, un)
        assert named is not None
        assert _error(Completeness(c.manifest, _fail).check, un) == named
