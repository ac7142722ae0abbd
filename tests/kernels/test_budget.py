"""The byte budgets match the issue's figures."""

import torch
from schedc.kernels import budget


def test_accumulate_budget():
    assert budget.accumulate_bytes(torch.bfloat16) == 10
    assert budget.accumulate_bytes(torch.float16) == 10
    assert budget.accumulate_bytes(torch.float32) == 12
    assert budget.accumulate_bytes(torch.bfloat16, zero_source=True) == 12


def test_optimizer_budget():
    assert budget.adamw_bytes() == 28
    assert budget.adamw_bytes(stash=torch.float32) == 32
    assert budget.adamw_bytes(stash=torch.float32, lookahead=torch.float32) == 36
    assert budget.adamw_bytes(error_feedback=True) == 36
    assert budget.adamw_bytes(stash=torch.bfloat16) == 30
    assert budget.sgd_bytes(momentum=False) == 12
    assert budget.sgd_bytes() == 20
    assert budget.sgd_bytes(stash=4, lookahead=4, error_feedback=True) == 36


def test_version_budget():
    assert budget.copy_bytes(torch.float32, torch.float32) == 8
    assert budget.copy_bytes(torch.bfloat16, torch.bfloat16) == 4
    assert budget.copy_bytes(torch.bfloat16, torch.float32) == 6
    assert budget.swap_bytes(torch.float32) == 16
    assert budget.REPOINT_BYTES == 0


def test_table_is_consistent():
    assert budget.TABLE["adamw + stash"] == 32
    assert budget.TABLE["accumulate fp32 += s*bf16"] == 10
    assert all(isinstance(v, int) and v >= 0 for v in budget.TABLE.values())
