"""Triton kernels behind ``adamw_step`` and ``sgd_step`` (imported only when Triton runs).

Each kernel reads every input once and writes every output once. Optional
buffers are compile-time switches; an absent one is passed as ``param`` and
never touched. Division and square root are the correctly rounded forms, so
the GPU does not fall back to approximate ones and results track torch's.
"""

import torch
import triton
import triton.language as tl

from ._dispatch import BLOCK, launching
from ._tl_common import all_true, block_offsets, cast_for, full_block


@triton.jit
def _load_grad(g_ptr, gprev_ptr, offs, mask, grad_div, ef_lambda,
               HAS_DIV: tl.constexpr, HAS_EF: tl.constexpr):
    g = tl.load(g_ptr + offs, mask=mask)
    if HAS_DIV:  # the mean over the step's micro-batches: the runtime's 1 / count
        g = tl.div_rn(g, grad_div)
    if HAS_EF:
        g_prev = tl.load(gprev_ptr + offs, mask=mask)
        tl.store(gprev_ptr + offs, g, mask=mask)
        g = g + ef_lambda * (g - g_prev)
    return g


@triton.jit
def _store_versions(stash_ptr, la_ptr, offs, mask, p_old, p_new, la_alpha,
                    HAS_STASH: tl.constexpr, HAS_LA: tl.constexpr):
    if HAS_STASH:
        tl.store(stash_ptr + offs, cast_for(p_old, stash_ptr), mask=mask)
    if HAS_LA:
        la = p_new + la_alpha * (p_new - p_old)
        tl.store(la_ptr + offs, cast_for(la, la_ptr), mask=mask)


