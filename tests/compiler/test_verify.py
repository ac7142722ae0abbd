"""The verifier rejects broken programs and names rank, section and index."""

from __future__ import annotations

from dataclasses import replace

import pytest
from compiling import compiled
from mutate import names_send, rejection, sending_site, with_body

import schedc.verify as verify_module
from schedc.errors import VerifyError
from schedc.program import Instr
from schedc.unroll import Unrolled
from schedc.verify import _check_non_negative, verify
from schedc.version_table import VersionTable

CASES = [("1f1b", 4, 4), ("zb-h1", 4, 4), ("chimera", 4, 4), ("paci", 4, 2),
         ("pipedream", 3, 1), ("pipedream-2bw", 3, 3), ("amdp", 4, 4)]
IDS = [f"{n}-p{p}-m{m}" for n, p, m in CASES]


@pytest.mark.parametrize("name,p,m", CASES, ids=IDS)
def test_drop_each_first_receive(name, p, m):
    c = compiled(name, p, m)
    for r, prog in enumerate(c.programs):
        body = list(prog.body)
        i = next((k for k, x in enumerate(body) if x.op.startswith("RECV")), None)
        if i is None:
            continue
        err = rejection(c, with_body(c, r, body[:i] + body[i + 1:]))
        assert names_send(err, sending_site(c, r, body[i])), (r, i, err.render())


SWAP_CASES = [c if c[0] != "pipedream" else ("pipedream", 3, 2) for c in CASES]


@pytest.mark.parametrize("name,p,m", SWAP_CASES, ids=[f"{n}-p{p}-m{m}" for n, p, m in SWAP_CASES])
def test_swap_two_sends_on_one_channel(name, p, m):
    c = compiled(name, p, m)
    tried = 0
    for r, prog in enumerate(c.programs):
        body = list(prog.body)
        sends = [k for k, x in enumerate(body) if x.op == "SEND_ACT"]
        pair = next(((a, b) for a in sends for b in sends if a < b
                     and (body[a].peer, body[a].pipeline) == (body[b].peer, body[b].pipeline)),
                    None)
        if pair is None:
            continue
        a, b = pair
        body[a], body[b] = body[b], body[a]
        err = rejection(c, with_body(c, r, body))
        assert (err.rank, err.section, err.index) == (r, "body", a), err.render()
        assert "mismatch" in err.reason
        tried += 1
    assert tried


@pytest.mark.parametrize("name,p,m", CASES, ids=IDS)
def test_backward_moved_before_its_forward(name, p, m):
    c = compiled(name, p, m)
    grad = "I" if c.spec.split_backward else "B"
    tried = 0
    for r, prog in enumerate(c.programs):
        body = list(prog.body)
        for k, x in enumerate(body):
            f = next((j for j, y in enumerate(body[:k]) if y.op == "F"
                      and (y.stage, y.mb, y.pipeline) == (x.stage, x.mb, x.pipeline)), None)
            if x.op == grad and f is not None:
                body.insert(f, body.pop(k))
                err = rejection(c, with_body(c, r, body))
                assert (err.rank, err.section, err.index) == (r, "body", f), err.render()
                tried += 1
                break
    assert tried


@pytest.mark.parametrize("name,p,m", CASES, ids=IDS)
@pytest.mark.parametrize("delta", [1, -1])
def test_changed_version_field(name, p, m, delta):
    c = compiled(name, p, m)
    for r, prog in enumerate(c.programs):
        body = list(prog.body)
        k = next((k for k, x in enumerate(body) if x.op in ("F", "B", "I", "W")
                  and x.version + delta >= 0), None)
        if k is None:
            continue  # every op here reads version 0
        body[k] = replace(body[k], version=body[k].version + delta)
        err = rejection(c, with_body(c, r, body))
        assert (err.rank, err.section, err.index) == (r, "body", k), err.render()
        assert f"reads version {body[k].version}" in err.reason


def test_step_count_and_foreign_stage_are_rejected():
    c = compiled("1f1b", 2, 2)
    body = list(c.programs[0].body)
    body[-1] = replace(body[-1], count=3)
    err = rejection(c, with_body(c, 0, body))
    assert (err.rank, err.index) == (0, len(body) - 1) and "averages 3" in err.reason
    body = list(c.programs[0].body) + [Instr("F", stage=1, mb=0, pipeline=0, version=0)]
    err = rejection(c, with_body(c, 0, body))
    assert (err.rank, err.index) == (0, len(body) - 1) and "not on rank 0" in err.reason
    with pytest.raises(VerifyError, match="2 rank programs for world size 3"):
        verify(replace(c.manifest, world_size=3), c.programs)


