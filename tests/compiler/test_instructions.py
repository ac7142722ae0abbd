"""The instruction table is the one description of every op: the docs table,
the loader, the verifier and the replay core agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schedc.errors import VerifyError
from schedc.instructions import (
    ALL_OPS,
    COMM_OPS,
    TABLE,
    UNIT_COSTS,
    counterpart,
    docs_table,
    message_key,
)
from schedc.program import Instr
from schedc.replay import Replay, ReplayDeadlock, ReplayMismatch

DOCS = Path(__file__).resolve().parents[2] / "docs" / "programs.md"


def _docs_rows() -> dict[str, str]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"\| `([A-Z_]+)` \| ([^|]+) \|", line)
        if m and m[1] in line.split("|")[1]:
            rows[m[1]] = m[2].strip()
    return rows


def test_docs_table_lists_every_op_with_its_fields() -> None:
    rows = _docs_rows()
    assert sorted(rows) == sorted(ALL_OPS)
    for op, fields in rows.items():
        row = TABLE[op]
        assert fields == ", ".join(row.required) + "".join(f", [{f}]" for f in row.optional)


def test_unit_costs_and_message_channels() -> None:
    assert UNIT_COSTS == {"F": 1.0, "B": 2.0, "I": 1.0, "W": 1.0}
    assert counterpart("SEND_ACT") == "RECV_ACT" and counterpart("RECV_GRAD") == "SEND_GRAD"
    # SEND_ACT of stage 1 carries what RECV_ACT of stage 2 expects; gradients go back.
    assert message_key("SEND_ACT", 1, 3, 0) == message_key("RECV_ACT", 2, 3, 0)
    assert message_key("SEND_GRAD", 2, 3, 1) == message_key("RECV_GRAD", 1, 3, 1)
    assert set(COMM_OPS) == {"SEND_ACT", "RECV_ACT", "SEND_GRAD", "RECV_GRAD"}
    assert "| `F` | compute |" in docs_table()


def _msg(op: str, stage: int, peer: int, pipeline: int = 0, mb: int = 0) -> Instr:
    return Instr(op, stage=stage, mb=mb, pipeline=pipeline, peer=peer)


def test_replay_matches_per_pipeline_channel() -> None:
    # Rank 0 sends pipeline 1's message first; rank 1 receives pipeline 0's first.
    # Per (sender, receiver, pipeline) channel they still meet.
    streams = [[_msg("SEND_ACT", 0, 1, pipeline=1), Instr("F", 0, 0, 0, 0),
                _msg("SEND_ACT", 0, 1, pipeline=0)],
               [_msg("RECV_ACT", 1, 0, pipeline=0), _msg("RECV_ACT", 1, 0, pipeline=1)]]
    Replay(streams).run()


def test_replay_names_a_mismatch_and_a_deadlock() -> None:
    streams = [[_msg("SEND_ACT", 0, 1, mb=1)], [_msg("RECV_ACT", 1, 0, mb=0)]]
    with pytest.raises(ReplayMismatch, match="SEND_ACT s0 mb1 ->1 meets RECV_ACT s1 mb0 <-0"):
        Replay(streams).run()
    streams = [[_msg("RECV_GRAD", 0, 1)], [_msg("RECV_ACT", 1, 0)]]
    with pytest.raises(ReplayDeadlock) as info:
        Replay(streams).run()
    assert [b.waiting_for for b in info.value.blocked] == [
        "no matching SEND from rank 1", "no matching SEND from rank 0"]


def test_unknown_op_is_a_verify_error_naming_rank_and_instruction() -> None:
    with pytest.raises(VerifyError) as info:
        Replay([[Instr("F", 0, 0, 0, 0), Instr("RECOMPUTE", 0, 0, 0)]]).run()
    assert (info.value.rank, info.value.index) == (0, 1)
    assert "RECOMPUTE" in info.value.reason
