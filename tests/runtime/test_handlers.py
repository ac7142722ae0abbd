"""Every op of the instruction table has a runtime handler: compute and weight
ops a method `Interpreter._op_<name>`, messages the batch the transport posts,
collectives the transport's reduction."""

from __future__ import annotations

from schedc.runtime.interpreter import Interpreter

from schedc.instructions import COLLECTIVE, MESSAGE, TABLE


def test_every_table_op_has_a_handler() -> None:
    by_method = [op for op, row in TABLE.items() if row.kind not in (MESSAGE, COLLECTIVE)]
    assert by_method == ["F", "B", "I", "W", "ACC", "STEP", "STASH", "RELEASE", "SWAP",
                         "LOOKAHEAD", "SPARSE_SYNC"]
    missing = [op for op in by_method if not callable(getattr(Interpreter, f"_op_{op}", None))]
    assert not missing, f"ops without a runtime handler: {missing}"
    assert callable(Interpreter._batch) and callable(Interpreter._execute)
