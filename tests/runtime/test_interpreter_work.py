"""The work each instruction does, counted (never timed): matrix products per
F/B/I/W by the torch profiler, and gradient buffers per micro-batch.

- ZB-H1: I + W is B's matrix products on every stage. On stage 0 (no input
  gradient) I runs the whole backward, where the zero-bubble order has its
  steady-state slot, and W does nothing.
- A backward whose ACC is the next compute adds into the accumulator itself on
  the host path: no per-micro-batch gradient buffer, no ACC pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch
from instr_regions import label_instructions
from runtime_testing import compile_preset, config
from schedc.runtime.local import build_local
from schedc.runtime.session import train

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
STEPS = 2


@pytest.fixture
def regions(monkeypatch):
    """Every compute instruction runs in a profiler region `instr::<op>:<stage>`."""
    label_instructions(monkeypatch, lambda instr: f"instr::{instr.op}:{instr.stage}")


def _matmuls(tmp_path, preset: str) -> dict[str, list[int]]:
    """'op:stage' -> matrix products of each execution (autograd's included)."""
    d = compile_preset(tmp_path / preset, preset, 2, 4)
    session = build_local(config(d, "--steps", str(STEPS)))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(session)
    events = prof.events()
    regions, counts = {}, Counter()
    for ev in events:
        if ev.name.startswith("instr::"):
            regions[ev.id] = ev.name.removeprefix("instr::")
            counts[ev.id] += 0
    for ev in events:
        if ev.name not in MATMULS:
            continue
        parent = ev.cpu_parent
        while parent is not None and parent.id not in regions:
            parent = parent.cpu_parent
        if parent is not None:
            counts[parent.id] += 1
    out: dict[str, list[int]] = defaultdict(list)
    for rid, name in regions.items():
        out[name].append(counts[rid])
    return out


def test_zb_h1_i_plus_w_is_b_on_every_stage(tmp_path, regions):
    b = _matmuls(tmp_path, "1f1b")
    zb = _matmuls(tmp_path, "zb-h1")
    for s in (0, 1):
        (per_b,) = set(b[f"B:{s}"])
        (per_i,) = set(zb[f"I:{s}"])
        (per_w,) = set(zb[f"W:{s}"])
        assert per_b > 0 and per_i + per_w == per_b, (s, per_i, per_w, per_b)
        assert set(zb[f"F:{s}"]) == set(b[f"F:{s}"])
    assert set(zb["W:0"]) == {0}  # stage 0: I was the whole backward
    assert set(zb["I:1"]) != {0} and set(zb["W:1"]) != {0}  # stage 1: really split


def test_backward_adds_into_the_accumulator(tmp_path):
    """1F1B: every B's ACC comes next, so no micro-batch gets a gradient buffer;
    ZB-H1's stage 0 (I long before its ACC) still uses them, its stage 1 (W then
    ACC) does not."""
    for preset, buffers in (("1f1b", {0: False, 1: False}), ("zb-h1", {0: True, 1: False})):
        d = compile_preset(tmp_path / preset, preset, 2, 4)
        session = build_local(config(d, "--steps", str(STEPS)))
        train(session)
        for rank, interp in session.interps.items():
            (replica,) = interp.replicas.values()
            assert not replica.pending and not replica.direct_mbs
            assert bool(replica._grad_pool) == buffers[rank], (preset, rank)
