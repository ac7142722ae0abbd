"""The pieces compose: a model re-pointed into a flat buffer, its gradients accumulated
into a flat fp32 accumulator over micro-batches, stepped by the fused AdamW with a
stash, trains exactly as torch.optim.AdamW on a copy of the model does."""


import torch
from kernel_testing import ARITH_TOL, assert_bitwise, randn
from schedc.kernels import accumulate, adamw_step, flatten_params, repoint

HP = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MICRO_BATCHES = 3


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))


def _loss(model, k: int) -> torch.Tensor:
    x = randn(8 * 16, device=next(model.parameters()).device, seed=100 + k).view(8, 16)
    return model(x).square().mean()


def test_flat_training_equals_torch_optim(device):
    ours, theirs = _model(), _model()
    ours.to(device), theirs.to(device)
    params = list(ours.parameters())
    flat, offsets = flatten_params(params)
    repoint(params, flat, offsets)
    acc, m, v = (torch.zeros_like(flat) for _ in range(3))
    stash = torch.empty_like(flat)
    opt = torch.optim.AdamW(theirs.parameters(), foreach=False, **HP)

    for step in range(1, 4):
        for k in range(MICRO_BATCHES):
            (_loss(theirs, k) / MICRO_BATCHES).backward()
            ours.zero_grad()
            _loss(ours, k).backward()
            grad = torch.cat([p.grad.reshape(-1) for p in params])
            accumulate(acc, grad, scale=1 / MICRO_BATCHES)
        before = flat.clone()
        adamw_step(flat, acc, m, v, step=step, stash_out=stash, **HP)
        acc.zero_()
        opt.step()
        opt.zero_grad()
        assert_bitwise(stash, before)
        for mine, ref in zip(ours.parameters(), theirs.parameters(), strict=True):
            # Views still: the fused step over flat updated the module's weights.
            assert mine.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_loss(ours, 0), _loss(theirs, 0), **ARITH_TOL)
