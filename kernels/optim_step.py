"""Optimizer steps over a stage's flat buffers, fused with weight-version handling.

``adamw_step`` equals one ``torch.optim.AdamW`` step (decoupled weight decay,
bias correction with the step count; no amsgrad) and ``sgd_step`` one
``torch.optim.SGD`` step (momentum, dampening, Nesterov, weight decay), over
fp32 1-D contiguous buffers: master weights ``param``, gradient ``grad`` and
optimizer state. In the same pass, optionally:

- ``stash_out`` receives the pre-update weights (a stash slot);
- ``lookahead_out`` receives look-ahead forward weights
  ``w_new + lookahead_alpha * (w_new - w_old)``;
- ``grad_div`` divides the gradient first (the runtime passes the accumulated
  sum and its count, so the mean is never written back: correctly rounded
  division, bit for bit the twin's ``grad / count``);
- ``ef_prev_grad`` turns on error feedback: the step uses
  ``g_hat = g + ef_lambda * (g - g_prev)`` in place of ``g`` and then sets
  ``g_prev = g``. ``grad`` itself is only read.

``stash_out`` and ``lookahead_out`` may be fp32, bf16 or fp16 (a compute copy);
narrowing rounds to nearest even.

Bytes moved per element, fp32 (``budget.adamw_bytes`` / ``budget.sgd_bytes``):
AdamW reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg,
exp_avg_sq: 28. SGD with momentum reads param, grad, buffer and writes param,
buffer: 20 (12 without momentum). Each extra output adds its element size (4
in fp32); error feedback adds 8 (read and write ``g_prev``).
"""

from __future__ import annotations

import math

import torch

from ._dispatch import (
    FLOAT_DTYPES,
    check_disjoint,
    check_dtype,
    check_flat,
    load_triton_module,
    use_triton,
)

__all__ = ["adamw_step", "adamw_step_ref", "sgd_step", "sgd_step_ref"]

_FP32 = (torch.float32,)


def _check_buffers(param: torch.Tensor, state: dict[str, torch.Tensor | None]) -> None:
    check_flat("param", param)
    check_dtype("param", param, _FP32)
    for name, t in state.items():
        if t is None:
            continue
        check_flat(name, t, like=param)
        allowed = FLOAT_DTYPES if name in ("stash_out", "lookahead_out") else _FP32
        check_dtype(name, t, allowed)
    check_disjoint(param=param, **state)


def _error_feedback_ref(grad: torch.Tensor, prev: torch.Tensor | None, lam: float) -> torch.Tensor:
    """``g + lam * (g - g_prev)``, and ``g_prev <- g``; ``grad`` unchanged."""
    if prev is None:
        return grad
    g_hat = grad + lam * (grad - prev)
    prev.copy_(grad)
    return g_hat


def _divided(grad: torch.Tensor, grad_div: float) -> torch.Tensor:
    """``grad / grad_div``, correctly rounded (a 0-d tensor divisor: CUDA would turn a
    Python-number divisor into a multiplication by its reciprocal)."""
    if grad_div == 1.0:
        return grad
    return torch.div(grad, torch.tensor(float(grad_div), dtype=grad.dtype, device=grad.device))


def _lookahead_ref(
    old: torch.Tensor | None, param: torch.Tensor, lookahead_out: torch.Tensor | None, alpha: float
) -> None:
    """``lookahead_out <- w_new + alpha * (w_new - w_old)``, rounded once to its dtype."""
    if lookahead_out is not None:
        lookahead_out.copy_(param + alpha * (param - old))


def _adamw_scalars(step: int, lr: float, betas: tuple[float, float], eps: float,
                   weight_decay: float, lookahead_alpha: float, ef_lambda: float) -> dict:
    if step < 1:
        raise ValueError(f"step counts updates from 1, got {step}")
    beta1, beta2 = betas
    # Host-side float64 arithmetic, as torch.optim does with a Python step count.
    return dict(
        decay=1.0 - lr * weight_decay,
        lerp_w=1.0 - beta1,
        beta2=beta2,
        one_minus_beta2=1.0 - beta2,
        neg_step_size=-lr / (1.0 - beta1**step),
        bc2_sqrt=math.sqrt(1.0 - beta2**step),
        eps=eps,
        la_alpha=lookahead_alpha,
        ef_lambda=ef_lambda,
    )


