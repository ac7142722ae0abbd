"""GPT-style (causal LM) and BERT-style (masked LM) stage models.

A model of n layers is split evenly by layers over the stages: stage 0 also
holds the token and position embeddings, the last stage the final norm and
the LM head (its loss is `blocks.cross_entropy`). Byte-level vocabulary: 256
bytes, plus one [MASK] token for BERT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Block, layer_range

BYTE_VOCAB = 256
MASK_TOKEN = 256  # BERT's [MASK], one past the bytes


@dataclass(frozen=True)
class TransformerConfig:
    n_layers: int
    d_model: int
    n_heads: int
    max_seq: int
    causal: bool  # True: GPT (causal LM); False: BERT (masked LM)

    @property
    def vocab(self) -> int:
        return BYTE_VOCAB if self.causal else BYTE_VOCAB + 1


class TransformerStage(nn.Module):
    """Stage `stage` of `num_stages`: [b, t] tokens or [b, t, d] -> [b, t, d] or logits."""

    def __init__(self, cfg: TransformerConfig, stage: int, num_stages: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.first = stage == 0
        self.last = stage == num_stages - 1
        if self.first:
            self.tok_emb = nn.Embedding(cfg.vocab, cfg.d_model)
            self.pos_emb = nn.Embedding(cfg.max_seq, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.causal)
            for _ in layer_range(cfg.n_layers, stage, num_stages)
        )
        if self.last:
            self.ln_f = nn.LayerNorm(cfg.d_model)
            self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            t = x.size(1)
            pos = torch.arange(t, device=x.device)
            x = self.tok_emb(x) + self.pos_emb(pos)  # [b, t] -> [b, t, d]
        for block in self.blocks:
            x = block(x)
        if self.last:
            x = self.head(self.ln_f(x))  # [b, t, d] -> [b, t, vocab]
        return x


def _init(module: nn.Module) -> None:
    # GPT-2's initialisation: N(0, 0.02) weights, zero biases.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# Name -> config. Parameter counts are for the whole model.
SIZES: dict[str, TransformerConfig] = {
    "gpt-tiny": TransformerConfig(4, 32, 2, 256, causal=True),  # ~ 68 K
    "gpt-mini": TransformerConfig(4, 128, 4, 256, causal=True),  # ~ 0.9 M (benchmarks)
    "gpt-small": TransformerConfig(12, 768, 12, 1024, causal=True),  # ~ 86 M
    "gpt-medium": TransformerConfig(24, 1024, 16, 1024, causal=True),  # ~ 303 M
    "gpt-1b": TransformerConfig(24, 1920, 16, 1024, causal=True),  # ~ 1.06 B
    "bert-tiny": TransformerConfig(4, 32, 2, 256, causal=False),
    "bert-base": TransformerConfig(12, 768, 12, 512, causal=False),
    "bert-large": TransformerConfig(24, 1024, 16, 512, causal=False),
}