@triton.jit
def _adamw_body(
    p_ptr, g_ptr, m_ptr, v_ptr, stash_ptr, la_ptr, gprev_ptr, offs, mask,
    decay, lerp_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, la_alpha, ef_lambda,
    grad_div, HAS_STASH: tl.constexpr, HAS_LA: tl.constexpr, HAS_EF: tl.constexpr,
    HAS_DIV: tl.constexpr,
):
    g = _load_grad(g_ptr, gprev_ptr, offs, mask, grad_div, ef_lambda, HAS_DIV, HAS_EF)
    p_old = tl.load(p_ptr + offs, mask=mask)
    m = tl.load(m_ptr + offs, mask=mask)
    v = tl.load(v_ptr + offs, mask=mask)
    # Same operation order as torch.optim.AdamW's single-tensor path.
    p = p_old * decay
    m = m + lerp_w * (g - m)
    v = v * beta2 + one_minus_beta2 * g * g
    denom = tl.div_rn(tl.sqrt_rn(v), bc2_sqrt) + eps
    p = p + neg_step_size * tl.div_rn(m, denom)
    tl.store(p_ptr + offs, p, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    _store_versions(stash_ptr, la_ptr, offs, mask, p_old, p, la_alpha, HAS_STASH, HAS_LA)


@triton.jit
def _adamw_kernel(
    p_ptr, g_ptr, m_ptr, v_ptr, stash_ptr, la_ptr, gprev_ptr, n,
    decay, lerp_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, la_alpha, ef_lambda,
    grad_div, HAS_STASH: tl.constexpr, HAS_LA: tl.constexpr, HAS_EF: tl.constexpr,
    HAS_DIV: tl.constexpr, BLOCK: tl.constexpr,
):
    offs, mask = block_offsets(n, BLOCK)
    if full_block(n, BLOCK):  # the unmasked body: vector loads and stores for any n
        _adamw_body(p_ptr, g_ptr, m_ptr, v_ptr, stash_ptr, la_ptr, gprev_ptr, offs, all_true(BLOCK),
                    decay, lerp_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps,
                    la_alpha, ef_lambda, grad_div, HAS_STASH, HAS_LA, HAS_EF, HAS_DIV)
    else:
        _adamw_body(p_ptr, g_ptr, m_ptr, v_ptr, stash_ptr, la_ptr, gprev_ptr, offs, mask,
                    decay, lerp_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps,
                    la_alpha, ef_lambda, grad_div, HAS_STASH, HAS_LA, HAS_EF, HAS_DIV)


@triton.jit
def _sgd_body(
    p_ptr, g_ptr, buf_ptr, stash_ptr, la_ptr, gprev_ptr, offs, mask,
    neg_lr, weight_decay, momentum, one_minus_dampening, la_alpha, ef_lambda, grad_div,
    HAS_MOMENTUM: tl.constexpr, FIRST_STEP: tl.constexpr, NESTEROV: tl.constexpr,
    HAS_STASH: tl.constexpr, HAS_LA: tl.constexpr, HAS_EF: tl.constexpr, HAS_DIV: tl.constexpr,
):
    g = _load_grad(g_ptr, gprev_ptr, offs, mask, grad_div, ef_lambda, HAS_DIV, HAS_EF)
    p_old = tl.load(p_ptr + offs, mask=mask)
    d = g + weight_decay * p_old
    if HAS_MOMENTUM:
        if FIRST_STEP:
            buf = d  # torch starts the buffer as a copy of the first update
        else:
            buf = tl.load(buf_ptr + offs, mask=mask) * momentum + one_minus_dampening * d
        tl.store(buf_ptr + offs, buf, mask=mask)
        if NESTEROV:
            d = d + momentum * buf
        else:
            d = buf
    p = p_old + neg_lr * d
    tl.store(p_ptr + offs, p, mask=mask)
    _store_versions(stash_ptr, la_ptr, offs, mask, p_old, p, la_alpha, HAS_STASH, HAS_LA)


@triton.jit
def _sgd_kernel(
    p_ptr, g_ptr, buf_ptr, stash_ptr, la_ptr, gprev_ptr, n,
    neg_lr, weight_decay, momentum, one_minus_dampening, la_alpha, ef_lambda, grad_div,
    HAS_MOMENTUM: tl.constexpr, FIRST_STEP: tl.constexpr, NESTEROV: tl.constexpr,
    HAS_STASH: tl.constexpr, HAS_LA: tl.constexpr, HAS_EF: tl.constexpr, HAS_DIV: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs, mask = block_offsets(n, BLOCK)
    if full_block(n, BLOCK):
        _sgd_body(p_ptr, g_ptr, buf_ptr, stash_ptr, la_ptr, gprev_ptr, offs, all_true(BLOCK),
                  neg_lr, weight_decay, momentum, one_minus_dampening, la_alpha, ef_lambda,
                  grad_div, HAS_MOMENTUM, FIRST_STEP, NESTEROV, HAS_STASH, HAS_LA, HAS_EF, HAS_DIV)
    else:
        _sgd_body(p_ptr, g_ptr, buf_ptr, stash_ptr, la_ptr, gprev_ptr, offs, mask, neg_lr,
                  weight_decay, momentum, one_minus_dampening, la_alpha, ef_lambda, grad_div,
                  HAS_MOMENTUM, FIRST_STEP, NESTEROV, HAS_STASH, HAS_LA, HAS_EF, HAS_DIV)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


def adamw_step(param, grad, exp_avg, exp_avg_sq, scalars: dict, stash_out, lookahead_out,
               ef_prev_grad) -> None:
    n = param.numel()
    if n == 0:
        return
    with launching("adamw_step"):
        _adamw_kernel[_grid(n)](
            param, grad, exp_avg, exp_avg_sq,
            param if stash_out is None else stash_out,
            param if lookahead_out is None else lookahead_out,
            param if ef_prev_grad is None else ef_prev_grad,
            n, **scalars,
            HAS_STASH=stash_out is not None, HAS_LA=lookahead_out is not None,
            HAS_EF=ef_prev_grad is not None, HAS_DIV=scalars["grad_div"] != 1.0, BLOCK=BLOCK,
        )


def sgd_step(param, grad, momentum_buf: torch.Tensor | None, scalars: dict, flags: dict,
             stash_out, lookahead_out, ef_prev_grad) -> None:
    n = param.numel()
    if n == 0:
        return
    with launching("sgd_step"):
        _sgd_kernel[_grid(n)](
            param, grad,
            param if momentum_buf is None else momentum_buf,
            param if stash_out is None else stash_out,
            param if lookahead_out is None else lookahead_out,
            param if ef_prev_grad is None else ef_prev_grad,
            n, **scalars, **flags,
            HAS_STASH=stash_out is not None, HAS_LA=lookahead_out is not None,
            HAS_EF=ef_prev_grad is not None, HAS_DIV=scalars["grad_div"] != 1.0, BLOCK=BLOCK,
        )
