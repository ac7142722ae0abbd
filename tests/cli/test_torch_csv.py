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
    ("interleaved-1f1b", 8, 4, 8),
])
def test_csv_loads_in_pytorch(preset: str, stages: int, ranks: int, m: int, tmp_path: Path):
    c = compile_spec(preset_spec(preset, stages=stages, ranks=ranks, microbatches=m))
    path = tmp_path / "s.csv"
    path.write_text(torch_csv(c.manifest, c.programs))
    rows = path.read_text().splitlines()
    assert len(rows) == ranks
    # Load on every rank's view: the schedule validates the whole order.
    stage_ids = [s for s in range(stages) if s % ranks == 0]
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
