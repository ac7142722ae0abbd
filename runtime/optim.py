"""The optimizer of one stage replica over its flat buffers, and the delay corrections.

`FlatOptimizer.step` is what a STEP instruction runs. It updates the stage's
flat fp32 master weights in place from the flat gradient accumulator:

- ``sgd`` / ``adamw``: one fused kernel over the whole buffer
  (`schedc.kernels`, through `weights.optimizer_step`);
- ``muon``: the buffer is laid out as [AdamW part | Muon part] (see
  `muon_split`). The AdamW part (embeddings, norms, biases, the output head)
  goes through the fused AdamW kernel; the Muon part (the hidden 2-D weight
  matrices) through `torch.optim.Muon`, run on 2-D *views* of the flat
  buffers: its parameters are views of the master weights, its gradients
  views of the accumulator, its momentum buffers views of one flat state
  buffer, so every bit of optimizer state is in flat buffers (checkpoints,
  version handling unchanged).

Delay corrections, all optional and all in this one place:

- error feedback (`error_feedback`, λ): the optimizer sees
  ĝ_t = g_t + λ·(g_t − g_{t−1}) instead of g_t; one extra flat buffer
  (``ef_prev_grad``) holds g_{t−1}. The first step has no g_0 and uses g_1.
- look-ahead: the STEP also writes w_new + α·(w_new − w_old) into the
  look-ahead buffer (the LOOKAHEAD instruction fused into its STEP);
  forwards marked ``lookahead`` read it.
- PipeMare warm-up (`lr_warmup_by_delay`, K): a stage whose delay is τ ≥ 1
  takes its k-th step (k = 0, 1, ...) with lr·τ^−(1 − min(k/K, 1)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from . import weights
from .weights import OptimConfig

__all__ = ["FlatOptimizer", "error_feedback", "muon_split", "pipemare_lr"]

# Parameters whose qualified name has one of these parts stay with AdamW under
# `--optimizer muon` even when 2-D: the output head and embeddings (Muon is for
# hidden-layer matrices).
_NOT_MUON = ("head", "lm_head", "embed", "emb", "tok_emb", "pos_emb", "wte", "wpe", "output")


def pipemare_lr(lr: float, delay: int, k: int, warmup: int | None) -> float:
    """PipeMare's learning rate for step k (0-based) of a stage with delay `delay`."""
    if warmup is None or delay < 1:
        return lr
    return lr * float(delay) ** -(1.0 - min(k / warmup, 1.0))


def error_feedback(grad: torch.Tensor, prev: torch.Tensor, lam: float) -> torch.Tensor:
    """ĝ = g + λ(g − g_prev), and g_prev ← g (the formula; reference for tests)."""
    g_hat = grad + lam * (grad - prev)
    prev.copy_(grad)
    return g_hat


