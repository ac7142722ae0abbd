"""files._dumps_program writes each instruction as json.dumps would, fast."""

from __future__ import annotations

import json

import pytest
from compiling import compiled

from schedc.files import _dumps_program, _instr_json, _lines
from schedc.program import Instr, RankProgram


def _by_json(prog: RankProgram) -> bytes:
    """The rank file as json.dumps writes it: one instruction per line."""
    data = prog.to_dict()
    parts = [f'{{"format_version": {data["format_version"]}, "rank": {data["rank"]},']
    names = ("prologue", "body", "epilogue")
    for n, key in enumerate(names):
        lines = ",\n  ".join(json.dumps(i, separators=(", ", ": ")) for i in data[key])
        tail = "" if n == len(names) - 1 else ","
        parts.append(f' "{key}": [' + (f"\n  {lines}\n ]" if lines else "]") + tail)
    return ("\n".join(parts) + "}\n").encode()


@pytest.mark.parametrize("name,p,m", [("paci", 4, 8), ("pipedream", 4, 1), ("chimera", 4, 8),
                                      ("pipedream-2bw", 4, 4), ("zbv", 8, 8)])
def test_rank_files_are_the_json_encoders_bytes(name, p, m):
    for prog in compiled(name, p, m, ranks=p // 2 if name == "zbv" else None).programs:
        assert _dumps_program(prog) == _by_json(prog)


ODD = [

    Instr("F", stage=1, mb=2, pipeline=0, version=0),
    Instr("F", stage=1, mb=2, pipeline=0, version=0, lookahead=True),
    Instr("F", stage=True, mb=1, pipeline=0, version=0),  # a bool is not an integer
    Instr("F", stage=1.5, mb=1, pipeline=0, version=0),
    Instr("F", stage=float("nan"), mb=1, pipeline=0, version=0),
    Instr("F", stage=1, mb=None, pipeline=0, version=0),
    Instr("F", stage=1, mb=1, pipeline=0, version=0, peer=3),
    Instr("ALLREDUCE", stage=1, pipeline=0, group=(0, 1)),
    Instr("LOOKAHEAD", stage=1, pipeline=0, version=2, alpha=0.5),
    Instr("STEP", stage=0, pipeline=0, version=1, count=8),
    Instr("SEND_ACT", stage=0, mb=10**20, pipeline=0, peer=1),
]


@pytest.mark.parametrize("ins", ODD)
def test_every_value_as_json_writes_it(ins):
    assert _instr_json(ins) == json.dumps(ins.to_dict(), separators=(", ", ": "))


def test_a_section_of_mixed_values_column_by_column():
    """_lines writes a column at a time: one column holding an int, a bool,
    a float and None in one section is still each line as json writes it."""
    usual = Instr("F", stage=1, mb=2, pipeline=0, version=0)
    prog = RankProgram(3, prologue=(usual,), body=tuple(ODD) + (usual,) + tuple(reversed(ODD)),
                       epilogue=(Instr("STEP", stage=1, pipeline=0, version=True, count=8),))
    assert _dumps_program(prog) == _by_json(prog)
    assert _lines(prog.body) == [_instr_json(i) for i in prog.body]
