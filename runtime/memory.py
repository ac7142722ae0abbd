"""Device memory: the measured peak of a run beside the compiler's prediction.

The compiler predicts, per rank, the peak number of micro-batches whose
activations are alive (`peak_activations`) and of weight copies held
(`weight_copies`: current, stashes, look-ahead) -- the manifest's analysis.
A GPU run measures the peak bytes the caching allocator handed out
(`torch.cuda.max_memory_allocated`). Both go into the cost profile
(`--costs-out`, field `source.memory`) and the measured peak into every `--metrics`
line (`peak_mem_bytes`, CUDA only). On CPU there is no device allocator to ask:
the measured peak is `null`, the predicted figures are still written.
"""

from __future__ import annotations

import torch

from schedc.program import Manifest

__all__ = ["memory_report", "peak_device_bytes"]


def peak_device_bytes(device: torch.device | None = None) -> int | None:
    """Peak bytes allocated on this process's CUDA device so far; None off CUDA."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    if device is not None and device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


def memory_report(manifest: Manifest, measured: dict[int, int | None],
                  stage_numels: list[int]) -> list[dict]:
    """Per program rank: the predicted peaks (micro-batches alive, weight copies, and
    the weight bytes those copies take, fp32 master weights) and the measured peak."""
    ranks = manifest.analysis.get("ranks", [])
    out = []
    for r in range(manifest.world_size):
        fig = ranks[r] if r < len(ranks) else {}
        stages = [s for _, s in fig.get("stages", [])]
        copies = fig.get("weight_copies")
        weight_bytes = 4 * sum(stage_numels[s] for s in stages) if stages else None
        out.append({
            "rank": r,
            "predicted_peak_activations": fig.get("peak_activations"),
            "predicted_weight_copies": copies,
            "predicted_weight_bytes": None if weight_bytes is None or copies is None
            else weight_bytes * copies // max(1, len(stages)),
            "measured_peak_bytes": measured.get(r),
        })
    return out