@pytest.mark.parametrize("name,p,m", [("1f1b", 2, 4), ("amdp", 4, 8)])
def test_step_before_a_gradient_names_the_missing_micro_batch(name, p, m):
    """An ACC dropped from a body: the stage's next ALLREDUCE or STEP names the
    first micro-batch of its pipeline whose gradient is missing."""
    c = compiled(name, p, m)
    body = list(c.programs[0].body)
    k = next(i for i, ins in enumerate(body) if ins.op == "ACC")
    dropped = body.pop(k)
    err = rejection(c, with_body(c, 0, body))
    assert err.rank == 0 and body[err.index].op in ("ALLREDUCE", "STEP"), err.render()
    assert err.reason.endswith(f"before the gradient of micro-batch {dropped.mb} was added")


# ---- bounds ---------------------------------------------------------------------------
def _tightened(c, **bounds):
    return replace(c.manifest, spec={**c.manifest.spec, **bounds})


BOUND_CASES = [("paci", 4, 1), ("paci", 8, 2), ("pipedream", 4, 1), ("pipedream-2bw", 4, 4),
               ("amdp", 4, 4), ("amdp", 8, 8), ("1f1b", 4, 6), ("gpipe", 3, 5)]
BIDS = [f"{n}-p{p}-m{m}" for n, p, m in BOUND_CASES]


@pytest.mark.parametrize("name,p,m", BOUND_CASES, ids=BIDS)
def test_tighter_bounds_name_an_offending_rank(name, p, m):
    c = compiled(name, p, m)
    a = c.manifest.analysis
    verify(c.manifest, c.programs)
    rows = [(k, row) for k, stage_rows in enumerate(a["stages"]) for row in stage_rows]
    checks = 0
    worst = max(row["max_inconsistency"] for _, row in rows)
    if worst >= 1:
        err = rejection_of(c, max_inconsistency=worst - 1)
        assert "max_inconsistency" in err.reason
        assert err.rank in {row["rank"] for _, row in rows if row["max_inconsistency"] == worst}
        checks += 1
    worst = max(row["max_delay"] for _, row in rows)
    if worst >= 1:
        err = rejection_of(c, max_delay=worst - 1)
        assert "max_delay" in err.reason and err.rank is not None
        checks += 1
    inflight0 = max(row["max_inflight"] for k, row in rows if row["stage"] == 0)
    if inflight0 >= 2:
        err = rejection_of(c, max_inflight=[[0, inflight0 - 1]])
        assert "max_inflight" in err.reason
        assert err.rank in {m[0] for m in c.manifest.stage_to_rank}
        checks += 1
    peaks = [r["peak_activations"] for r in a["ranks"]]
    err = rejection_of(c, max_activations=max(peaks) - 1) if max(peaks) >= 2 else None
    if err is not None:
        assert "max_activations" in err.reason and peaks[err.rank] == max(peaks)
        checks += 1
    assert checks >= 1


def rejection_of(c, **bounds) -> VerifyError:
    with pytest.raises(VerifyError) as e:
        verify(_tightened(c, **bounds), c.programs)
    assert e.value.rank is not None and e.value.index is not None
    return e.value


def test_versions_bound_names_the_stash():
    c = compiled("pipedream", 4, 1)
    err = rejection_of(c, versions=3)
    assert "versions 3 exceeded: stage 0" in err.reason and err.rank == 0


# ---- fields ---------------------------------------------------------------------------
FIELD_MUTATIONS = [
    (lambda i: replace(i, op="FOO"), "unknown op 'FOO'"),
    (lambda i: replace(i, version=None), "F needs field 'version'"),
    (lambda i: replace(i, mb=None), "F needs field 'mb'"),
    (lambda i: replace(i, peer=1), "F does not take field 'peer'"),
    (lambda i: replace(i, count=2), "F does not take field 'count'"),
    (lambda i: replace(i, pipeline=1), "pipeline 1 out of range"),
    (lambda i: replace(i, stage=9), "stage 9 out of range"),
    (lambda i: replace(i, stage=2), "stage 2 of pipeline 0 is not on rank 1"),
    (lambda i: replace(i, mb=-3), "negative micro-batch"),
    (lambda i: replace(i, mb=10**20), "micro-batch 100000000000000000000, more than the "
     "programs' 3080 instructions can run"),
    (lambda i: Instr("STEP", stage=1, mb=4, pipeline=0, version=1, count=8),
     "STEP does not take field 'mb'"),
]


def test_a_period_longer_than_the_programs_is_refused():
    """Shifting by such a period would make the runs' micro-batches (the
    replay's keys, the completeness bit sets) far larger than the programs."""
    c = compiled("paci", 4, 64)
    manifest = replace(c.manifest, period=replace(c.manifest.period, microbatches=10**20))
    with pytest.raises(VerifyError, match="a period of 100000000000000000000 micro-batches, "
                       "more than the programs' 3080 instructions can run"):
        verify(manifest, c.programs)