@torch.no_grad()
def adamw_step_ref(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    stash_out: torch.Tensor | None = None,
    lookahead_out: torch.Tensor | None = None,
    lookahead_alpha: float = 0.0,
    ef_prev_grad: torch.Tensor | None = None,
    ef_lambda: float = 0.0,
    grad_div: float = 1.0,
) -> None:
    """Torch twin of :func:`adamw_step`: torch.optim.AdamW's single-tensor ops."""
    _check_adamw(param, grad, exp_avg, exp_avg_sq, stash_out, lookahead_out, ef_prev_grad)
    s = _adamw_scalars(step, lr, betas, eps, weight_decay, lookahead_alpha, ef_lambda)
    grad = _error_feedback_ref(_divided(grad, grad_div), ef_prev_grad, ef_lambda)
    old = param.clone() if lookahead_out is not None else None
    if stash_out is not None:
        stash_out.copy_(param)
    param.mul_(s["decay"])
    exp_avg.lerp_(grad, s["lerp_w"])
    exp_avg_sq.mul_(betas[1]).addcmul_(grad, grad, value=s["one_minus_beta2"])
    denom = (exp_avg_sq.sqrt() / s["bc2_sqrt"]).add_(eps)
    param.addcdiv_(exp_avg, denom, value=s["neg_step_size"])
    _lookahead_ref(old, param, lookahead_out, lookahead_alpha)


def _check_adamw(param, grad, exp_avg, exp_avg_sq, stash_out, lookahead_out, ef_prev_grad):
    _check_buffers(param, dict(grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                               stash_out=stash_out, lookahead_out=lookahead_out,
                               ef_prev_grad=ef_prev_grad))


@torch.no_grad()
def adamw_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    stash_out: torch.Tensor | None = None,
    lookahead_out: torch.Tensor | None = None,
    lookahead_alpha: float = 0.0,
    ef_prev_grad: torch.Tensor | None = None,
    ef_lambda: float = 0.0,
    grad_div: float = 1.0,
) -> None:
    """One AdamW update of flat fp32 buffers, in place, in one pass.

    Args:
        param: fp32 master weights, updated in place.
        grad: fp32 gradient (read only).
        exp_avg, exp_avg_sq: fp32 first and second moments, updated in place;
            zeros before the first step.
        step: this update's number, 1 for the first (torch's ``state["step"]``
            after its increment); drives the bias corrections.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (decay is decoupled:
            ``param *= 1 - lr * weight_decay``).
        stash_out: if given, receives the weights before this update.
        lookahead_out: if given, receives ``w_new + lookahead_alpha * (w_new - w_old)``.
        ef_prev_grad: if given, error feedback: the update uses
            ``grad + ef_lambda * (grad - ef_prev_grad)``, then ``ef_prev_grad = grad``.
        grad_div: the update uses ``grad / grad_div`` (before error feedback);
            ``grad`` itself is not written.

    All buffers are 1-D, contiguous, of equal length, on one device.
    """
    _check_adamw(param, grad, exp_avg, exp_avg_sq, stash_out, lookahead_out, ef_prev_grad)
    if not use_triton(param, grad, exp_avg, exp_avg_sq, stash_out, lookahead_out, ef_prev_grad):
        return adamw_step_ref(
            param, grad, exp_avg, exp_avg_sq, step=step, lr=lr, betas=betas, eps=eps,
            weight_decay=weight_decay, stash_out=stash_out, lookahead_out=lookahead_out,
            lookahead_alpha=lookahead_alpha, ef_prev_grad=ef_prev_grad, ef_lambda=ef_lambda,
            grad_div=grad_div,
        )
    s = _adamw_scalars(step, lr, betas, eps, weight_decay, lookahead_alpha, ef_lambda)
    s["grad_div"] = float(grad_div)
    load_triton_module("_tl_optim").adamw_step(
        param, grad, exp_avg, exp_avg_sq, s, stash_out, lookahead_out, ef_prev_grad
    )


