"""The in-process transport matches messages as the distributed one does: per
(sender, receiver, pipeline) channel, in order, not by content."""

from __future__ import annotations

import pytest
import torch
from schedc.runtime.inprocess import Hub, LocalTransport

from schedc.program import Instr, Manifest, Period


def _hub() -> Hub:
    return Hub(Manifest(spec={}, spec_hash="", world_size=2, num_stages=2, num_pipelines=2,
                        stage_to_rank=((0, 1), (1, 0)), period=Period(2, 1),
                        synchronous=True))


def _msg(op: str, stage: int, mb: int, pipeline: int, peer: int) -> Instr:
    return Instr(op, stage=stage, mb=mb, pipeline=pipeline, peer=peer)


def test_messages_of_one_channel_arrive_in_send_order() -> None:
    hub = _hub()
    a, b = LocalTransport(hub, 0), LocalTransport(hub, 1)
    t0, t1 = torch.zeros(1), torch.ones(1)
    a.post([_msg("SEND_ACT", 0, 0, 0, 1), _msg("SEND_ACT", 0, 2, 0, 1)], [t0, t1])
    got = b.wait(b.post([_msg("RECV_ACT", 1, 0, 0, 0), _msg("RECV_ACT", 1, 2, 0, 0)],
                        [None, None]))
    assert got is not None and got[0] is t0 and got[1] is t1


def test_pipelines_are_separate_channels() -> None:
    hub = _hub()
    a, b = LocalTransport(hub, 0), LocalTransport(hub, 1)
    t = torch.ones(1)
    a.post([_msg("SEND_ACT", 0, 1, 1, 1)], [t])  # pipeline 1's message only
    handle = b.post([_msg("RECV_ACT", 1, 0, 0, 0)], [None])
    assert b.wait(handle) is None  # pipeline 0's receive does not take it


def test_a_receive_meeting_another_message_is_an_error() -> None:
    hub = _hub()
    a, b = LocalTransport(hub, 0), LocalTransport(hub, 1)
    a.post([_msg("SEND_ACT", 0, 2, 0, 1)], [torch.ones(1)])
    with pytest.raises(RuntimeError, match="meets a message"):
        b.wait(b.post([_msg("RECV_ACT", 1, 0, 0, 0)], [None]))


def test_receives_posted_ahead_take_their_message_on_arrival() -> None:
    """Early receives (docs/programs.md, "Overlap"): `prepost` posts the coming
    batch's receives, which take a message as soon as it is on the channel;
    `post` of that batch adds its sends and hands back the same receives."""
    hub = _hub()
    a, b = LocalTransport(hub, 0), LocalTransport(hub, 1)
    batch = [_msg("RECV_ACT", 1, 0, 0, 0), _msg("SEND_GRAD", 1, 2, 0, 0)]
    b.prepost(batch)
    t = torch.ones(1)
    a.post([_msg("SEND_ACT", 0, 0, 0, 1)], [t])
    assert hub.channels[(0, 1, 0)]  # not taken until b waits or posts ahead again
    got = b.wait(b.post(batch, [None, torch.zeros(1)]))
    assert got is not None and got[0] is t and got[1] is None
    assert len(hub.channels[(1, 0, 0)]) == 1  # the gradient was sent
    a.post([_msg("SEND_ACT", 0, 2, 0, 1)], [t])
    b.prepost([_msg("RECV_ACT", 1, 2, 0, 0)])  # already there: taken at once
    assert not hub.channels[(0, 1, 0)]
    with pytest.raises(RuntimeError, match="posted ahead for another batch"):
        b.post([_msg("RECV_ACT", 1, 4, 0, 0)], [None])
