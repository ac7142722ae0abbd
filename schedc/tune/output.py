"""What `schedc tune -o DIR` writes: the best candidate's verified programs,
its cost model (so `schedc simulate DIR --costs DIR/costs.json` reproduces the
prediction), and the whole table as DIR/tune.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from schedc.files import write_programs
from schedc.simulate.costs import FORMAT as COSTS_FORMAT
from schedc.simulate.costs import VERSION as COSTS_VERSION
from schedc.simulate.costs import CostModel
from schedc.tune.cache import CompileCache
from schedc.tune.evaluate import candidate_costs, compile_candidate
from schedc.tune.search import Result
from schedc.tune.table import to_json

TABLE, COSTS = "tune.json", "costs.json"


def write_outputs(result: Result, out: str | Path, cache: CompileCache | None = None
                  ) -> Path:
    """DIR/tune.json always; the programs and costs.json when a candidate fits."""
    out = Path(out)
    best = result.best
    if best is not None:
        manifest, programs = compile_candidate(best.candidate, result.query.ranks, cache)
        write_programs(out, manifest, programs)
        costs = candidate_costs(best.candidate, result.query, result.profile)
        source = {"tune": f"{best.candidate.label()}: {result.profile.origin} scaled to "
                          f"{best.stages} stages, micro-batch {best.mb_size}"}
        (out / COSTS).write_text(json.dumps(costs_to_dict(costs, source), indent=1) + "\n")
    else:
        out.mkdir(parents=True, exist_ok=True)
    (out / TABLE).write_text(json.dumps(to_json(result), indent=1) + "\n")
    return out


def costs_to_dict(costs: CostModel, source: dict[str, Any]) -> dict[str, Any]:
    """A `schedc-costs` profile (docs/costs.md) of a per-stage cost model."""
    data: dict[str, Any] = {"format": COSTS_FORMAT, "version": COSTS_VERSION,
                            "unit": costs.unit, "source": source,
                            "stages": [dict(sorted(t.items())) for t in costs.stage_times]}
    for key, values in (("activation_bytes", costs.activation_bytes),
                        ("grad_bytes", costs.grad_bytes),
                        ("stored_activation_bytes", costs.stored_activation_bytes),
                        ("weight_bytes_per_stage", costs.weight_bytes)):
        if values is not None:
            data[key] = list(values)
    link: dict[str, float] = {"latency": costs.latency}
    if not math.isinf(costs.bandwidth):
        link["bandwidth"] = costs.bandwidth
    if getattr(costs, "link_cpu", 0.0):
        link["cpu"] = costs.link_cpu
    data["link"] = link
    # Fields of newer profiles, written when the model has them set (docs/costs.md).
    overhead = {key: getattr(costs, attr, 0.0) for key, attr in
                (("instruction", "overhead"), ("message", "message_overhead"))}
    if any(overhead.values()):
        data["overhead"] = overhead
    for key in ("cores", "comm"):
        if getattr(costs, key, None) is not None:
            data[key] = getattr(costs, key)
    host = {key: getattr(costs, key) for key, unset in (("background", 0.0),
                                                        ("efficiency", 1.0))
            if getattr(costs, key, unset) != unset}
    if host:
        data["host"] = host
    if getattr(costs, "notes", None):
        data["derived"] = dict(costs.notes)
    return data
