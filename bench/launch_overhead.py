"""Host time of one fused-kernel call, the launch itself left out: what the Python
layers around a Triton launch cost (checks, dispatch, the profiler mark).

    python bench/launch_overhead.py              # CPU is enough: no kernel runs

On a GPU the host must queue launches faster than the kernels run, or back-to-back
small launches time the host (BENCHMARKS.md, "H200"). Here every kernel's launch
(`kernel[grid](...)`) is a no-op and every public function takes the Triton path,
so each figure is the wrappers' own cost per call: median over `--repeats` runs
of `--calls` calls, with torch's `add_` on 16 elements as a yardstick of one
plain torch call.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable

import torch


class _NoLaunch:
    """Stands for a @triton.jit kernel: `kernel[grid](...)` does nothing."""

    def __getitem__(self, grid: object) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _stub_launches() -> None:
    for name, kernels in (("_tl_accumulate", ("_accumulate_kernel",)),
                          ("_tl_optim", ("_adamw_kernel", "_sgd_kernel"))):
        module = importlib.import_module(f"schedc.kernels.{name}")
        for kernel in kernels:
            setattr(module, kernel, _NoLaunch())
    for name in ("accumulate", "optim_step"):
        importlib.import_module(f"schedc.kernels.{name}").use_triton = lambda *t: True


def cases() -> dict[str, Callable[[], object]]:
    from schedc.kernels import accumulate, adamw_step

    n = 1 << 16
    p, g, m, v, stash, acc = (torch.zeros(n) for _ in range(6))
    g16 = torch.zeros(n, dtype=torch.bfloat16)
    small = torch.zeros(16)
    hp = dict(step=10, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    return {
        "accumulate bf16": lambda: accumulate(acc, g16, 0.5),
        "adamw_step": lambda: adamw_step(p, g, m, v, **hp),
        "STEP (adamw +stash +1/count)": lambda: adamw_step(p, acc, m, v, **hp, stash_out=stash,
                                                           grad_div=8.0),
        "torch add_ (16 elements)": lambda: small.add_(small, alpha=0.5),
    }


def per_call_us(fn: Callable[[], object], calls: int, repeats: int) -> list[float]:
    for _ in range(100):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    _stub_launches()
    medians = {}
    print(f"{'call':30} {'us/call (median)':>17}  spread")
    for name, fn in cases().items():
        times = per_call_us(fn, a.calls, a.repeats)
        medians[name] = statistics.median(times)
        print(f"{name:30} {medians[name]:17.1f}  {min(times):.1f}-{max(times):.1f}")
    return medians


if __name__ == "__main__":
    main()
