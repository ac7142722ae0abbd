"""The instruction table is the one place an op's facts are spelled.

An AST scan of the compiler and the runtime: a comparison of an op's name with a
string literal (`op == "F"`, `ins.op in ("SEND_ACT", "RECV_GRAD")`) is allowed
only in the functions listed below, each for a reason that is not one of the
table's facts (fields, kind, channel, unit cost, reads / writes, needs, what
ends "in flight", the messages around a compute op). A new literal comparison
fails here: read the fact from schedc/instructions.py instead, or add the
function with its reason. An entry no longer needed fails too, so the list only
shrinks. And a new row in the table (a RECOMPUTE) is enough for the docs
table, the loader, the costs and the placement rule to know it.
"""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from schedc import instructions
from schedc.compiler import compile_spec
from schedc.errors import ProgramFileError
from schedc.files import load_programs, write_programs
from schedc.instructions import ALL_OPS, AROUND, COMPUTE, TABLE, OpInfo
from schedc.presets import preset_spec
from schedc.program import Instr

ROOT = Path(__file__).resolve().parents[2]

_ORDER = "ordering policy: which compute op a family's order takes first (not an op fact)"
_DERIVE = "cost derivation from measured times (B = I + W): a profile's relation, not a cost"
_STEP = "the step boundary (version counting, picture marks): STEP's own meaning"
_HANDLER = "the runtime's handler of that op (dispatch by the table's names)"
_WEIGHTS = "weight-copy accounting: what each weight op does to the copies held"

# (file, function) -> why; function "*": every function of the file.
ALLOWED: dict[tuple[str, str], str] = {
    ("schedc/order.py", "_interleaved_batch.item"): _ORDER,
    ("schedc/order.py", "_ready_key.ahead"): _ORDER,
    ("schedc/order.py", "_ready_key"): _ORDER,
    ("schedc/modulo.py", "*"): "the constructed order's chain (modulo_search.chain)",
    ("schedc/modulo_search.py", "*"): "the constructed order's chain (chain, from the table)",
    ("schedc/simulate/derive.py", "*"): _DERIVE,
    ("runtime/costs.py", "*"): _DERIVE,
    ("runtime/costs_split.py", "*"): "the profiler splits a measured B into I and W",
    ("schedc/simulate/metrics.py", "_peak_weights"): _WEIGHTS,
    ("schedc/simulate/metrics.py", "version_rows"): _STEP,
    ("schedc/simulate/report.py", "fmt_bytes"): "'B' is the byte unit here, not an op",
    ("schedc/report.py", "_cell"): _STEP,
    ("schedc/report.py", "grid"): _STEP,
    ("schedc/completeness.py", "Completeness._section"): _STEP,
    ("schedc/completeness.py", "Completeness._exact"): _STEP,
    ("schedc/viz/timeline.py", "_version_marks"): _STEP,
    ("runtime/programs.py", "span"): _STEP,
    ("runtime/faults.py", "check_skip_supported"): _STEP,
    ("runtime/launch.py", "_groups"): "the communicator groups an ALLREDUCE names",
    ("runtime/interpreter.py", "*"): _HANDLER,
}


def _op_literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ALL_OPS:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for e in node.elts for v in _op_literals(e)]
    return []


class _Comparisons(ast.NodeVisitor):
    """Records (file, enclosing function) of every comparison with an op name."""

    def __init__(self, rel: str, found: dict[tuple[str, str], list[int]]) -> None:
        self.rel, self.found, self.scope = rel, found, []

    def _scoped(self, node: ast.AST) -> None:
        self.scope.append(node.name)  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Compare(self, node: ast.Compare) -> None:
        if any(_op_literals(x) for x in (node.left, *node.comparators)):
            self.found.setdefault((self.rel, ".".join(self.scope)), []).append(node.lineno)
        self.generic_visit(node)


