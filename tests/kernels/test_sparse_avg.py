"""drift_apply (Triton, through the interpreter on CPU) equals drift_apply_ref, and the
twin does what asynchronous data parallelism needs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_testing import SIZES, assert_equals_twin, randn, triton_on_cpu
from schedc.kernels import budget, drift_apply, drift_apply_ref, num_blocks


def _offsets(n: int, blocks: list[int], block: int) -> tuple[torch.Tensor, int]:
    """Pack `blocks` in the given order; returns (offsets, packed length)."""
    off = torch.full((num_blocks(n, block),), -1, dtype=torch.int64)
    pos = 0
    for j in blocks:
        off[j] = pos
        pos += min(block, n - j * block)
    return off, pos


def _state(n: int, device, seed: int = 0):
    return (randn(n, device=device, seed=seed), randn(n, device=device, seed=seed + 1),
            randn(n, device=device, seed=seed + 2) * 0.1)


def _both(n, device, *, blocks, block, update_drift, lateness, beta=0.9, scale=0.5):
    x, prev, drift = _state(n, device)
    avg = off = None
    if blocks is not None:
        off, packed = _offsets(n, blocks, block)
        avg, off = randn(packed, device=device, seed=7) * 2, off.to(device)
    outs = []
    for fn in (drift_apply, drift_apply_ref):
        bufs = [t.clone() for t in (x, prev, drift)]
        fn(*bufs, beta=beta, update_drift=update_drift, avg=avg, offsets=off,
           lateness=lateness, scale=scale, block=block)
        outs.append(bufs)
    return (x, prev, drift), outs


def _subsets(n: int, block: int):
    nb = num_blocks(n, block)
    yield None  # drift update only
    yield list(range(nb))  # everything, in order
    if nb > 1:
        yield [nb - 1, 0]  # a rotating window that wraps (the short block first)
        yield list(range(1, nb, 2))  # every other block


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", [64, 1024])
@pytest.mark.parametrize("update_drift", [True, False])
@pytest.mark.parametrize("lateness", [0.0, 3.0])
def test_drift_apply_equals_twin(device, n, block, update_drift, lateness):
    for blocks in _subsets(n, block):
        if blocks is None and not update_drift:
            continue
        _, (got, want) = _both(n, device, blocks=blocks, block=block,
                               update_drift=update_drift, lateness=lateness)
        for g, w in zip(got, want, strict=True):
            assert_equals_twin(g, w)


def test_twin_semantics():
    n, block = 300, 64
    (x, prev, drift), (_, (x1, p1, d1)) = _both(n, "cpu", blocks=[4, 1], block=block,
                                                update_drift=True, lateness=2.0, scale=0.5)
    d = 0.9 * drift + 0.1 * (x - prev)
    torch.testing.assert_close(d1, d)
    off, _ = _offsets(n, [4, 1], block)
    avg = randn(64 + 44, seed=7) * 2
    expect = x.clone()
    expect[256:300] = avg[:44] * 0.5 + 2.0 * d[256:300]  # block 4 (short) packed first
    expect[64:128] = avg[44:] * 0.5 + 2.0 * d[64:128]
    torch.testing.assert_close(x1, expect)
    assert torch.equal(p1, x1)  # prev follows x: an applied average is not drift


def test_on_time_average_is_exact():
    """lateness 0: x[S] = scale * avg bit for bit (the exactness case of async DP)."""
    n = 2000
    x, prev, drift = _state(n, "cpu")
    a, b = randn(n, seed=11), randn(n, seed=12)
    off, _ = _offsets(n, list(range(num_blocks(n, 1024))), 1024)
    drift_apply_ref(x, prev, drift, beta=0.9, update_drift=False, avg=a + b, offsets=off,
                    lateness=0.0, scale=0.5)
    assert torch.equal(x, (a + b) * 0.5)


def test_rejects_bad_arguments():
    x, prev, drift = _state(100, "cpu")
    with pytest.raises(ValueError):
        drift_apply(x, prev, drift, beta=0.9, avg=torch.zeros(100))  # offsets missing
    with pytest.raises(ValueError):
        drift_apply(x, prev[:50], drift, beta=0.9)
    with pytest.raises(ValueError):
        drift_apply(x, x, drift, beta=0.9)  # overlap
    with pytest.raises(ValueError):
        drift_apply(x, prev, drift, beta=0.9, avg=torch.zeros(100),
                    offsets=torch.zeros(5, dtype=torch.int64), block=64)
    with pytest.raises(ValueError):
        drift_apply(x, prev, drift, beta=0.9, block=100)


def test_budget():
    assert budget.sparse_avg_bytes() == 20
    assert budget.sparse_avg_bytes(applied_fraction=1.0) == 28
    assert budget.sparse_avg_bytes(False, 1.0, late=False) == 12
    assert budget.sparse_avg_bytes(False, 0.5, late=True) == 8
    assert budget.TABLE["drift update"] == 20


@pytest.mark.skipif(not triton_on_cpu(), reason="Triton does not run on CPU here")
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 700), data=st.data(), update_drift=st.booleans(),
       lateness=st.sampled_from([0.0, 1.0, 2.5]), beta=st.floats(0, 0.99))
def test_drift_apply_property(n, data, update_drift, lateness, beta):
    block = 64
    nb = num_blocks(n, block)
    blocks = data.draw(st.lists(st.integers(0, nb - 1), unique=True, min_size=1))
    _, (got, want) = _both(n, "cpu", blocks=blocks, block=block, update_drift=update_drift,
                           lateness=lateness, beta=beta)
    for g, w in zip(got, want, strict=True):
        assert_equals_twin(g, w)
