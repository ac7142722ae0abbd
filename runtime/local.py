"""In-process runs: every rank's program in one process (`schedc run DIR --local`).

    schedc run out/1f1b --local --model gpt-tiny --steps 20

The reference for distributed runs (same numbers, bit for bit, on CPU), the
fast path for tests, and a single-device mode.
"""

from __future__ import annotations

from schedc.errors import UserError

from .build import build_replicas
from .config import RunConfig
from .inprocess import Hub, LocalTransport, run_cooperatively
from .interpreter import Interpreter
from .preflight import preflight
from .session import Session, train
from .setup import make_batches, pick_device, prepare


class _LocalControl:
    is_writer = True
    is_rank0 = True

    def gather(self, obj: object) -> list:
        return [obj]

    def barrier(self) -> None:
        return None


def build_local(cfg: RunConfig) -> Session:
    if cfg.dp != 1:
        raise UserError("--dp needs one process per rank: launch with torchrun")
    p = prepare(cfg)
    preflight(p)
    device = pick_device(cfg)
    hub = Hub(p.manifest)
    batches = make_batches(p, 0)
    timing = cfg.trace is not None or cfg.costs_out is not None
    m = p.manifest.period.microbatches // p.manifest.period.steps
    interps = {
        r: Interpreter(r, build_replicas(r, p.manifest, p.model, cfg, device),
                       LocalTransport(hub, r), batches, p.model.loss, p.manifest.num_stages,
                       timing=timing, on_nan=cfg.on_nan, step_microbatches=m,
                       body_len=len(p.programs[r].body) if cfg.on_nan == "skip" else 0)
        for r in range(p.manifest.world_size)
    }

    def run_streams(streams: dict) -> None:
        runs = {r: interps[r].run(stream) for r, stream in streams.items()}
        run_cooperatively(runs, lambda r: interps[r].progress())

    return Session(cfg, p.manifest, p.programs, interps, lambda r: r, 0, _LocalControl(),
                   run_streams, p.boundaries, p.meta, p.stage_numels)


def run_local(cfg: RunConfig) -> list[dict]:
    """Train in-process; returns the metrics lines."""
    return train(build_local(cfg))
