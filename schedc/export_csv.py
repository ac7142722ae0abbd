"""Export synchronous single-pipeline programs as PyTorch's compute-only CSV.

One row per rank, one cell per compute op: `<stage><F|B|I|W><mb>` (e.g. `0F0`,
`1B3`), which `torch.distributed.pipelining` reads with `_load_csv`. Its
format has no weight versions and no concurrent pipelines, so asynchronous and
multi-directional programs are refused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from schedc.errors import UserError
from schedc.program import COMPUTE_OPS, Manifest, RankProgram


def torch_csv(manifest: Manifest, programs: Sequence[RankProgram]) -> str:
    if not manifest.synchronous:
        raise UserError("torch-csv: PyTorch's schedule format has no weight versions; "
                        "asynchronous programs (flush off) cannot be exported")
    if manifest.num_pipelines > 1:
        raise UserError("torch-csv: PyTorch's schedule format has one pipeline; this program "
                        f"has {manifest.num_pipelines} (each stage would appear on two ranks)")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for prog in programs:
        writer.writerow([f"{i.stage}{i.op}{i.mb}" for i in prog.body if i.op in COMPUTE_OPS])
    return out.getvalue()