def _check_sgd(param, grad, momentum_buf, momentum, dampening, nesterov,
               stash_out, lookahead_out, ef_prev_grad):
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    if momentum != 0 and momentum_buf is None:
        raise ValueError("momentum != 0 needs a momentum_buf")
    _check_buffers(param, dict(grad=grad, momentum_buf=momentum_buf, stash_out=stash_out,
                               lookahead_out=lookahead_out, ef_prev_grad=ef_prev_grad))


@torch.no_grad()
def sgd_step_ref(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buf: torch.Tensor | None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    stash_out: torch.Tensor | None = None,
    lookahead_out: torch.Tensor | None = None,
    lookahead_alpha: float = 0.0,
    ef_prev_grad: torch.Tensor | None = None,
    ef_lambda: float = 0.0,
    first_step: bool = False,
    grad_div: float = 1.0,
) -> None:
    """Torch twin of :func:`sgd_step`: torch.optim.SGD's single-tensor ops."""
    _check_sgd(param, grad, momentum_buf, momentum, dampening, nesterov,
               stash_out, lookahead_out, ef_prev_grad)
    d_p = _error_feedback_ref(_divided(grad, grad_div), ef_prev_grad, ef_lambda)
    old = param.clone() if lookahead_out is not None else None
    if stash_out is not None:
        stash_out.copy_(param)
    if weight_decay != 0:
        d_p = d_p.add(param, alpha=weight_decay)
    if momentum != 0:
        if first_step:
            momentum_buf.copy_(d_p)
        else:
            momentum_buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
        d_p = d_p.add(momentum_buf, alpha=momentum) if nesterov else momentum_buf
    param.add_(d_p, alpha=-lr)
    _lookahead_ref(old, param, lookahead_out, lookahead_alpha)


@torch.no_grad()
def sgd_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    momentum_buf: torch.Tensor | None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    stash_out: torch.Tensor | None = None,
    lookahead_out: torch.Tensor | None = None,
    lookahead_alpha: float = 0.0,
    ef_prev_grad: torch.Tensor | None = None,
    ef_lambda: float = 0.0,
    first_step: bool = False,
    grad_div: float = 1.0,
) -> None:
    """One SGD update of flat fp32 buffers, in place, in one pass.

    Args:
        param: fp32 master weights, updated in place.
        grad: fp32 gradient (read only).
        momentum_buf: fp32 momentum buffer, updated in place; may be ``None``
            when ``momentum == 0``.
        lr, momentum, dampening, nesterov, weight_decay: as ``torch.optim.SGD``
            (weight decay is L2: ``grad + weight_decay * param``).
        first_step: torch starts the momentum buffer as a copy of the first
            update, without dampening; pass ``True`` on the first step to match
            that. (With zero dampening a zeroed buffer gives the same result.)
        stash_out, lookahead_out, lookahead_alpha, ef_prev_grad, ef_lambda, grad_div: as
            :func:`adamw_step`.

    All buffers are 1-D, contiguous, of equal length, on one device.
    """
    _check_sgd(param, grad, momentum_buf, momentum, dampening, nesterov,
               stash_out, lookahead_out, ef_prev_grad)
    if not use_triton(param, grad, momentum_buf, stash_out, lookahead_out, ef_prev_grad):
        return sgd_step_ref(
            param, grad, momentum_buf, lr=lr, momentum=momentum, dampening=dampening,
            nesterov=nesterov, weight_decay=weight_decay, stash_out=stash_out,
            lookahead_out=lookahead_out, lookahead_alpha=lookahead_alpha,
            ef_prev_grad=ef_prev_grad, ef_lambda=ef_lambda, first_step=first_step,
            grad_div=grad_div,
        )
    scalars = dict(neg_lr=-lr, weight_decay=weight_decay, momentum=momentum,
                   one_minus_dampening=1.0 - dampening, la_alpha=lookahead_alpha,
                   ef_lambda=ef_lambda, grad_div=float(grad_div))
    flags = dict(HAS_MOMENTUM=momentum != 0, FIRST_STEP=first_step, NESTEROV=nesterov)
    load_triton_module("_tl_optim").sgd_step(
        param, grad, momentum_buf if momentum != 0 else None, scalars, flags,
        stash_out, lookahead_out, ef_prev_grad,
    )
