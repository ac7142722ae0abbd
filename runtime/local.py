"""In-process runs: every rank's program in one process (`schedc run DIR --local`).

    schedc run out/1f1b --local --model gpt-tiny --steps 20

The reference for distributed runs (same numbers, bit for bit, on CPU), the
fast path for tests, and a single-device mode.
"""

from __future__ import annotations

from schedc.errors import UserError

from .config import RunConfig
from .driver import LocalDriver
from .inprocess import Hub, LocalTransport
from .models import ModelDef
from .preflight import preflight
from .session import Session
from .setup import pick_device, prepare
from .wiring import build_interpreter


class _LocalControl:
    is_writer = True
    is_rank0 = True

    def gather(self, obj: object) -> list:
        return [obj]

    def barrier(self) -> None:
        return None


def build_local(cfg: RunConfig, model: ModelDef | None = None, data: object = None
                ) -> Session:
    """Every rank of the programs in this process. `model` / `data`: the Python
    API's objects (default: resolved from cfg)."""
    if cfg.dp != 1:
        raise UserError("--dp needs one process per rank: launch with torchrun")
    p = prepare(cfg, model, data)
    preflight(p)
    device = pick_device(cfg)
    hub = Hub(p.manifest)
    interps = {r: build_interpreter(p, r, LocalTransport(hub, r), device)
               for r in range(p.manifest.world_size)}
    return Session(cfg, p.manifest, p.programs, interps, lambda r: r, 0, _LocalControl(),
                   LocalDriver(interps), p.boundaries, p.meta, p.stage_numels, p.unit,
                   p.per_microbatch)


def run_local(cfg: RunConfig) -> list[dict]:
    """Train in-process (`schedc run --local`, through the Python API); returns
    the metrics lines."""
    from .api import Run

    return list(Run(config=cfg, launcher="local").train())
