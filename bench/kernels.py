"""Achieved bandwidth of schedc's fused kernels, beside a device copy and unfused torch.

    python bench/kernels.py                     # GPU: 1 MB .. 1 GB; CPU: 1 MB .. 16 MB
    python bench/kernels.py --max-size 64MB --repeats 30 --only adamw
    python bench/kernels.py --threads 1         # CPU: steadier figures on a shared machine

A buffer size is the size of the stage's fp32 main buffer (weights or
accumulator): n = size / 4 elements. For each kernel and size the table gives
the budget bytes per element (``schedc.kernels.budget``), the fused kernel's
median time and achieved GB/s (budget bytes x n / time), the same run's
device-to-device copy ``dst.copy_(src)`` of an fp32 buffer of that size (8
bytes per element) and the fused kernel's share of it, and the best unfused
torch sequence's time and GB/s counted with the same budget bytes (so GB/s
ratios are speed ratios). Times are medians of ``--repeats`` samples after
warm-up; each sample times ``--launches`` back-to-back launches between two CUDA
events on a GPU (so host overhead between launches is hidden, as in training)
and divides by their number. Where the host cannot queue launches as fast as the
GPU runs them (small buffers, a slow host), that still times the host: with
``--graph`` each sample replays the launches captured once in a CUDA graph, which
times the kernels alone (torch's optimizers are then made ``capturable``).

On CPU the public functions run their torch twins (Triton's interpreter if
TRITON_INTERPRET=1, far slower still): CPU figures show the harness works and
are not the target. The targets are on H100/H200: at least 90% of copy
bandwidth from 64 MB up, and the fused AdamW step with stash strictly faster
than both ``AdamW(fused=True)`` and the foreach sequence followed by a stash copy.
"""

from __future__ import annotations

import argparse
import inspect
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from schedc.kernels import (
    accumulate,
    adamw_step,
    adamw_step_ref,
    budget,
    copy_,
    sgd_step,
    swap_,
    use_triton,
)

MB = 1 << 20
SHORT = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
SGD = dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.01)
# --graph: torch's optimizers are captured too, which needs their capturable variant
CAPTURABLE = {"value": False}


@dataclass
class Case:
    """One kernel at one size: the fused call, its unfused rivals, its byte budget."""

    name: str
    bytes_per_elem: int
    fused: Callable[[], object]
    unfused: dict[str, Callable[[], object]]


def _bufs(n: int, device: str, count: int, dtype=torch.float32) -> list[torch.Tensor]:
    return [torch.rand(n, device=device, dtype=dtype) for _ in range(count)]


def _torch_optimizer(cls, p: torch.Tensor, g: torch.Tensor, **kw) -> torch.optim.Optimizer | None:
    """A torch optimizer over one flat parameter, or None where this torch lacks the variant."""
    param = torch.nn.Parameter(p.clone())
    param.grad = g
    if CAPTURABLE["value"] and "capturable" in inspect.signature(cls).parameters:
        kw = kw | {"capturable": True}
    try:
        opt = cls([param], **kw)
        opt.step()  # creates state, and fails here if the variant is unsupported
    except (RuntimeError, ValueError, TypeError):
        return None
    return opt


def _with_stash(stash: torch.Tensor | None, opt: torch.optim.Optimizer) -> Callable[[], object]:
    if stash is None:
        return opt.step
    param = opt.param_groups[0]["params"][0]

    def run():
        stash.copy_(param.detach())
        opt.step()

    return run


def _optimizer_rivals(cls, p, g, hp, stash=None) -> dict[str, Callable[[], object]]:
    """torch's fused and foreach variants of ``cls`` (each followed by a stash copy)."""
    rivals = {}
    for variant in ("fused", "foreach"):
        opt = _torch_optimizer(cls, p, g, **{variant: True}, **hp)
        if opt is not None:
            name = f"{cls.__name__}({variant}=True)" + ("+stash copy" if stash is not None else "")
            rivals[name] = _with_stash(stash, opt)
    return rivals


def accumulate_cases(n: int, device: str) -> list[Case]:
    acc = torch.zeros(n, device=device)
    cases = []
    for dtype in (torch.bfloat16, torch.float32):
        (g,) = _bufs(n, device, 1, dtype)
        name = f"accumulate {SHORT[dtype]}"
        cases.append(Case(name, budget.accumulate_bytes(dtype),
                          lambda g=g: accumulate(acc, g, 0.5),
                          {"acc.add_(g, alpha=s)": lambda g=g: acc.add_(g, alpha=0.5)}))
    (g,) = _bufs(n, device, 1, torch.bfloat16)

    def unfused_norm_zero():
        acc.add_(g, alpha=0.5)
        sq = torch.linalg.vector_norm(g, dtype=torch.float32).square() * 0.25
        g.zero_()
        return sq

    cases.append(Case("accumulate bf16 +zero +sqnorm", budget.accumulate_bytes(g.dtype, True),
                      lambda: accumulate(acc, g, 0.5, zero_source=True, return_sqnorm=True),
                      {"add_, vector_norm, zero_": unfused_norm_zero}))
    return cases


