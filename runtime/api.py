"""The Python API: train your own model, data and loss with compiled programs.

    import schedc.runtime as sr

    run = sr.Run("out/1f1b", build_stage=build_stage, loss=loss_fn, data=batches,
                  optimizer="adamw", lr=3e-4, micro_batch_size=8)
    for record in run.train(steps=100):      # one record per optimizer step
        print(record["step"], record["loss"], record["time_s"])

The same script runs in-process (every rank of the programs in this process)
and under torchrun (one process per rank, every process runs the script:
SPMD), with the same numbers bit for bit on CPU; `launcher="auto"` picks
torchrun when torchrun started the process.

- `build_stage(stage, num_stages) -> nn.Module`; or a list of layers / an
  `nn.Sequential` (split by parameter count: `split_layers`); or a built-in
  name (`gpt-tiny`) or `module:function`.
- `loss(output, targets) -> scalar tensor` (default: token cross-entropy).
- `data`: `data(j, seed) -> (inputs, targets[, side])`, an iterable of such
  tuples, a `.bin` token file or a text file (runtime/userdata.py).
- options: the fields of `RunConfig` (runtime/config.py): `steps`, `lr`,
  `optimizer`, `micro_batch_size`, `seq_len`, `seed`, `dp`, `metrics`, ...

A record is the metrics line of a step: `{"step", "loss", "tokens" (or
"samples" when the data has no tokens), "time_s"}`, yielded on the process
that writes metrics (`run.is_writer`: the last stage of pipeline 0); other
processes yield none. To own the loop: `run.step()` runs one body repetition
of the programs (one optimizer step of a synchronous schedule) and returns the
records that became complete; `run.close()` drains the pipeline and returns
the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from torch import nn

from .config import MAX_STEPS_ENV, RunConfig, _capped, _check
from .models import ModelDef, user_model
from .session import Session, Trainer
from .split import split_layers

__all__ = ["Run"]

LAUNCHERS = ("auto", "local", "torchrun")


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def _model(build_stage: object, loss: object, cfg: RunConfig) -> ModelDef | None:
    if build_stage is None and loss is None:
        return None  # cfg.model and cfg.loss, resolved by the launcher
    if isinstance(build_stage, (nn.Sequential, list, tuple)):
        build_stage = split_layers(build_stage)
    return user_model(cfg.model if build_stage is None else build_stage,
                      cfg.loss if loss is None else loss)


class Run:
    """A training run of compiled programs (see the module's docstring)."""

    def __init__(self, programs: str | Path | None = None, *, build_stage: object = None,
                 loss: object = None, data: object = None, launcher: str = "auto",
                 config: RunConfig | None = None, **options: object) -> None:
        if launcher not in LAUNCHERS:
            raise ValueError(f"launcher {launcher!r}: one of {', '.join(LAUNCHERS)}")
        if config is None:
            if programs is None:
                raise TypeError("Run needs the program directory (or config=RunConfig(...))")
            known = {f.name for f in fields(RunConfig)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise TypeError(f"unknown run options {unknown}; see RunConfig")
            config = RunConfig(programs=Path(programs), **options)  # type: ignore[arg-type]
            _check(config)
            config = _capped(config)  # SCHEDC_MAX_STEPS, as on the command line
        self.config = config
        model = _model(build_stage, loss, config)
        if launcher == "torchrun" or (launcher == "auto" and _under_torchrun()):
            from .launch import build_dist

            self.session: Session = build_dist(config, model, data)
        else:
            from .local import build_local

            self.session = build_local(config, model, data)
        self._trainer: Trainer | None = None

    # ---- where this process stands ------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """This process writes metrics and yields records."""
        return bool(self.session.control.is_writer)

    @property
    def records(self) -> list[dict]:
        """Every record so far (on the writer)."""
        return self._trainer.lines if self._trainer else []

    def modules(self) -> dict[tuple[int, int], nn.Module]:
        """(pipeline, stage) -> the module of every stage replica in this process,
        its parameters pointing at the current (master) weights."""
        out = {}
        for interp in self.session.interps.values():
            for key, replica in interp.replicas.items():
                replica.point_at(replica.version)
                out[key] = replica.module
        return out

    # ---- training -------------------------------------------------------------------
    def train(self, steps: int | None = None) -> Iterator[dict]:
        """Run `steps` body repetitions (default: the `steps` option) and drain;
        yields each step's record as soon as it is complete."""
        trainer = self._start(steps)
        while trainer.bodies_left > 0:
            yield from trainer.step()
        yield from trainer.close()

    def step(self) -> list[dict]:
        """One body repetition; the records that became complete."""
        return self._start(None).step()

    def close(self) -> list[dict]:
        """Drain the pipeline (an asynchronous schedule's epilogue), write the
        trace and cost profile if asked; the records that became complete."""
        return self._trainer.close() if self._trainer else []

    def _start(self, steps: int | None) -> Trainer:
        cap = os.environ.get(MAX_STEPS_ENV, "").strip()
        if steps is not None and cap.isdigit():
            steps = min(steps, int(cap))
        if self._trainer is None:
            self._trainer = Trainer(self.session, steps)
        elif self._trainer.closed:
            raise RuntimeError("this run is closed: make a new Run to train again")
        return self._trainer

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
