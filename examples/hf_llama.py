"""A model nobody here wrote: HuggingFace's Llama, split into pipeline stages.

    pip install transformers
    schedc compile --preset 1f1b --stages 4 --microbatches 4 -o out/llama
    python examples/hf_llama.py out/llama                          # every rank in this process
    torchrun --standalone --nproc-per-node 4 examples/hf_llama.py out/llama  # one per rank
    # or through the command line, with this file's functions:
    PYTHONPATH=examples schedc run out/llama --local --model hf_llama:build_stage \\
        --data hf_llama:batches --loss hf_llama:loss --seq-len 32 --steps 10

`LlamaForCausalLM` from a small `LlamaConfig` (random init, 8 layers, d = 256):
stage 0 holds the embedding, the last stage the final norm and the head, and
the decoder layers are shared out evenly. Position ids and the causal mask are
side inputs: every stage reads them from its own copy of the data, so only the
hidden state [b, t, 256] travels down the pipeline.
"""

import sys

import schedc.runtime as sr
import torch
from schedc.runtime.data import Batches, load_corpus
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

CONFIG = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                     num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=4,
                     max_position_embeddings=256, tie_word_embeddings=False)
BATCH, SEQ = 2, 32


class LlamaStage(nn.Module):
    def __init__(self, model: LlamaForCausalLM, stage: int, num_stages: int) -> None:
        super().__init__()
        n = CONFIG.num_hidden_layers
        lo, hi = n * stage // num_stages, n * (stage + 1) // num_stages
        self.embed = model.model.embed_tokens if stage == 0 else None
        self.layers = nn.ModuleList(model.model.layers[lo:hi])
        self.rotary = model.model.rotary_emb  # buffers only: recomputed on every stage
        last = stage == num_stages - 1
        self.norm, self.head = (model.model.norm, model.lm_head) if last else (None, None)

    def forward(self, x, position_ids, attention_mask):
        h = self.embed(x) if self.embed is not None else x  # [b, t] ids -> [b, t, d]
        cos_sin = self.rotary(h, position_ids)
        for layer in self.layers:
            h = layer(h, attention_mask=attention_mask, position_ids=position_ids,
                      position_embeddings=cos_sin)
            h = h[0] if isinstance(h, tuple) else h
        return self.head(self.norm(h)) if self.head is not None else h  # [b, t, vocab]


def build_stage(stage: int, num_stages: int) -> nn.Module:
    return LlamaStage(LlamaForCausalLM(CONFIG), stage, num_stages)


def batches(j: int, seed: int):
    """Byte-level windows of the stdlib sources; position ids and mask as side inputs."""
    tokens = Batches(load_corpus(), BATCH, SEQ, seed).get(j)
    mask = torch.full((SEQ, SEQ), float("-inf")).triu(1)[None, None]  # [1, 1, t, t]
    side = {"position_ids": torch.arange(SEQ)[None], "attention_mask": mask}
    return tokens.inputs, tokens.targets, side


loss = sr.cross_entropy  # logits [b, t, vocab], targets [b, t]

if __name__ == "__main__":
    run = sr.Run(sys.argv[1], build_stage=build_stage, data=batches, loss=loss,
                 lr=1e-3, steps=20, quiet=True)
    for record in run.train():
        print(f"step {record['step']}  loss {record['loss']:.4f}  {record['tokens']} tokens")