def adamw_cases(n: int, device: str) -> list[Case]:
    p, g, m, v, stash, la, gp = _bufs(n, device, 7)
    step = lambda **kw: adamw_step(p, g, m, v, step=10, **ADAMW, **kw)
    everything = dict(stash_out=stash, lookahead_out=la, lookahead_alpha=0.5,
                      ef_prev_grad=gp, ef_lambda=0.1)
    chained = lambda: adamw_step_ref(p, g, m, v, step=10, **ADAMW, **everything)
    return [
        Case("adamw", budget.adamw_bytes(), step,
             _optimizer_rivals(torch.optim.AdamW, p, g, ADAMW)),
        Case("adamw +stash", budget.adamw_bytes(stash=torch.float32),
             lambda: step(stash_out=stash),
             _optimizer_rivals(torch.optim.AdamW, p, g, ADAMW, stash)),
        Case("adamw +stash +lookahead +ef",
             budget.adamw_bytes(stash=4, lookahead=4, error_feedback=True),
             lambda: step(**everything), {"chained torch ops (twin)": chained}),
    ]


def training_step_cases(n: int, device: str) -> list[Case]:
    """The runtime's STEP after a STASH: one fused launch (stash, 1/count, AdamW; the
    next ACC overwrites the accumulator) against the four launches it replaced."""
    p, acc, m, v, stash = _bufs(n, device, 5)
    count = 8.0

    def four_launches():
        stash.copy_(p)
        acc.div_(count)
        adamw_step(p, acc, m, v, step=10, **ADAMW)
        acc.zero_()

    return [Case("STEP adamw +stash +1/count", budget.adamw_bytes(stash=torch.float32),
                 lambda: adamw_step(p, acc, m, v, step=10, **ADAMW, stash_out=stash,
                                    grad_div=count),
                 {"copy, div_, adamw, zero_ (before)": four_launches})]


def sgd_cases(n: int, device: str) -> list[Case]:
    p, g, buf, stash = _bufs(n, device, 4)
    return [Case("sgd nesterov +stash", budget.sgd_bytes(stash=torch.float32),
                 lambda: sgd_step(p, g, buf, stash_out=stash, **SGD),
                 _optimizer_rivals(torch.optim.SGD, p, g, SGD, stash))]


def version_cases(n: int, device: str) -> list[Case]:
    src, a, b, tmp = _bufs(n, device, 4)
    dst = torch.empty(n, device=device, dtype=torch.bfloat16)

    def swap_through_tmp():
        tmp.copy_(a)
        a.copy_(b)
        b.copy_(tmp)

    return [
        Case("copy fp32->bf16", budget.copy_bytes(dst.dtype, src.dtype),
             lambda: copy_(dst, src), {"dst.copy_(src)": lambda: dst.copy_(src)}),
        Case("swap fp32", budget.swap_bytes(a.dtype),
             lambda: swap_(a, b), {"3 copies via tmp": swap_through_tmp}),
    ]


CASE_BUILDERS = [accumulate_cases, adamw_cases, training_step_cases, sgd_cases, version_cases]


def _graphed(fn: Callable[[], object], launches: int) -> Callable[[], object]:
    """`launches` calls of fn captured once in a CUDA graph: one replay runs them all."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch asks
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(launches):
            fn()
    return graph.replay


def median_seconds(fn: Callable[[], object], device: str, repeats: int, warmup: int = 3,
                   launches: int = 1, graph: bool = False) -> float:
    """Median seconds per call: each of `repeats` samples times `launches` calls
    back to back (CUDA events on a GPU; replayed from one CUDA graph with `graph`)
    and divides by their number."""
    for _ in range(warmup):
        fn()
    on_gpu = device.startswith("cuda")
    batch = _graphed(fn, launches) if graph and on_gpu else None
    times = []
    for _ in range(repeats):
        if on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            if batch is not None:
                batch()
            else:
                for _ in range(launches):
                    fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / launches)
        else:
            t0 = time.perf_counter()
            for _ in range(launches):
                fn()
            times.append((time.perf_counter() - t0) / launches)
    return statistics.median(times)


def copy_gbps(n: int, device: str, repeats: int, launches: int = 1, graph: bool = False
              ) -> float:
    src, dst = _bufs(n, device, 2)
    seconds = median_seconds(lambda: dst.copy_(src), device, repeats, launches=launches,
                             graph=graph)
    return 8 * n / seconds / 1e9


def parse_size(text: str) -> int:
    """'64MB', '1GB', '512KB' or a byte count -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 64MB or 1GB")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]


def sizes(min_size: int, max_size: int) -> list[int]:
    out, size = [], min_size
    while size <= max_size:
        out.append(size)
        size *= 4
    return out


def _fmt_size(size: int) -> str:
    return f"{size >> 30} GB" if size >= 1 << 30 else f"{size >> 20} MB" if size >= MB else (
        f"{size >> 10} KB")


