"""The runtime's one door to the flat-buffer kernels (`schedc.kernels`).

Everything the stage state does to a whole buffer goes through here: flatten,
re-point, copy, accumulate, optimizer steps. When `schedc.kernels` cannot be
imported, plain-torch equivalents run, with the same arithmetic as the
kernels' torch twins, so exactness tests mean the same thing either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

try:
    from schedc import kernels as _k
except ImportError:  # pragma: no cover - kernels are part of the package
    _k = None

__all__ = ["OptimConfig", "accumulate", "all_finite", "copy_", "flatten_params",
           "host_accumulation", "optimizer_step", "repoint"]


def kernels_in_use() -> bool:
    return _k is not None


def flatten_params(params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """A new flat fp32 buffer holding `params` in order, and their offsets."""
    if _k is not None:
        return _k.flatten_params(params, dtype=torch.float32)
    offsets, total = [], 0
    for p in params:
        offsets.append(total)
        total += p.numel()
    device = params[0].device if params else torch.device("cpu")
    flat = torch.empty(total, dtype=torch.float32, device=device)
    with torch.no_grad():
        for p, start in zip(params, offsets, strict=True):
            flat[start : start + p.numel()].copy_(p.detach().reshape(-1))
    return flat, offsets


def repoint(params: Sequence[torch.Tensor], flat: torch.Tensor, offsets: Sequence[int]) -> None:
    """Make every parameter a view of `flat` at its offset (moves no bytes)."""
    if _k is not None and len(params):
        _k.repoint(params, flat, offsets)
        return
    for p, start in zip(params, offsets, strict=True):
        p.data = flat[start : start + p.numel()].view(p.shape)


def copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.numel() == 0:
        return
    if _k is not None:
        _k.copy_(dst, src)
    else:
        dst.copy_(src)


def host_accumulation(acc: torch.Tensor) -> bool:
    """Whether `accumulate` on this buffer runs the plain-torch path on the host
    (CPU without Triton's interpreter), where reading a value costs no sync."""
    return acc.device.type == "cpu" and (_k is None or not _k.use_triton(acc))


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or Inf in a host buffer: one read (a sum, which is finite exactly
    when every element is, unless it overflows: then the elements decide)."""
    if not t.numel():
        return True
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


def accumulate(acc: torch.Tensor, grad: torch.Tensor, zero_source: bool = False,
               return_sqnorm: bool = False, overwrite: bool = False,
               flag: tuple[torch.Tensor, int, int] | None = None) -> torch.Tensor | None:
    """acc += grad (acc = 0 + grad with `overwrite`; grad = 0 in the same pass when
    asked); with `return_sqnorm`, also sum(grad ** 2) as a 0-d fp32 tensor; with
    `flag` = (int32 buffer, slot, tag), buffer[slot] >= tag afterwards if grad holds
    a NaN or Inf (checked on the device, no host sync)."""
    if acc.numel() == 0:
        return acc.new_zeros(()) if return_sqnorm else None
    buf, slot, tag = flag if flag is not None else (None, 0, 1)
    if _k is not None:
        return _k.accumulate(acc, grad, zero_source=zero_source, return_sqnorm=return_sqnorm,
                             overwrite=overwrite, flag=buf, flag_slot=slot, flag_tag=tag)
    sqnorm = grad.float().square().sum() if return_sqnorm else None
    if overwrite:
        acc.zero_()
    acc.add_(grad)
    if buf is not None and not bool(torch.isfinite(grad).all()):
        buf[slot] = max(int(buf[slot]), tag)
    if zero_source:
        grad.zero_()
    return sqnorm


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | sgd | muon (Muon for hidden 2-D weights, AdamW for the rest)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD's
    ef_lambda: float | None = None  # error feedback (schedule option), None: off
    # Muon (torch.optim.Muon): momentum, Nesterov, and the lr adjustment.
    # "match_rms_adamw" (Moonshot) lets Muon share AdamW's learning rate.
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_adjust_lr: str = "match_rms_adamw"
    # PipeMare warm-up: over the first K steps a stage with delay tau >= 1
    # uses lr * tau**-(1 - min(k/K, 1)). None: off.
    lr_warmup_by_delay: int | None = None

    def state_names(self) -> tuple[str, ...]:
        """Flat fp32 state buffers the optimizer keeps, one per name."""
        names: tuple[str, ...] = ("exp_avg", "exp_avg_sq") if self.name == "adamw" else ()
        if self.name == "sgd" and self.momentum:
            names = ("momentum",)
        if self.name == "muon":
            names = ("exp_avg", "exp_avg_sq", "muon_momentum")
        if self.ef_lambda is not None:
            names += ("ef_prev_grad",)
        return names


def optimizer_step(
    cfg: OptimConfig,
    param: torch.Tensor,
    grad: torch.Tensor,
    state: dict[str, torch.Tensor],
    step: int,
    lookahead_out: torch.Tensor | None = None,
    lookahead_alpha: float = 0.0,
    grad_div: float = 1.0,
    stash_out: torch.Tensor | None = None,
) -> None:
    """One update of the flat master weights `param` in place from `grad / grad_div`;
    `step` counts from 1.

    With `lookahead_out`, also writes w_new + alpha * (w_new - w_old) in the
    same pass (the LOOKAHEAD instruction fused into its STEP); with `stash_out`,
    the weights before the update (a STASH fused into its STEP).
    """
    if param.numel() == 0:
        return
    if _k is None:  # the plain-torch fallback: divide and stash first
        if grad_div != 1.0:
            grad = grad / grad_div
        if stash_out is not None:
            stash_out.copy_(param)
    extra = dict(
        weight_decay=cfg.weight_decay, lookahead_out=lookahead_out,
        lookahead_alpha=lookahead_alpha, ef_prev_grad=state.get("ef_prev_grad"),
        ef_lambda=cfg.ef_lambda or 0.0,
    )
    if _k is not None:
        extra.update(grad_div=grad_div, stash_out=stash_out)
    if cfg.name == "adamw":
        fn = _k.adamw_step if _k is not None else _adamw_torch
        fn(param, grad, state["exp_avg"], state["exp_avg_sq"], step=step, lr=cfg.lr,
           betas=cfg.betas, eps=cfg.eps, **extra)
    elif cfg.name == "sgd":
        fn = _k.sgd_step if _k is not None else _sgd_torch
        fn(param, grad, state.get("momentum"), lr=cfg.lr, momentum=cfg.momentum,
           first_step=step == 1, **extra)
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}")


def _ef(grad, prev, lam):
    if prev is None:
        return grad
    g_hat = grad + lam * (grad - prev)
    prev.copy_(grad)
    return g_hat


def _adamw_torch(param, grad, exp_avg, exp_avg_sq, *, step, lr, betas, eps, weight_decay,
                 lookahead_out, lookahead_alpha, ef_prev_grad, ef_lambda) -> None:
    # torch.optim.AdamW's single-tensor arithmetic, in its order.
    grad = _ef(grad, ef_prev_grad, ef_lambda)
    old = param.clone() if lookahead_out is not None else None
    param.mul_(1.0 - lr * weight_decay)
    exp_avg.lerp_(grad, 1.0 - betas[0])
    exp_avg_sq.mul_(betas[1]).addcmul_(grad, grad, value=1.0 - betas[1])
    denom = (exp_avg_sq.sqrt() / math.sqrt(1.0 - betas[1] ** step)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / (1.0 - betas[0] ** step))
    if lookahead_out is not None:
        lookahead_out.copy_(param + lookahead_alpha * (param - old))


def _sgd_torch(param, grad, momentum_buf, *, lr, momentum, first_step, weight_decay,
               lookahead_out, lookahead_alpha, ef_prev_grad, ef_lambda) -> None:
    d_p = _ef(grad, ef_prev_grad, ef_lambda)
    old = param.clone() if lookahead_out is not None else None
    if weight_decay:
        d_p = d_p.add(param, alpha=weight_decay)
    if momentum:
        if first_step:
            momentum_buf.copy_(d_p)
        else:
            momentum_buf.mul_(momentum).add_(d_p)
        d_p = momentum_buf
    param.add_(d_p, alpha=-lr)
    if lookahead_out is not None:
        lookahead_out.copy_(param + lookahead_alpha * (param - old))
