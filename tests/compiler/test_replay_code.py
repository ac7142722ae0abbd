"""The replay's encoding (schedc.replay_code): an entry moved in place
(RankCode.move, the receive placement's hoist) leaves the encoding from its
new place on as a fresh encoding of the moved stream gives it. (Before it,
a run the entry joins keeps its old end: the hoist moves a receive into the
batch its rank has posted, whose end the replay holds itself.)"""

from __future__ import annotations

import random

import pytest

from schedc.compiler import _lowered, choose_policy
from schedc.deadlock import _receives_in_send_order
from schedc.presets import preset_spec
from schedc.replay import Replay


@pytest.mark.parametrize("name,kw", [
    ("1f1b", {"stages": 4, "microbatches": 8}),
    ("interleaved-1f1b", {"stages": 8, "ranks": 4, "microbatches": 8}),
    ("zbv", {"stages": 8, "ranks": 4, "microbatches": 8}),
])
def test_a_moved_entry_leaves_a_fresh_encoding_from_its_place_on(name, kw):
    spec = preset_spec(name, **kw)
    streams = _lowered(spec, 1, choose_policy(spec), repair=False)
    _receives_in_send_order(streams)
    rng = random.Random(7)
    for _ in range(300):
        replay = Replay(streams)
        r = rng.randrange(len(streams))
        j = rng.randrange(1, len(streams[r]))
        start = rng.randrange(max(0, j - 12), j)
        streams[r].insert(start, streams[r].pop(j))
        replay.code[r].move(j, start)
        fresh = Replay(streams)
        assert replay.code[r].entries(replay.keys)[start:] == \
            fresh.code[r].entries(fresh.keys)[start:]
