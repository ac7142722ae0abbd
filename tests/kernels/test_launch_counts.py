"""A training STEP is one fused launch and an ACC is one launch, counted with the
torch profiler on CPU.

Triton's interpreter (TRITON_INTERPRET=1, set for these tests) runs the kernels
on CPU, and every kernel launch is marked `schedc::<kernel>` for the profiler;
any other top-level torch op that computes (not a view or an allocation) would
be a launch of its own on a GPU. Each instruction runs inside a profiler region
named after its op, so launches are counted per instruction.
"""

from __future__ import annotations

import argparse
from collections import Counter

import pytest
import torch
from instr_regions import label_instructions
from kernel_testing import triton_on_cpu
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.local import build_local
from schedc.runtime.session import train

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec

# Ops that move no data on a device: views, metadata, allocation.
NOT_LAUNCHES = {
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::view", "aten::as_strided",
    "aten::slice", "aten::select", "aten::detach", "aten::alias", "aten::reshape",
    "aten::_reshape_alias", "aten::lift_fresh", "aten::resolve_conj", "aten::resolve_neg",
    "aten::t", "aten::transpose", "aten::expand", "aten::unsqueeze", "aten::squeeze",
    "aten::narrow", "aten::view_as", "aten::detach_", "aten::set_",
}
TINY = ["--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16", "--threads", "1",
        "--quiet", "--lr", "0.01"]


def _is_launch(ev) -> bool:
    return ev.name.startswith("schedc::") or (
        ev.name.startswith("aten::") and ev.name not in NOT_LAUNCHES)


def _launches_per_op(prof) -> dict[str, list[int]]:
    """op -> launches of each of its executions (a launch nested in another isn't counted)."""
    regions = {}
    counts: dict[int, int] = Counter()
    for ev in prof.events():
        if ev.name.startswith("instr::"):
            regions[ev.id] = ev.name.removeprefix("instr::")
            counts[ev.id] += 0
    for ev in prof.events():
        if not _is_launch(ev):
            continue
        parent, region, nested = ev.cpu_parent, None, False
        while parent is not None:
            if parent.id in regions:
                region = parent.id
                break
            nested = nested or _is_launch(parent)
            parent = parent.cpu_parent
        if region is not None and not nested:
            counts[region] += 1
    out: dict[str, list[int]] = {}
    for rid, op in regions.items():
        out.setdefault(op, []).append(counts[rid])
    return out


@pytest.fixture
def profiled_execute(monkeypatch):
    label_instructions(monkeypatch, lambda instr: f"instr::{instr.op}")


def _count(tmp_path, preset: str, *extra: str) -> dict[str, list[int]]:
    compiled = compile_spec(preset_spec(preset, stages=2, microbatches=4).validate())
    d = write_programs(tmp_path / preset, compiled.manifest, compiled.programs)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    session = build_local(config_from_args(parser.parse_args(
        [str(d), *TINY, "--steps", "2", *extra])))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(session)
    return _launches_per_op(prof)


needs_triton = pytest.mark.skipif(not triton_on_cpu(), reason="needs Triton's interpreter")


@needs_triton
@pytest.mark.parametrize("preset", ["1f1b", "pipedream-2bw"])
def test_step_and_acc_are_one_launch_each(tmp_path, profiled_execute, preset):
    counts = _count(tmp_path, preset)
    assert counts["STEP"] and set(counts["STEP"]) == {1}, counts["STEP"]
    assert counts["ACC"] and set(counts["ACC"]) == {1}, counts["ACC"]
    if preset == "pipedream-2bw":  # every STASH is written by the STEP right after it
        assert counts["STASH"] and set(counts["STASH"]) == {0}, counts["STASH"]


@needs_triton
def test_sgd_step_is_one_launch(tmp_path, profiled_execute):
    counts = _count(tmp_path, "1f1b", "--optimizer", "sgd", "--momentum", "0.9")
    assert set(counts["STEP"]) == {1} and set(counts["ACC"]) == {1}
