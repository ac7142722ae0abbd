"""A cost profile without a run: built-in model shapes and accelerators.

An ESTIMATE, for an answer before there is a machine (docs/tune.md, "Without
a run", cites every number). A measured profile (`--costs`) always wins.

Per micro-batch of b samples of seq tokens, a decoder layer of width h does
24·b·seq·h² + 4·b·seq²·h FLOPs forward (Narayanan et al. 2021, SC'21, section
5.1: the 72·B·s·l·h²·(1 + s/6h + V/16lh) count without recomputation, one
third of it forward) and the output layer 2·b·seq·h·V; a backward is twice its
forward, and I and W are one forward each. Times are FLOPs over (peak bf16
FLOP/s x an achievable fraction). A layer stores 34·b·seq·h bytes of
activations for its backward (Korthikanti et al. 2022, table 2, 16-bit, the
attention scores not kept as FlashAttention does), the output layer its fp32
logits (4·b·seq·V). A weight copy is bf16 (2 bytes per parameter); gradients
and Adam's fp32 master, momentum and variance are 14 more bytes per parameter
(Rajbhandari et al. 2020, ZeRO, section 3.1), held once per stage replica.
Weight ops are memory-bound: bytes moved over HBM bandwidth (STEP 32 B per
parameter, the runtime's fused step; ACC 12; STASH 4; SWAP 6; LOOKAHEAD 12).
"""

from __future__ import annotations

from dataclasses import dataclass

from schedc.errors import UserError, suggest
from schedc.simulate.costs import CostModel
from schedc.tune.profile import Profile


@dataclass(frozen=True)
class ModelShape:
    layers: int
    d_model: int
    seq: int = 2048
    vocab: int = 50257


@dataclass(frozen=True)
class Hardware:
    peak_flops: float  # dense bf16 tensor-core FLOP/s
    achievable: float  # fraction of peak a training step reaches
    memory: float  # bytes of device memory
    hbm_bandwidth: float  # bytes/s
    node_link: tuple[float, float]  # (latency s, bytes/s per direction) inside a node
    net_link: tuple[float, float]  # the same between nodes
    per_node: int = 8


# GPT-3's shapes (Brown et al. 2020, table 2.1): layers, d_model; seq 2048; GPT-2's vocabulary.
MODELS: dict[str, ModelShape] = {
    "gpt-125m": ModelShape(12, 768),
    "gpt-350m": ModelShape(24, 1024),
    "gpt-760m": ModelShape(24, 1536),
    "gpt-1b": ModelShape(24, 2048),  # GPT-3 XL, 1.3B
    "gpt-3b": ModelShape(32, 2560),  # GPT-3 2.7B
    "gpt-7b": ModelShape(32, 4096),  # GPT-3 6.7B
    "gpt-13b": ModelShape(40, 5140),
}

# NVIDIA datasheets (SXM parts): dense bf16 peak, memory, HBM bandwidth, NVLink
# (total bandwidth / 2 per direction); one 200 Gb/s HDR (A100) or 400 Gb/s NDR
# (H100/H200) InfiniBand port per GPU. Achievable fraction 0.5: Narayanan et al.
# 2021 reach 52% of A100 peak (assumed alike on Hopper). Latencies: assumptions.
HARDWARE: dict[str, Hardware] = {
    "a100": Hardware(312e12, 0.5, 80e9, 2.039e12, (5e-6, 300e9), (10e-6, 25e9)),
    "h100": Hardware(989e12, 0.5, 80e9, 3.35e12, (5e-6, 450e9), (10e-6, 50e9)),
    "h200": Hardware(989e12, 0.5, 141e9, 4.8e12, (5e-6, 450e9), (10e-6, 50e9)),
}

WEIGHT_OP_BYTES = {"ACC": 12, "STEP": 32, "STASH": 4, "SWAP": 6, "LOOKAHEAD": 12}
WEIGHT_COPY_BYTES = 2  # bf16
STATIC_BYTES = 14  # bf16 gradient + fp32 master, momentum, variance


def lookup(name: str, table: dict, what: str):
    if name not in table:
        raise UserError(f"unknown {what} {name!r} (one of {', '.join(table)})"
                        f"{suggest(name, list(table))}")
    return table[name]


def estimate(model_name: str, hardware_name: str, ranks: int, dp: int = 1) -> Profile:
    """A per-layer profile (one stage per layer, micro-batch of 1 sample): the
    depth resampling of schedc.tune.profile turns it into any stage count."""
    model = lookup(model_name, MODELS, "model")
    hw = lookup(hardware_name, HARDWARE, "hardware")
    L, h, s, V = model.layers, model.d_model, model.seq, model.vocab
    rate = hw.peak_flops * hw.achievable
    layer_params = 12 * h * h + 13 * h
    params = [layer_params] * L
    params[0] += V * h + s * h  # token and position embeddings
    params[-1] += V * h  # the output layer's own copy (Megatron's pipeline)
    fwd = [24 * s * h * h + 4 * s * s * h] * L
    fwd[-1] += 2 * s * h * V
    stored = [34 * s * h] * L
    stored[-1] += 4 * s * V
    times = []
    for f, p in zip(fwd, params, strict=True):
        t = {"F": f / rate, "B": 2 * f / rate, "I": f / rate, "W": f / rate}
        t.update({op: n * p / hw.hbm_bandwidth for op, n in WEIGHT_OP_BYTES.items()})
        times.append(t)
    boundary = 2.0 * s * h  # one sample's hidden states, bf16
    world = ranks * dp
    link = hw.node_link if ranks <= hw.per_node else hw.net_link
    dp_link = hw.node_link if world <= hw.per_node else hw.net_link
    base = CostModel(
        stage_times=tuple(times), default_times={}, unit="s",
        activation_bytes=tuple([boundary] * (L - 1) + [0.0]),
        grad_bytes=tuple([0.0] + [boundary] * (L - 1)),
        stored_activation_bytes=tuple(float(x) for x in stored),
        weight_bytes=tuple(float(WEIGHT_COPY_BYTES * p) for p in params),
        latency=link[0], bandwidth=link[1], origin=f"{model_name} on {hardware_name}")
    notes = (f"estimate: {model_name} ({L} layers, d_model {h}, seq {s}, vocab {V}) on "
             f"{hardware_name} ({hw.peak_flops / 1e12:g} TFLOP/s x {hw.achievable}), "
             "not a measurement (docs/tune.md)",)
    return Profile(base, 1, base.origin, kind="estimate",
                   static_bytes=tuple(float(STATIC_BYTES * p) for p in params),
                   max_stages=L, memory_bytes=hw.memory, dp_link=dp_link, seq_len=s,
                   notes=notes)