@pytest.mark.parametrize("mutation,reason", FIELD_MUTATIONS,
                         ids=[r for _, r in FIELD_MUTATIONS])
@pytest.mark.parametrize("section", ["prologue", "body", "epilogue"])
def test_a_field_error_names_the_first_unsound_instruction(mutation, reason, section):
    """Fields are checked once per shape of instruction: a broken one among
    many sound ones of its shape is still named by section and index, and the
    first of two broken ones is named."""
    c = compiled("paci", 4, 64)
    prog = c.programs[1]
    seq = list(getattr(prog, section))
    forwards = [k for k, ins in enumerate(seq) if ins.op == "F"]
    first, second = forwards[-2:]
    seq[second] = mutation(seq[second])
    seq[first] = mutation(seq[first])
    programs = list(c.programs)
    programs[1] = replace(prog, **{section: tuple(seq)})
    with pytest.raises(VerifyError) as e:
        verify(c.manifest, programs)
    err = e.value
    assert (err.rank, err.section, err.index, err.reason) == (1, section, first, reason)


def test_a_negative_difference_names_the_least_key():
    """_check_non_negative reads the table's differences in bulk: the least
    key (the table's key order) with a negative inconsistency is named, then,
    only if there is none, the least with a negative delay."""
    c = compiled("paci", 4, 8)
    un = Unrolled.of(c.programs, c.manifest.period, 1)
    t = VersionTable()
    for key, (f, b, a), where in [((0, 2, 9), (3, 3, 2), (2, 5)), ((0, 1, 4), (2, 1, 2), (1, 3)),
                                  ((0, 0, 1), (2, 0, 2), (0, 2))]:
        t.record(key, forward=f, backward=b, applied=a, where=where)
    with pytest.raises(VerifyError) as e:
        _check_non_negative(un, t)
    assert (e.value.rank, e.value.reason) == (
        0, "negative inconsistency -2 for micro-batch 1 at stage 0 (pipeline 0)")
    assert e.value.instr == un.streams[0][2].label()
    t.differences("backward")  # made before the change below: recording forgets them
    t.record((0, 1, 4), backward=2)
    t.record((0, 0, 1), backward=3)
    with pytest.raises(VerifyError) as e:
        _check_non_negative(un, t)
    assert (e.value.rank, e.value.reason) == (
        2, "negative delay -1 for micro-batch 9 at stage 2 (pipeline 0)")


def test_a_forward_before_its_activation_arrived_names_the_receive():
    c = compiled("1f1b", 2, 2)
    body = list(c.programs[1].body)
    recv = next(k for k, x in enumerate(body) if x.op == "RECV_ACT")
    fwd = next(k for k, x in enumerate(body) if x.op == "F" and x.mb == body[recv].mb)
    body.insert(fwd, body.pop(recv))  # the receive now follows its forward
    err = rejection(c, with_body(c, 1, body))
    assert (err.rank, err.section, err.index) == (1, "body", fwd - 1), err.render()
    assert "runs before its RECV_ACT from rank 0 arrived" in err.reason


def test_a_message_never_used_is_named():
    from schedc.unroll import Unrolled
    from schedc.versions import VersionCheck

    c = compiled("1f1b", 2, 2)
    extra = Instr("RECV_ACT", stage=1, mb=5, pipeline=0, peer=0)
    progs = with_body(c, 1, [extra, *c.programs[1].body])  # no forward of mb 5 reads it
    un = Unrolled.of(progs, c.manifest.period, 1)
    with pytest.raises(VerifyError, match="RECV_ACT for stage 1 micro-batch 5 .pipeline 0. "
                       "is received but never used"):
        VersionCheck(c.manifest, 2).check(un, final=True)


def test_a_run_whose_bounds_only_the_next_run_proved_fails_first(monkeypatch):
    """Run 2's epilogue is not checked for versions where run 3's lines stand
    alike (VersionCheck.check); should a later run fail, run 2's bounds are
    checked on its own table first, and its error, if any, is the one raised."""
    c = compiled("paci", 4, 8)
    checked = []

    def bounds(spec, manifest, un, table):
        checked.append(un.repeats)
        if un.repeats >= 2:
            raise VerifyError(f"bound of run {un.repeats}")

    monkeypatch.setattr(verify_module, "check_bounds", bounds)
    with pytest.raises(VerifyError, match="bound of run 2") as e:
        verify(c.manifest, c.programs)
    assert e.value.repeats == 2
    assert checked == [1, 3, 2]  # run 2's bounds, skipped, are checked once run 3 fails
