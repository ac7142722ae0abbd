"""The optimizer of a stage replica: Muon on flat-buffer views, error feedback,
PipeMare's warm-up and look-ahead weights, against their definitions."""

from __future__ import annotations

import copy

import pytest
import torch
from schedc.runtime.optim import error_feedback, muon_split, pipemare_lr
from schedc.runtime.stage import StageReplica
from schedc.runtime.weights import OptimConfig
from torch import nn


class _Tiny(nn.Module):
    """Embedding, two hidden matrices with biases, a norm and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 8, bias=False)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 11, bias=False)

    def forward(self, x):
        return self.head(self.ln(self.fc2(torch.relu(self.fc1(self.emb(x))))))


def _replica(cfg: OptimConfig, **kw) -> tuple[StageReplica, nn.Module]:
    torch.manual_seed(0)
    module = _Tiny()
    ref = copy.deepcopy(module)
    return StageReplica(module, 0, 0, cfg, **kw), ref


def _grads(ref: nn.Module, step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return {n: torch.randn(p.shape, generator=gen) for n, p in ref.named_parameters()}


def _load_acc(replica: StageReplica, module_ref: nn.Module, grads: dict) -> None:
    """Put per-parameter gradients into the replica's flat accumulator, in its layout."""
    by_id = {id(p): n for n, p in replica.module.named_parameters()}
    for p, off in zip(replica.params, replica.offsets, strict=True):
        replica.acc[off : off + p.numel()].copy_(grads[by_id[id(p)]].reshape(-1))


def _assert_params_equal(replica: StageReplica, ref: nn.Module, exact: bool = True) -> None:
    mine = dict(replica.module.named_parameters())
    for name, q in ref.named_parameters():
        if exact:
            assert torch.equal(mine[name].detach(), q.detach()), name
        else:
            torch.testing.assert_close(mine[name].detach(), q.detach(), rtol=1e-6, atol=1e-7)


def test_muon_split_takes_hidden_matrices_only():
    module = _Tiny()
    adamw, muon = muon_split(module, list(module.parameters()))
    assert [id(p) for p in muon] == [id(module.fc1.weight), id(module.fc2.weight)]
    assert len(adamw) + len(muon) == len(list(module.parameters()))


@pytest.mark.parametrize("ef", [None, 0.5])
def test_muon_on_flat_views_equals_torch_muon(ef):
    """Muon (flat views, fused AdamW for the rest) equals torch.optim.Muon +
    torch.optim.AdamW on plain parameters, bit for bit, over a few steps; with
    error feedback, equal to feeding them g + lambda(g - g_prev) by hand."""
    cfg = OptimConfig("muon", lr=0.02, weight_decay=0.01, ef_lambda=ef)
    replica, ref = _replica(cfg)
    adamw_p, muon_p = muon_split(ref, list(ref.parameters()))
    opt_m = torch.optim.Muon(muon_p, lr=0.02, weight_decay=0.01, momentum=0.95,
                             nesterov=True, adjust_lr_fn="match_rms_adamw")
    opt_a = torch.optim.AdamW(adamw_p, lr=0.02, weight_decay=0.01, foreach=False)
    prev = None
    for step in range(1, 5):
        grads = _grads(ref, step)
        _load_acc(replica, ref, grads)
        replica.step(step, count=1)
        fed = grads
        if ef is not None and prev is not None:
            fed = {n: g + ef * (g - prev[n]) for n, g in grads.items()}
        prev = grads
        for n, q in ref.named_parameters():
            q.grad = fed[n].clone()
        opt_m.step()
        opt_a.step()
        _assert_params_equal(replica, ref)
    # every bit of Muon's state is in the flat buffers (checkpoints carry it)
    mom = replica.state["muon_momentum"]
    flat_ref = torch.cat([opt_m.state[p]["momentum_buffer"].reshape(-1) for p in muon_p])
    assert torch.equal(mom, flat_ref)
    assert replica.state["exp_avg"].numel() == sum(p.numel() for p in adamw_p)


