"""Property tests: every valid Spec compiles to programs the verifier accepts,
tightened bounds are refused, and mutated programs are rejected at the right place."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mutate import names_send, rejection, sending_site, with_body
from tiers import NIGHTLY

from schedc.compiler import compile_spec
from schedc.errors import UserError, VerifyError
from schedc.order import OrderError
from schedc.spec import ORDERS, Spec, SpecError
from schedc.verify import verify

# CI runs a fixed, modest budget; the nightly tier (SCHEDC_NIGHTLY=1) raises it to
# 300; SCHEDC_HYPOTHESIS_EXAMPLES sets it.
EXAMPLES = int(os.environ.get("SCHEDC_HYPOTHESIS_EXAMPLES", "300" if NIGHTLY else "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
BOUND_NAMES = ("max_inflight", "max_inconsistency", "max_delay", "max_activations", "versions")


@st.composite
def specs(draw, bounds: bool = True) -> Spec:
    stages = draw(st.integers(1, 6))
    ranks = draw(st.sampled_from([d for d in range(1, stages + 1) if stages % d == 0]))
    perm = st.permutations(list(range(ranks))).map(tuple)
    directions = draw(st.one_of(
        st.just(("down",)), st.just(("up",)), st.just(("down", "up")), st.just("auto"),
        st.lists(perm, min_size=1, max_size=2).map(tuple)))
    flush = draw(st.booleans())
    fields = {
        "stages": stages, "ranks": ranks, "directions": directions, "flush": flush,
        "microbatches": draw(st.integers(1, 8)),
        # interleaved is exercised by the regression cases below (EDGE_CASES)
        "order": draw(st.sampled_from([o for o in ORDERS if o != "interleaved"])),
        "split_backward": draw(st.booleans()),
        "versions": draw(st.sampled_from([1, 1, 2, "auto"])),
    }
    if not flush:
        fields["fixed_delay"] = draw(st.sampled_from([None, None, 1]))
    if fields["split_backward"]:
        fields["max_deferred_w"] = draw(st.sampled_from([None, 0, 1, 3]))
    if bounds:
        fields["max_inflight"] = draw(st.sampled_from([(), ((0, 1),), ((0, 2),)]))
        fields["max_inconsistency"] = draw(st.sampled_from([None, None, 0, 1, 2]))
        fields["max_delay"] = draw(st.sampled_from([None, None, 1, 3]))
        fields["max_activations"] = draw(st.sampled_from([None, None, 2, 8]))
    spec = Spec(**fields)
    try:
        spec.validate()
    except SpecError:
        assume(False)
    return spec


def compile_or_bound_error(spec: Spec):
    """Compile; a refusal is only acceptable when it names a bound the Spec declares."""
    try:
        return compile_spec(spec)
    except OrderError as exc:
        assert "bound" in str(exc), exc
    except VerifyError as exc:
        declared = [n for n in BOUND_NAMES
                    if (n != "versions" and getattr(spec, n) not in (None, ()))
                    or (n == "versions" and spec.versions != "auto")]
        assert any(exc.reason.startswith(f"{n} ") for n in declared), (spec, exc.render())
    except UserError as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(f"{spec}: {exc}") from exc
    assume(False)


@SETTINGS
@given(specs(bounds=False))
def test_unbounded_specs_compile_and_verify(spec):
    c = compile_or_bound_error(spec)
    verify(c.manifest, c.programs)


@SETTINGS
@given(specs())
def test_bounded_specs_compile_or_name_their_bound(spec):
    c = compile_or_bound_error(spec)
    verify(c.manifest, c.programs)


@SETTINGS
@given(specs(bounds=False), st.data())
def test_tightened_bounds_are_refused(spec, data):
    c = compile_or_bound_error(spec)
    a = c.manifest.analysis
    rows = [row for stage_rows in a["stages"] for row in stage_rows]
    options = []
    if a["max_inconsistency"] >= 1:
        options.append({"max_inconsistency": a["max_inconsistency"] - 1})
    if a["max_delay"] >= 1:
        options.append({"max_delay": a["max_delay"] - 1})
    worst0 = max(r["max_inflight"] for r in rows if r["stage"] == 0)
    if worst0 >= 2:
        options.append({"max_inflight": [[0, worst0 - 1]]})
    peak = max(r["peak_activations"] for r in a["ranks"])
    if peak >= 2:
        options.append({"max_activations": peak - 1})
    assume(options)
    bound = data.draw(st.sampled_from(options))
    manifest = replace(c.manifest, spec={**c.manifest.spec, **bound})
    try:
        verify(manifest, c.programs)
    except VerifyError as exc:
        assert exc.reason.startswith(next(iter(bound))), exc.render()
        assert exc.rank is not None and exc.index is not None
    else:
        raise AssertionError(f"bound {bound} below the achieved figure was accepted")


MUTATIONS = ("drop_receive", "swap_sends", "backward_first", "version")


@SETTINGS
@given(specs(bounds=False), st.sampled_from(MUTATIONS), st.data())
def test_mutations_are_rejected_at_the_right_place(spec, kind, data):
    c = compile_or_bound_error(spec)
    grad = "I" if spec.split_backward else "B"
    sites = []
    for r, prog in enumerate(c.programs):
        body = list(prog.body)
        for k, x in enumerate(body):
            if kind == "drop_receive" and x.op.startswith("RECV"):
                sites.append((r, k, None))
            elif kind == "version" and x.op in ("F", "B", "I", "W"):
                sites.append((r, k, None))
            elif kind == "swap_sends" and x.op.startswith("SEND"):
                for j in range(k + 1, len(body)):
                    y = body[j]
                    if (y.op, y.peer, y.pipeline) == (x.op, x.peer, x.pipeline):
                        sites.append((r, k, j))
                        break
            elif kind == "backward_first" and x.op == grad:
                f = next((j for j, y in enumerate(body[:k]) if y.op == "F"
                          and (y.stage, y.mb, y.pipeline) == (x.stage, x.mb, x.pipeline)), None)
                if f is not None:
                    sites.append((r, k, f))
    assume(sites)
    r, k, j = data.draw(st.sampled_from(sites))
    body = list(c.programs[r].body)
    if kind == "drop_receive":
        site = sending_site(c, r, body[k])
        err = rejection(c, with_body(c, r, body[:k] + body[k + 1:]))
        assert names_send(err, site), err.render()
        return
    if kind == "swap_sends":
        body[k], body[j] = body[j], body[k]
        at = k
    elif kind == "backward_first":
        body.insert(j, body.pop(k))
        at = j
    else:
        body[k] = replace(body[k], version=body[k].version + 1)
        at = k
    err = rejection(c, with_body(c, r, body))
    assert (err.rank, err.section, err.index) == (r, "body", at), err.render()


# ---- Specs that once broke the compiler (found by the properties above) ---------
# Each now compiles and verifies, or is refused by Spec validation with a reason.
EDGE_CASES = {
    "interleaved-up": (
        {"stages": 4, "ranks": 2, "directions": ("up",), "microbatches": 2,
         "order": "interleaved"},
        "order.interleaved_order ignores the stage->rank map: 'stage 0 of pipeline 0 is not "
        "on rank 0'"),
    "interleaved-split": (
        {"stages": 2, "ranks": 1, "microbatches": 1, "order": "interleaved",
         "split_backward": True},
        "order.interleaved_order emits B with split_backward: 'B in a schedule whose "
        "backward is split into I and W'"),
    "interleaved-m-not-multiple": (
        {"stages": 4, "ranks": 2, "microbatches": 1, "order": "interleaved"},
        "interleaved with m < p: 'send/receive mismatch: SEND_ACT s1 mb0 ->0 meets "
        "RECV_GRAD s2 mb0 <-1 on rank 0'"),
    "interleaved-async": (
        {"stages": 4, "ranks": 2, "microbatches": 3, "order": "interleaved", "flush": False},
        "interleaved_order orders one batch only: 'the order contradicts the dependencies: "
        "cycle STEP s0 b0 -> B s2 mb2 -> B s1 mb2 -> B s0 mb2'"),
    "interleaved-async-versions": (
        {"stages": 4, "ranks": 2, "microbatches": 1, "order": "interleaved", "flush": False,
         "versions": 2},
        "lower.plan_versions raises KeyError Op(kind='F', pipeline=0, stage=2, mb=0)"),
    "one-stage-async": (
        {"stages": 1, "microbatches": 1, "order": "fill-drain", "flush": False},
        "periodic split: 'the body does not repeat: with 2 repetitions the program differs "
        "from the schedule at instruction 4'"),
    "two-stage-one-rank-async": (
        {"stages": 2, "ranks": 1, "microbatches": 1, "order": "fill-drain", "flush": False},
        "'the body does not repeat: with 2 repetitions the program differs from the schedule "
        "at instruction 8'"),
    "fill-drain-async-two-pipelines": (
        {"stages": 2, "directions": ("down", "up"), "microbatches": 1, "order": "fill-drain",
         "flush": False},
        "'the order contradicts the dependencies: cycle STEP s0 b6 -> STEP s1 b7 -> Bp1 s0 mb7'"),
    "amdp-p5-sync-fill-drain": (
        {"stages": 5, "directions": "auto", "microbatches": 1, "order": "fill-drain"},
        "three pipelines: 'ALLREDUCE mismatch: rank 2 reduces stage 2 while this rank "
        "reduces stage 0'"),
    "zero-bubble-async-two-pipelines": (
        {"stages": 3, "directions": ("down", "up"), "microbatches": 1, "order": "zero-bubble",
         "split_backward": True, "flush": False},
        "'ALLREDUCE mismatch: rank 0 reduces stage 0 while this rank reduces stage 2'"),
    "zero-bubble-async": (
        {"stages": 3, "microbatches": 1, "order": "zero-bubble", "split_backward": True,
         "flush": False},
        "'the body does not repeat: with 2 repetitions the program differs from the schedule "
        "at instruction 7'"),
    "1f1b-async-down-up": (
        {"stages": 3, "directions": ("down", "up"), "microbatches": 1, "flush": False},
        "'the order contradicts the dependencies: cycle STEP s0 b8 -> STEP s2 b10'"),
    "1f1b-async-down-up-m2": (
        {"stages": 6, "directions": ("down", "up"), "microbatches": 2, "flush": False},
        "'the body does not repeat: with 2 repetitions the program differs from the schedule "
        "at instruction 14'"),
    "fill-drain-two-pipelines-chunks": (
        {"stages": 4, "ranks": 2, "directions": ("down", "up"), "microbatches": 3,
         "order": "fill-drain"},
        "'send/receive mismatch: SEND_GRAD s3 mb0 ->0 meets RECV_ACT s2 mb2 <-1 on rank 0'"),
    "fill-drain-explicit-maps": (
        {"stages": 7, "directions": ((0, 1, 2, 3, 4, 5, 6), (0, 1, 4, 2, 3, 5, 6)),
         "microbatches": 1, "order": "fill-drain"},
        "'ALLREDUCE mismatch: rank 2 reduces stage 3 while this rank reduces stage 2'"),
    "1f1b-explicit-maps": (
        {"stages": 7, "directions": ((0, 1, 2, 3, 4, 5, 6), (0, 3, 1, 2, 4, 5, 6)),
         "microbatches": 1},
        "'ALLREDUCE mismatch: rank 1 reduces stage 2 while this rank reduces stage 1'"),
    "amdp-p5-m1-async": (
        {"stages": 5, "directions": "auto", "microbatches": 1, "flush": False},
        "'the body does not repeat' (found at 300 examples); refused for m < p, now "
        "constructed (schedc.modulo) with a longer period"),
    "amdp-p4-m3": (
        {"stages": 4, "microbatches": 3, "directions": "auto", "flush": False,
         "max_inflight": ((0, 2),), "max_inconsistency": 1, "max_delay": 1},
        "'the body does not repeat'; refused for m < p, now constructed"),
    "amdp-p5-m5": (
        {"stages": 5, "microbatches": 5, "directions": "auto", "flush": False,
         "max_inflight": ((0, 2),), "max_inconsistency": 1, "max_delay": 1},
        "'the body does not repeat'; refused for odd p at m = p, now constructed"),
    "amdp-p6": (
        {"stages": 6, "microbatches": 6, "directions": "auto", "flush": False,
         "max_inflight": ((0, 2),)},
        "three pipelines: 'ALLREDUCE mismatch: rank 0 reduces stage 5 while this rank "
        "reduces stage 3'"),
}


@pytest.mark.parametrize("fields", [f for f, _ in EDGE_CASES.values()], ids=list(EDGE_CASES))
def test_edge_cases_compile_or_are_refused(fields):
    try:
        spec = Spec(**fields).validate()
    except SpecError as exc:
        assert exc.field in {"directions", "flush", "split_backward", "microbatches", "order"}
        return
    c = compile_spec(spec)
    verify(c.manifest, c.programs)