def muon_split(module: nn.Module, params: Sequence[nn.Parameter]
               ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(AdamW's, Muon's) parameters of `module`, each in module order.

    Muon takes the 2-D weights of `nn.Linear` layers, except a layer whose
    name says it is an embedding or the output head; everything else
    (embeddings, norms, biases, the head) is AdamW's.
    """
    muon_ids = set()
    for name, mod in module.named_modules():
        if not isinstance(mod, nn.Linear) or mod.weight.dim() != 2:
            continue
        if any(part in _NOT_MUON for part in name.split(".")):
            continue
        muon_ids.add(id(mod.weight))
    wanted = [p for p in params if id(p) in muon_ids]
    return [p for p in params if id(p) not in muon_ids], wanted


class FlatOptimizer:
    """Optimizer state and update of one stage replica's flat buffers.

    `n_adamw`: under ``muon``, the number of leading elements that AdamW
    updates; the Muon matrices follow, at `muon_offsets` with `muon_shapes`.
    """

    def __init__(self, cfg: OptimConfig, current: torch.Tensor, n_adamw: int | None = None,
                 muon_offsets: Sequence[int] = (), muon_shapes: Sequence[torch.Size] = ()
                 ) -> None:
        self.cfg = cfg
        n = current.numel()
        self.n_adamw = n if n_adamw is None else n_adamw

        def zeros(k: int) -> torch.Tensor:
            return torch.zeros(k, dtype=torch.float32, device=current.device)

        self.state: dict[str, torch.Tensor] = {}
        if cfg.name == "adamw":
            self.state = {"exp_avg": zeros(n), "exp_avg_sq": zeros(n)}
        elif cfg.name == "sgd" and cfg.momentum:
            self.state = {"momentum": zeros(n)}
        elif cfg.name == "muon":
            self.state = {"exp_avg": zeros(self.n_adamw), "exp_avg_sq": zeros(self.n_adamw),
                          "muon_momentum": zeros(n - self.n_adamw)}
        elif cfg.name != "sgd":
            raise ValueError(f"unknown optimizer {cfg.name!r}")
        if cfg.ef_lambda is not None:
            self.state["ef_prev_grad"] = zeros(n)
        self._muon: torch.optim.Optimizer | None = None
        self._muon_views: list[torch.Tensor] = []
        if cfg.name == "muon" and n > self.n_adamw:
            self._build_muon(current, muon_offsets, muon_shapes)

    def _views(self, flat: torch.Tensor, offsets: Sequence[int], shapes) -> list[torch.Tensor]:
        return [flat[o : o + s.numel()].view(s) for o, s in zip(offsets, shapes, strict=True)]

    def _build_muon(self, current, offsets, shapes) -> None:
        self._muon_offsets = list(offsets)
        self._muon_shapes = [torch.Size(s) for s in shapes]
        self._muon_views = self._views(current, offsets, self._muon_shapes)
        cfg = self.cfg
        self._muon = torch.optim.Muon(
            self._muon_views, lr=cfg.lr, weight_decay=cfg.weight_decay,
            momentum=cfg.muon_momentum, nesterov=cfg.muon_nesterov,
            adjust_lr_fn=cfg.muon_adjust_lr,
        )
        # Momentum buffers as views of one flat state buffer (Muon keeps a
        # buffer it finds in its state instead of allocating one).
        mom = self.state["muon_momentum"]
        local = [o - self.n_adamw for o in offsets]
        for view, buf in zip(self._muon_views, self._views(mom, local, self._muon_shapes),
                             strict=True):
            self._muon.state[view]["momentum_buffer"] = buf

    def step(self, param: torch.Tensor, grad: torch.Tensor, step: int, lr: float | None = None,
             lookahead_out: torch.Tensor | None = None, lookahead_alpha: float = 0.0,
             grad_div: float = 1.0, stash_out: torch.Tensor | None = None) -> None:
        """One update of the master weights `param` from the mean gradient `grad / grad_div`.

        `step` counts updates from 1; `lr` overrides the configured one (warm-up);
        `stash_out` receives the weights before the update. For SGD and AdamW the
        division, the stash and the look-ahead are all in the one fused kernel;
        Muon (and error feedback's first step, which keeps the mean) divide
        `grad` in place first.
        """
        if param.numel() == 0:
            return
        cfg = self.cfg if lr is None else dataclasses.replace(self.cfg, lr=lr)
        ef_prev = self.state.get("ef_prev_grad")
        first = step == 1
        if grad_div != 1.0 and (cfg.name == "muon" or (first and ef_prev is not None)):
            grad.div_(grad_div)
            grad_div = 1.0
        if stash_out is not None and cfg.name == "muon":
            weights.copy_(stash_out, param)
            stash_out = None
        if cfg.name != "muon":
            weights.optimizer_step(
                cfg, param, grad, self._kernel_state(slice(None), first), step,
                lookahead_out=lookahead_out, lookahead_alpha=lookahead_alpha,
                grad_div=grad_div, stash_out=stash_out,
            )
            if first and ef_prev is not None:
                weights.copy_(ef_prev, grad)  # g_1 becomes g_prev; step 1 used g_1 itself
            return
        n = self.n_adamw
        head = slice(0, n)
        if n:
            adam = dataclasses.replace(cfg, name="adamw")
            weights.optimizer_step(
                adam, param[head], grad[head], self._kernel_state(head, first), step,
                lookahead_out=None if lookahead_out is None else lookahead_out[head],
                lookahead_alpha=lookahead_alpha,
            )
        if self._muon is not None:
            self._muon_step(param, grad, cfg.lr, first, lookahead_out, lookahead_alpha)
        if first and ef_prev is not None:
            weights.copy_(ef_prev, grad)

    def _kernel_state(self, part: slice, first: bool) -> dict[str, torch.Tensor]:
        state = {k: (v if part == slice(None) else v[part]) for k, v in self.state.items()
                 if k in ("exp_avg", "exp_avg_sq", "momentum")}
        if "ef_prev_grad" in self.state and not first:
            state["ef_prev_grad"] = self.state["ef_prev_grad"][part]
        return state

    def _muon_step(self, param, grad, lr, first, lookahead_out, alpha) -> None:
        tail = slice(self.n_adamw, param.numel())
        g = grad[tail]
        ef_prev = self.state.get("ef_prev_grad")
        if ef_prev is not None and not first:
            g = error_feedback(g, ef_prev[tail], float(self.cfg.ef_lambda))
        local = [o - self.n_adamw for o in self._muon_offsets]
        for view, gv in zip(self._muon_views, self._views(g, local, self._muon_shapes),
                            strict=True):
            view.grad = gv
        old = param[tail].clone() if lookahead_out is not None else None
        self._muon.param_groups[0]["lr"] = lr
        self._muon.step()
        for view in self._muon_views:
            view.grad = None
        if lookahead_out is not None:
            w = param[tail]
            lookahead_out[tail].copy_(w + alpha * (w - old))
