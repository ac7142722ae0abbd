"""Built-in models (installed as schedc.runtime.models) and the user-model API.

A model is a function `build_stage(stage_index, num_stages) -> nn.Module`:
stage 0 takes token ids [b, t] (int64), every other stage the previous
stage's output; the last stage's output and the targets go to a loss
function `loss(output, targets) -> scalar tensor`. The runtime seeds torch's
generator per stage before calling `build_stage`, so every replica of a stage
starts from the same weights. Name either a built-in (`gpt-tiny`, ...) or
`package.module:function`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from schedc.errors import UserError

from .blocks import cross_entropy
from .transformer import MASK_TOKEN, SIZES, TransformerStage

__all__ = ["ModelDef", "cross_entropy", "resolve_model", "resolve_loss", "user_model"]

BuildStage = Callable[[int, int], nn.Module]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ModelDef:
    name: str
    build_stage: BuildStage
    loss: LossFn
    # "causal": targets are the inputs shifted by one; "masked": BERT-style MLM.
    objective: str = "causal"
    mask_token: int = MASK_TOKEN
    max_seq: int | None = None


def resolve_model(name: str, loss: str | None = None) -> ModelDef:
    """The built-in model `name`, or the user's `module:function`."""
    if name in SIZES:
        cfg = SIZES[name]
        build = functools.partial(TransformerStage, cfg)
        objective = "causal" if cfg.causal else "masked"
        model = ModelDef(name, build, cross_entropy, objective, max_seq=cfg.max_seq)
    elif ":" in name:
        fn = _import(name, "--model")
        module = importlib.import_module(name.split(":")[0])
        objective = getattr(module, "OBJECTIVE", "causal")
        model = ModelDef(name, fn, cross_entropy, objective)
    else:
        raise UserError(f"unknown model {name!r}; one of {', '.join(SIZES)}, or module:function")
    if loss is not None:
        model = ModelDef(model.name, model.build_stage, _import(loss, "--loss"), model.objective,
                         model.mask_token, model.max_seq)
    return model


def callable_name(fn: object) -> str:
    """`module:qualname` of a function (what checkpoints and ranks agree on)."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def user_model(build_stage: BuildStage | str, loss: LossFn | str | None = None) -> ModelDef:
    """The Python API's model: a `build_stage(stage, num_stages)` function (or a
    name `resolve_model` knows) and a loss function (default: token
    cross-entropy, targets -100 ignored)."""
    if isinstance(build_stage, str):
        model = resolve_model(build_stage, loss if isinstance(loss, str) else None)
    else:
        model = ModelDef(callable_name(build_stage), build_stage, cross_entropy)
    if loss is not None and not isinstance(loss, str):
        model = ModelDef(model.name, model.build_stage, loss, model.objective, model.mask_token,
                         model.max_seq)
    return model


def _import(spec: str, option: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{option} {spec}: cannot import ({exc})") from None


def resolve_loss(spec: str) -> LossFn:
    return _import(spec, "--loss")