def test_muon_state_survives_a_checkpoint_round_trip():
    cfg = OptimConfig("muon", lr=0.02)
    a, ref = _replica(cfg)
    b, _ = _replica(cfg)
    for step in (1, 2):
        _load_acc(a, ref, _grads(ref, step))
        a.step(step, count=1)
    b.load_state_dict(a.state_dict())
    for x in (a, b):
        _load_acc(x, ref, _grads(ref, 3))
        x.step(3, count=1)
    assert torch.equal(a.current, b.current)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_error_feedback_equals_the_formula(name):
    """g_hat_t = g_t + lambda (g_t - g_{t-1}); the first step uses g_1."""
    lam = 0.7
    replica, ref = _replica(OptimConfig(name, lr=0.1, ef_lambda=lam))
    opt = (torch.optim.SGD(ref.parameters(), lr=0.1, foreach=False) if name == "sgd"
           else torch.optim.AdamW(ref.parameters(), lr=0.1, weight_decay=0.0, foreach=False))
    prev = None
    for step in range(1, 5):
        grads = _grads(ref, step)
        _load_acc(replica, ref, grads)
        replica.step(step, count=1)
        for n, q in ref.named_parameters():
            g = grads[n]
            q.grad = g.clone() if prev is None else g + lam * (g - prev[n])
        prev = grads
        opt.step()
        _assert_params_equal(replica, ref, exact=False)
    flat_last = torch.cat([prev[n].reshape(-1) for n, _ in replica.module.named_parameters()])
    assert torch.equal(replica.state["ef_prev_grad"], flat_last)


def test_error_feedback_reference():
    g, prev = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])
    out = error_feedback(g, prev, 0.5)
    assert torch.equal(out, torch.tensor([0.0, 3.5]))
    assert torch.equal(prev, g)


def test_pipemare_lr_values():
    assert pipemare_lr(1.0, 4, 0, 10) == pytest.approx(0.25)
    assert pipemare_lr(1.0, 4, 5, 10) == pytest.approx(0.5)  # 4 ** -0.5
    assert pipemare_lr(1.0, 4, 10, 10) == 1.0
    assert pipemare_lr(1.0, 4, 50, 10) == 1.0
    assert pipemare_lr(2.0, 8, 2, 6) == pytest.approx(2.0 * 8 ** -(1 - 2 / 6))
    assert pipemare_lr(1.0, 0, 0, 10) == 1.0  # no delay: no warm-up
    assert pipemare_lr(1.0, 4, 0, None) == 1.0  # off


def test_pipemare_lr_is_what_the_step_uses():
    """SGD, lr 1, delay 4, K = 2: steps use lr 1/4, 1/2, 1."""
    replica, ref = _replica(OptimConfig("sgd", lr=1.0, lr_warmup_by_delay=2), delay=4)
    for step, lr in ((1, 0.25), (2, 0.5), (3, 1.0)):
        before = replica.current.clone()
        g = torch.randn_like(replica.acc)
        replica.acc.copy_(g)
        replica.step(step, count=1)
        torch.testing.assert_close(replica.current, before - lr * g, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw", "muon"])
def test_lookahead_buffer_is_extrapolated_weights(name):
    """After STEP with look-ahead alpha, SWAP to the look-ahead buffer makes the
    parameters read w + alpha (w - w_prev); --lookahead's alpha replaces the
    programs'."""
    for override, alpha in ((None, 1.5), (0.25, 0.25)):
        replica, ref = _replica(OptimConfig(name, lr=0.05), lookahead_alpha=override)
        for step in (1, 2):
            w_prev = replica.current.clone()
            replica.acc.copy_(torch.randn_like(replica.acc))
            replica.step(step, count=1, lookahead_alpha=1.5)
        w = replica.current
        replica.point_at(2, lookahead=True)
        reads = torch.cat([p.detach().reshape(-1) for p in replica.params])
        torch.testing.assert_close(reads, w + alpha * (w - w_prev), rtol=0, atol=1e-7)
        assert replica.check_read(2, lookahead=True) == 2
