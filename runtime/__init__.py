"""The schedc runtime: executes program files (installed as schedc.runtime).

The Python API (runtime/api.py; docs/runtime.md has a complete example):

    import schedc.runtime as sr
    run = sr.Run("out/1f1b", build_stage=build_stage, loss=loss_fn, data=batches, lr=3e-4)
    for record in run.train(steps=100): ...

Names are imported on first use, so `import schedc.runtime.config` (done by
the `schedc` command at start) does not import torch.
"""

from __future__ import annotations

import importlib

if __name__ != "schedc.runtime":  # the folder is on sys.path when python starts in the repository
    raise ImportError("this folder installs as schedc.runtime: import schedc.runtime, not runtime")

__all__ = [
    "Batch", "ExecutionError", "Run", "RunConfig", "SplitError", "TokenFile", "UserError",
    "cross_entropy", "split_layers", "split_traced",
]

_HOME = {
    "Run": ".api", "RunConfig": ".config", "Batch": ".data", "TokenFile": ".userdata",
    "ExecutionError": ".interpreter", "SplitError": ".split", "split_layers": ".split",
    "split_traced": ".split", "cross_entropy": ".models",
}


def __getattr__(name: str) -> object:
    if name == "UserError":
        from schedc.errors import UserError

        return UserError
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