def run(args: argparse.Namespace) -> list[dict]:
    copy_gbps(args.min_size // 4, args.device, args.repeats)  # wake threads, allocator, clocks
    rows = []
    for size in sizes(args.min_size, args.max_size):
        n = size // 4
        copy_bw = copy_gbps(n, args.device, args.repeats, args.launches, args.graph)
        for build in CASE_BUILDERS:
            for case in build(n, args.device):
                if args.only and not any(s in case.name for s in args.only.split(",")):
                    continue
                rows.append(measure(case, n, size, copy_bw, args))
                print_row(rows[-1])
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def measure(case: Case, n: int, size: int, copy_bw: float, args: argparse.Namespace) -> dict:
    gbps = lambda seconds: case.bytes_per_elem * n / seconds / 1e9
    timed = lambda fn: median_seconds(fn, args.device, args.repeats, launches=args.launches,
                                      graph=args.graph)
    fused_s = timed(case.fused)
    rivals = {name: timed(fn) for name, fn in case.unfused.items()}
    best = min(rivals, key=rivals.get) if rivals else None
    return dict(kernel=case.name, size=size, bytes=case.bytes_per_elem, fused_s=fused_s,
                fused_gbps=gbps(fused_s), copy_gbps=copy_bw, of_copy=gbps(fused_s) / copy_bw,
                unfused=best, unfused_s=rivals.get(best), all_unfused=rivals,
                unfused_gbps=gbps(rivals[best]) if best else None)


HEADER = (f"{'kernel':30} {'size':>7} {'B/el':>4} {'fused ms':>9} {'GB/s':>8} {'copy GB/s':>9} "
          f"{'of copy':>7} {'unfused GB/s':>12} {'speedup':>7}  best unfused")


def print_row(r: dict) -> None:
    unfused = (f"{r['unfused_gbps']:12.1f} {r['unfused_s'] / r['fused_s']:6.2f}x  {r['unfused']}"
               if r["unfused"] else f"{'-':>12} {'-':>7}")
    print(f"{r['kernel']:30} {_fmt_size(r['size']):>7} {r['bytes']:4d} {r['fused_s'] * 1e3:9.3f} "
          f"{r['fused_gbps']:8.1f} {r['copy_gbps']:9.1f} {r['of_copy']:7.0%} {unfused}", flush=True)


def print_headline(rows: list[dict]) -> None:
    big = [r for r in rows if r["size"] >= 64 * MB]
    if big:
        worst = min(big, key=lambda r: r["of_copy"])
        print(f"\nworst share of copy bandwidth at >= 64 MB: {worst['of_copy']:.0%} "
              f"({worst['kernel']}, {_fmt_size(worst['size'])}); target >= 90%")
    for kernel in ("adamw +stash", "STEP adamw +stash +1/count"):
        found = [r for r in rows if r["kernel"] == kernel]
        if not found:
            continue
        r = found[-1]
        for name, seconds in r["all_unfused"].items():
            print(f"{kernel} at {_fmt_size(r['size'])}: fused is "
                  f"{seconds / r['fused_s']:.2f}x the speed of {name}")


def describe(device: str) -> str:
    impl = "Triton" if use_triton(torch.empty(1, device=device)) else "torch twins"
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, fused = {impl}"
    note = "CPU figures are not the target (GPU: H100/H200)"
    return f"CPU, torch threads={torch.get_num_threads()}, fused = {impl}; {note}"


def main(argv: list[str] | None = None) -> list[dict]:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if gpu else "cpu")
    ap.add_argument("--min-size", type=parse_size, default=MB)
    ap.add_argument("--max-size", type=parse_size, default=None,
                    help="largest fp32 buffer (default 1GB on GPU, 16MB on CPU)")
    ap.add_argument("--repeats", type=int, default=None, help="timed samples per median")
    ap.add_argument("--launches", type=int, default=None,
                    help="back-to-back launches per sample (default 20 on GPU, 1 on CPU)")
    ap.add_argument("--graph", action="store_true",
                    help="GPU: replay each sample's launches from a CUDA graph (kernel time "
                         "without host launch overhead)")
    ap.add_argument("--only", default="", help="comma-separated substrings of kernel names")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (1 is steadier on a shared machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = args.device.startswith("cuda")
    args.max_size = args.max_size or (1 << 30 if on_gpu else 16 * MB)
    args.repeats = args.repeats or (20 if on_gpu else 10)
    args.launches = args.launches or (20 if on_gpu else 1)
    args.graph = args.graph and on_gpu
    CAPTURABLE["value"] = args.graph
    how = "launches replayed from a CUDA graph" if args.graph else "back-to-back launches"
    print(f"# schedc kernels: {describe(args.device)}; torch {torch.__version__}; "
          f"median of {args.repeats} samples of {args.launches} {how}")
    print(HEADER)
    rows = run(args)
    print_headline(rows)
    return rows


if __name__ == "__main__":
    main()
