"""The exported CSV loads in torch.distributed.pipelining and passes its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedc.compiler import compile_spec
from schedc.export_csv import torch_csv
from schedc.presets import preset_spec

torch = pytest.importorskip("torch")
schedules = pytest.importorskip("torch.distributed.pipelining.schedules")


class _Stage:
    """Just what a multi-stage schedule's constructor reads."""

    def __init__(self, index: int, num_stages: int, ranks: int) -> None:
        self.stage_index = index
        self.num_stages = num_stages
        self.group_rank = 0
        self.group_size = ranks
        self.is_first = index == 0
        self.is_last = index == num_stages - 1
        self.has_backward = True
        self.submod = torch.nn.Linear(2, 2)


@pytest.mark.parametrize("preset,stages,ranks,m", [
    ("gpipe", 4, 4, 8), ("1f1b", 4, 4, 8), ("1f1b", 4, 4, 2), ("zb-h1", 4, 4, 8),
    ("interleaved-1f1b", 8, 4, 8), ("zbv", 8, 4, 8), ("zbv", 6, 3, 4),
])
def test_csv_loads_in_pytorch(preset: str, stages: int, ranks: int, m: int, tmp_path: Path):
    c = compile_spec(preset_spec(preset, stages=stages, ranks=ranks, microbatches=m))
    path = tmp_path / "s.csv"
    path.write_text(torch_csv(c.manifest, c.programs))
    rows = path.read_text().splitlines()
    assert len(rows) == ranks
    # Load on every rank's view: the schedule validates the whole order.
    stage_ids = [0, stages - 1] if preset == "zbv" else [s for s in range(stages)
                                                          if s % ranks == 0]
    sched = schedules._PipelineScheduleRuntime(
        [_Stage(s, stages, ranks) for s in stage_ids], n_microbatches=m)
    sched._load_csv(str(path))
    assert len(sched.pipeline_order) == ranks
    assert str(sched.pipeline_order[0][0]) == "0F0"


def test_canonical_1f1b_rows():
    c = compile_spec(preset_spec("1f1b", stages=4, microbatches=8))
    rows = torch_csv(c.manifest, c.programs).splitlines()
    assert rows[3] == ",".join(f"3F{j},3B{j}" for j in range(8))
    assert rows[0].startswith("0F0,0F1,0F2,0F3,0B0,0F4,0B1")


_TORCH_KIND = {"FORWARD": "F", "BACKWARD_INPUT": "I", "BACKWARD_WEIGHT": "W",
               "FULL_BACKWARD": "B"}


@pytest.mark.parametrize("p,m", [(2, 4), (3, 6), (4, 8), (4, 5)])
def test_zbv_is_no_worse_than_pytorchs_zbv(p: int, m: int) -> None:
    """Same p and m, unit costs, our simulator for both: schedc's zbv preset has no
    more bubble than torch's ScheduleZBVZeroBubble, and no more peak activations."""
    from schedc.simulate import figures, simulate
    from schedc.simulate.compute_only import programs_from_orders

    theirs = schedules.ScheduleZBVZeroBubble([_Stage(0, 2 * p, p), _Stage(2 * p - 1, 2 * p, p)],
                                             n_microbatches=m)
    orders = [[(a.stage_index, _TORCH_KIND[a.computation_type.name], a.microbatch_index)
               for a in theirs.pipeline_order[r] if a is not None] for r in range(p)]
    torch_fig = figures(simulate(*programs_from_orders(orders)))
    c = compile_spec(preset_spec("zbv", stages=2 * p, microbatches=m))
    ours = c.manifest.analysis
    assert c.manifest.stage_to_rank == (tuple(range(p)) + tuple(reversed(range(p))),)
    assert ours["bubble_ratio"] <= torch_fig.bubble_ratio + 1e-12
    assert max(r["peak_activations"] for r in ours["ranks"]) <= max(
        r.peak_activations for r in torch_fig.ranks)
    assert figures(simulate(c.manifest, list(c.programs))).bubble_ratio == \
        pytest.approx(ours["bubble_ratio"], abs=1e-12)
