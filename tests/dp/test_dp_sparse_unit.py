"""SparseDP in one process, with a fake non-blocking all-reduce: subsets, the
drift correction, and averages applied only whole, at step boundaries."""

from __future__ import annotations

import torch
from schedc.runtime.dp_sparse import SparseDP, block_size, subset_blocks
from schedc.runtime.stage import StageReplica
from schedc.runtime.weights import OptimConfig


class FakeWork:
    """An all-reduce in flight: writes garbage into the buffer until it completes."""

    def __init__(self, buf: torch.Tensor, other: torch.Tensor) -> None:
        self.buf, self.other, self.done = buf, other, False
        self.final = buf + other
        buf.fill_(float("nan"))  # partially written: nothing of it may reach the weights

    def is_completed(self) -> bool:
        return self.done

    def complete(self) -> None:
        self.buf.copy_(self.final)
        self.done = True

    def wait(self) -> None:
        if not self.done:
            self.complete()


def _replica(n: int = 1000) -> StageReplica:
    torch.manual_seed(0)
    rep = StageReplica(torch.nn.Linear(n // 10, 10, bias=False), 0, 0, OptimConfig("sgd", lr=0.1))
    return rep


def _sgd_step(rep: StageReplica, seed: int) -> None:
    rep.acc.copy_(torch.randn(rep.numel, generator=torch.Generator().manual_seed(seed)))
    rep.step(rep.version + 1, 1)


def test_subsets_rotate_and_cover():
    assert subset_blocks(10, 1.0, 3) == list(range(10))
    windows = [subset_blocks(20, 0.25, j) for j in range(4)]
    assert sorted(b for w in windows for b in w) == list(range(20))  # 4 exchanges cover all
    assert subset_blocks(20, 0.25, 4) == windows[0]
    assert subset_blocks(30, 0.05, 0) == [0]  # at least one block
    assert subset_blocks(7, 0.5, 1) == [3, 4, 5, 6]
    assert block_size(100) == 64 and block_size(10**6) == 1024


def test_averages_apply_whole_at_step_boundaries_with_drift_correction():
    rep = _replica()
    works: list[FakeWork] = []
    other = torch.full_like(rep.current, 2.0)  # the other replica's parameters

    def fake_all_reduce(buf: torch.Tensor) -> FakeWork:
        works.append(FakeWork(buf, other[: buf.numel()].clone()))
        return works[-1]

    dp = SparseDP({(0, 0): rep}, 2, fraction=0.5, period=1, beta=0.5, max_lateness=2,
                  policy="drop", all_reduce=fake_all_reduce)
    _sgd_step(rep, 1)
    dp.after_step(rep)
    sent = rep.current.clone()
    dp.sync(rep, 1)  # exchange of version 1 in flight
    assert torch.equal(rep.current, sent)  # nothing touched while in flight
    _sgd_step(rep, 2)
    before = rep.current.clone()
    x1 = rep.current.clone()
    dp.after_step(rep)  # version 2: not arrived, lateness 1 < 2: keep going
    assert torch.equal(rep.current, before) and not torch.isnan(rep.current).any()
    drift_2 = dp.state[(0, 0)].drift.clone()
    works[0].complete()
    _sgd_step(rep, 3)
    x3 = rep.current.clone()
    dp.after_step(rep)  # version 3: arrived, applied 2 steps late
    drift_3 = 0.5 * drift_2 + 0.5 * (x3 - x1)
    block = dp.state[(0, 0)].block
    S = subset_blocks(dp.state[(0, 0)].num_blocks, 0.5, 0)
    idx = torch.cat([torch.arange(j * block, min((j + 1) * block, rep.numel)) for j in S])
    expect = x3.clone()
    expect[idx] = (sent[idx] + 2.0) * 0.5 + 2 * drift_3[idx]
    torch.testing.assert_close(rep.current, expect)
    assert dp.stats.lateness == [2] and dp.stats.dropped == 0


def test_drop_policy_drops_what_is_too_late_and_wait_policy_waits():
    for policy in ("drop", "wait"):
        rep = _replica()
        works: list[FakeWork] = []

        def fake(buf, works=works):
            works.append(FakeWork(buf, torch.zeros_like(buf)))
            return works[-1]

        dp = SparseDP({(0, 0): rep}, 2, fraction=1.0, period=1, beta=0.9, max_lateness=1,
                      policy=policy, all_reduce=fake)
        _sgd_step(rep, 1)
        dp.after_step(rep)
        dp.sync(rep, 1)
        _sgd_step(rep, 2)
        dp.after_step(rep)  # lateness 1 = tau and not arrived
        if policy == "drop":
            assert dp.stats.dropped == 1 and dp.stats.applied == 0
            assert not works[0].done  # never waited for during the steps
        else:
            assert dp.stats.applied == 1 and dp.stats.lateness == [1]
        assert not torch.isnan(rep.current).any()
        dp.flush({(0, 0): rep})  # the drain point completes what is in flight
        assert works[0].done
