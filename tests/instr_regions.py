"""A torch profiler region around every instruction the interpreter executes,
for tests that count the work (launches, matrix products) each op does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from schedc.runtime.interpreter import Interpreter


def label_instructions(monkeypatch: pytest.MonkeyPatch, label: Callable[[object], str]) -> None:
    """Run each instruction inside `record_function(label(instr))`."""
    original = Interpreter._execute

    def execute(self, instr, nxt):
        with torch.profiler.record_function(label(instr)):
            return original(self, instr, nxt)

    monkeypatch.setattr(Interpreter, "_execute", execute)