def _literal_comparisons() -> dict[tuple[str, str], list[int]]:
    """(file, enclosing function) -> lines comparing with an op name literal."""
    found: dict[tuple[str, str], list[int]] = {}
    for package in ("schedc", "runtime"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != "schedc/instructions.py":
                _Comparisons(rel, found).visit(ast.parse(path.read_text(), rel))
    return found


def test_no_op_fact_is_spelled_outside_the_table() -> None:
    found = _literal_comparisons()
    new = {f"{f}:{lines[0]} ({fn})" for (f, fn), lines in found.items()
           if (f, fn) not in ALLOWED and (f, "*") not in ALLOWED}
    assert not new, ("an op's name compared with a string literal outside "
                     f"schedc/instructions.py: {sorted(new)}; read the table instead")
    used = {(f, fn) for f, fn in found} | {(f, "*") for f, _ in found}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"allow-list entries no longer needed (remove them): {stale}"


def test_the_scan_sees_a_literal_comparison(tmp_path: Path) -> None:
    tree = ast.parse('def f(op):\n    return op.kind == "F" or op in ("SEND_ACT", "X")\n')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [_op_literals(c.comparators[0]) for c in compares] == [["F"], ["SEND_ACT"]]


def test_messages_around_a_compute_op_come_from_needs_and_hop() -> None:
    # The one rule lower.py and compute_only.py place messages by.
    assert AROUND["F"] == instructions.Around((("RECV_ACT", -1, "F"),), (("SEND_ACT", 1),), ())
    assert AROUND["B"] == instructions.Around((("RECV_GRAD", 1, "B"),), (("SEND_GRAD", -1),),
                                              ("ACC",))
    assert AROUND["I"] == instructions.Around((("RECV_GRAD", 1, "I"),), (("SEND_GRAD", -1),), ())
    assert AROUND["W"] == instructions.Around((), (), ("ACC",))
    assert instructions.STORES_ACTIVATION == ("F",)
    assert instructions.FREES_ACTIVATION == ("B", "I")
    assert instructions.VERSION_SOURCE == "F"
    assert [instructions.boundary(op, 3) for op in ("SEND_ACT", "RECV_ACT", "SEND_GRAD",
                                                    "RECV_GRAD")] == [3, 2, 2, 3]


def test_legend_labels_come_from_the_table() -> None:
    from schedc.viz import style

    assert style.KIND_NAMES["F"] == "forward" and style.KIND_NAMES["W"] == "backward (weights)"
    assert style.KIND_NAMES["SWAP"] == "SWAP"  # no label: the op's name
    assert set(style.KIND_NAMES) == set(ALL_OPS)


RECOMPUTE = OpInfo("RECOMPUTE", COMPUTE, ("stage", "mb", "pipeline", "version"),
                   "recompute the forward's activations before the backward", (), 1.0,
                   reads=("weights",), writes=("activation",), needs=(("F", 0),),
                   hue=(250, 50), label="recompute")


def test_a_new_row_is_known_to_docs_loader_costs_and_placement(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(TABLE, "RECOMPUTE", RECOMPUTE)
    assert "| `RECOMPUTE` | compute | stage, mb, pipeline, version | 1 |" in \
        instructions.docs_table()
    assert instructions.unit_cost("RECOMPUTE") == 1.0
    # It consumes no message and produces none: the placement puts nothing around it.
    assert instructions._around("RECOMPUTE") == instructions.Around((), (), ())
    # The loader validates its fields from the row.
    compiled = compile_spec(preset_spec("gpipe", stages=2, microbatches=2).validate())
    programs = list(compiled.programs)
    body = programs[0].body
    at = next(i for i, ins in enumerate(body) if ins.op == "B")
    programs[0] = replace(programs[0], body=(
        *body[:at], Instr("RECOMPUTE", stage=0, mb=body[at].mb, pipeline=0, version=0),
        *body[at:]))
    out = write_programs(tmp_path / "p", compiled.manifest, programs)
    _, loaded = load_programs(out, check_hashes=False)
    assert loaded[0].body[at].op == "RECOMPUTE"
    path = Path(out) / "rank0.json"
    data = json.loads(path.read_text())
    del data["body"][at]["mb"]
    path.write_text(json.dumps(data))
    with pytest.raises(ProgramFileError, match="field 'mb' is missing .RECOMPUTE needs"):
        load_programs(out, check_hashes=False)
