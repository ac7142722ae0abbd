"""The overlap rule (schedc/overlap.py) in the contract and the proof: the
manifest records it, the replay core executes it, the verifier proves it."""

from __future__ import annotations

import json

import pytest
from compiling import compiled
from overlap_programs import program_set, streams, write_set

from schedc.cli import main
from schedc.deadlock import check_deadlock_free
from schedc.errors import ProgramFileError, VerifyError
from schedc.files import load_programs, write_programs
from schedc.overlap import DEFAULT, Overlap
from schedc.replay import Observer, Replay, stream_locate
from schedc.verify import prove_overlap, verify

# Every preset at a small size (interleaved on 2 ranks).
SMALL = {"gpipe": (2, 4, None), "1f1b": (3, 6, None), "interleaved-1f1b": (4, 4, 2),
         "zb-h1": (3, 6, None), "zbv": (4, 4, None), "chimera": (4, 4, None),
         "pipedream": (3, 3, None), "pipedream-2bw": (3, 6, None), "paci": (3, 6, None),
         "amdp": (4, 8, None)}


def test_rule_values_and_manifest_field():
    assert Overlap.posting(1) == DEFAULT and DEFAULT.to_dict() == {}
    assert Overlap.posting(3) == Overlap(3, True)
    assert Overlap.from_dict({"posted_batches": 2, "early_receives": True}) == Overlap(2, True)
    assert Overlap.from_dict(None) == DEFAULT
    for bad, says in (({"posted_batches": 0}, "at least 1"), ({"posted_batches": True}, "integer"),
                      ({"posted_batches": 1, "early_receives": True}, "at least 2"),
                      ({"k": 2}, "'k' is unknown")):
        with pytest.raises(ValueError, match=says):
            Overlap.from_dict(bad)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_preset_verifies_under_two_and_three_posted_batches(name):
    c = compiled(name, *SMALL[name])
    for k in (2, 3):
        proven = prove_overlap(c.manifest, c.programs, Overlap.posting(k))
        assert proven.overlap == {"posted_batches": k, "early_receives": True}
        assert proven.to_dict()["overlap"] == proven.overlap
    assert "overlap" not in c.manifest.to_dict()  # K = 1: older manifests, same bytes


def test_a_set_that_deadlocks_under_one_posted_batch_is_proven_under_two():
    for rule in (DEFAULT, Overlap(2, False), Overlap.posting(2), Overlap.posting(3)):
        manifest, programs = program_set(rule)
        if rule == DEFAULT:
            with pytest.raises(VerifyError) as exc:
                verify(manifest, programs)
            assert str(exc.value.render()).count("deadlock") == 1
            assert "rank 0 at body 3 (SEND_ACT s0 mb1 ->1)" in exc.value.render()
            assert "rank 1 at body 3 (SEND_GRAD s1 mb0 ->0)" in exc.value.render()
        else:
            verify(manifest, programs)


class _Events(Observer):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def posted(self, r, lo, hi):
        self.events.append(("post", r, lo, hi))

    def posted_early(self, r, lo, hi):
        self.events.append(("ahead", r, lo, hi))

    def finished(self, r, lo, hi):
        self.events.append(("done", r, lo, hi))

    def sends_waited(self, r, lo, hi):
        self.events.append(("sent", r, lo, hi))


def test_the_replay_keeps_k_batches_posted_and_receives_one_ahead():
    """Rank 0 of the hand-written set under K = 2: a batch's sends are waited
    for when a second batch holding sends is done, the next batch's receives
    are posted as soon as one is done, all sends at the end."""
    obs = _Events()
    Replay(streams(), obs, rule=Overlap.posting(2)).run()
    rank0 = [e for e in obs.events if e[1] == 0]
    assert rank0 == [
        ("post", 0, 1, 2), ("done", 0, 1, 2),  # [SEND mb0]
        ("post", 0, 3, 4), ("sent", 0, 1, 2), ("done", 0, 3, 4),  # [SEND mb1]
        ("ahead", 0, 5, 7), ("post", 0, 5, 7), ("sent", 0, 3, 4), ("done", 0, 5, 7),
        ("ahead", 0, 9, 10), ("post", 0, 9, 10), ("done", 0, 9, 10),
        ("ahead", 0, 12, 13), ("post", 0, 12, 13), ("done", 0, 12, 13),
        ("sent", 0, 5, 7),  # the end of the stream: every send completed
    ]


def test_a_send_never_received_is_named_at_the_end_of_the_stream():
    r0, r1 = streams()
    with pytest.raises(VerifyError) as exc:  # rank 1 never takes the last activation
        check_deadlock_free([r0, [i for i in r1 if not (i.op == "RECV_ACT" and i.mb == 2)]],
                            stream_locate, Overlap.posting(2))
    assert "SEND_ACT s0 mb2 ->1): no matching RECV on rank 1" in exc.value.render()


def test_manifest_records_the_rule_and_check_proves_it(tmp_path, capsys):
    d = write_set(tmp_path / "k2", Overlap.posting(2))
    assert json.loads((d / "manifest.json").read_text())["overlap"] == {
        "posted_batches": 2, "early_receives": True}
    assert main(["check", str(d)]) == 0
    assert "deadlock-free under posted batches 2" in capsys.readouterr().out
    manifest, programs = load_programs(d)
    assert Overlap.from_dict(manifest.overlap) == Overlap.posting(2)
    write_programs(tmp_path / "k1", *program_set(DEFAULT))
    assert main(["check", str(tmp_path / "k1")]) == 2
    assert "deadlock" in capsys.readouterr().err


def test_a_bad_overlap_field_names_the_file_and_field(tmp_path):
    d = write_set(tmp_path / "p", Overlap.posting(2))
    data = json.loads((d / "manifest.json").read_text())
    data["overlap"] = {"posted_batches": 0}
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ProgramFileError, match="manifest.json.*field 'overlap': posted_batches"):
        load_programs(d, check_hashes=False)


def test_compile_posted_batches_proves_and_records(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["compile", "--preset", "1f1b", "--stages", "2", "--microbatches", "4",
                 "--posted-batches", "2", "-o", str(out)]) == 0
    assert "deadlock-free under posted batches 2 (sends complete in the background, " \
           "receives posted one batch ahead)" in capsys.readouterr().out
    manifest, _ = load_programs(out)
    assert manifest.overlap == {"posted_batches": 2, "early_receives": True}
    assert main(["compile", "--preset", "1f1b", "--posted-batches", "0", "-o", str(out)]) == 2
