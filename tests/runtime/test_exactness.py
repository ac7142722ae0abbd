"""The exactness ladder, on CPU with gloo: reference training, distributed
equals in-process bit for bit, and versions read equal the compiler's."""

from __future__ import annotations

import pytest
import torch
from runtime_testing import (
    Result,
    assert_same,
    compile_preset,
    reference_training,
    run_inprocess,
    run_torchrun,
)

STEPS = 3
# preset -> (stages, microbatches, ranks) on 2 ranks
PRESETS_2 = {
    "gpipe": (2, 4, None),
    "1f1b": (2, 4, None),
    "interleaved-1f1b": (4, 4, 2),
    "zb-h1": (2, 4, None),
    "chimera": (2, 4, None),
    "pipedream": (2, 2, None),
    "pipedream-2bw": (2, 4, None),
    "paci": (2, 4, None),
    "amdp": (2, 4, None),
}
EXTRA = {"1f1b-sgd": ["--optimizer", "sgd", "--momentum", "0.9"]}


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs")
    out = {}
    for name, (stages, mbs, ranks) in PRESETS_2.items():
        try:
            out[name] = compile_preset(root / name, name, stages, mbs, ranks)
        except pytest.fail.Exception as exc:  # fails that preset's tests, not the others'
            out[name] = exc
    return out


def _dir(programs, name):
    d = programs[name]
    if isinstance(d, BaseException):
        pytest.fail(str(d))
    return d


@pytest.fixture(scope="module")
def dist2(programs, tmp_path_factory):
    """Every compilable preset on 2 gloo ranks, in one torchrun launch."""
    jobs = {name: [str(d), "--steps", str(STEPS)] for name, d in programs.items()
            if not isinstance(d, BaseException)}
    jobs["1f1b-sgd"] = [str(programs["1f1b"]), "--steps", str(STEPS), *EXTRA["1f1b-sgd"]]
    return run_torchrun(jobs, 2, tmp_path_factory.mktemp("dist2"))


def _close(a: Result, b: Result, rtol: float) -> None:
    assert len(a.losses) == len(b.losses)
    for x, y in zip(a.losses, b.losses, strict=True):
        assert abs(x - y) <= rtol * abs(y), (a.losses, b.losses)
    for key, w in b.weights.items():
        torch.testing.assert_close(a.weights[key], w, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "zb-h1", "1f1b-sgd"])
def test_synchronous_equals_plain_training(name, programs, dist2):
    """(a) Same micro-batches, same accumulation order, same optimizer arithmetic:
    bitwise equal to single-process training with torch.optim."""
    d = _dir(programs, name.removesuffix("-sgd"))
    extra = EXTRA.get(name, [])
    ref = reference_training(d, STEPS, *extra)
    local = run_inprocess(d, "--steps", str(STEPS), *extra)
    for run in (local, dist2[name]):
        assert run.losses == ref.losses
        for key, w in ref.weights.items():
            assert torch.equal(run.weights[key], w), f"stage {key} weights differ"


@pytest.mark.parametrize("name", list(PRESETS_2))
def test_distributed_equals_inprocess(name, programs, dist2):
    """(b) Every preset: torchrun + gloo equals the in-process run, bit for bit."""
    d = _dir(programs, name)
    local = run_inprocess(d, "--steps", str(STEPS))
    assert local.losses and all(x == x for x in local.losses)
    assert_same(dist2[name], local)


def _bodies_of(table: dict, manifest, programs) -> int:
    """The run length (in bodies) whose micro-batches the version table covers."""
    from schedc.runtime.programs import span

    mbs = {row[0] for rows in table["by_stage"].values() for row in rows}
    for bodies in range(1, 17):
        if span(programs, manifest, bodies)[0] == len(mbs) == max(mbs) + 1:
            return bodies
    pytest.fail(f"the version table's {len(mbs)} micro-batches are no whole run's")


@pytest.mark.parametrize("name", list(PRESETS_2))
def test_versions_read_equal_the_compilers(name, programs):
    """(c) Every instruction's version is checked at run time (a mismatch is an
    error); here the reads also equal the manifest's version table."""
    from schedc.runtime.programs import load

    d = _dir(programs, name)
    manifest, programs = load(d)
    table = manifest.analysis.get("versions")
    steps = 1 if table is None else _bodies_of(table, manifest, programs)
    run = run_inprocess(d, "--steps", str(steps))
    assert run.reads
    if table is None:  # synchronous: every op of step k reads version k
        m = manifest.period.microbatches
        assert all(v == mb // m for _, _, _, mb, v in run.reads)
        return
    backward = ("I", "W") if manifest.spec.get("split_backward") else ("B",)
    expected = {}
    for key, rows in table["by_stage"].items():
        p, s = map(int, key.split("/"))
        for mb, fwd, bwd, _applied in rows:
            expected[("F", p, s, mb)] = fwd
            for op in backward:
                expected[(op, p, s, mb)] = bwd
    got = {}
    for op, p, s, mb, v in run.reads:
        assert (op, p, s, mb) not in got, f"{op} p{p} s{s} mb{mb} read twice"
        got[(op, p, s, mb)] = v
    assert got.keys() == expected.keys()  # the whole table: every op the run did, no more
    assert got == expected
