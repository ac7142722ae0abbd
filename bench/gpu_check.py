"""The runtime on one GPU: every preset against the CPU run, and step times against
plain single-GPU training. Part of `bench/gpu_check.sh` (which also runs the
compiled kernel tests and bench/kernels.py).

    python bench/gpu_check.py                 # on a CUDA machine
    python bench/gpu_check.py --dry-run       # CPU, tiny: checks the script itself (CI)

1. presets: every preset compiled for 2 stages, run in-process on CUDA and on
   CPU for the same steps; prints the largest loss and weight differences and
   `ok` when within tolerance (GPU matrix products round differently from CPU
   ones, so not bit for bit).
2. step time: in-process on CUDA (every stage on the one GPU), median step time
   of 1F1B, ZB-H1 and PACI against plain training of the same model (all
   stages chained, gradient accumulation over the same micro-batches,
   `torch.optim.AdamW(fused=True)`); prints `1f1b/plain X`, `zb-h1/plain X`,
   `paci/plain X`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from schedc.runtime.build import build_stage_module
from schedc.runtime.config import add_run_arguments, config_from_args
from schedc.runtime.local import build_local
from schedc.runtime.session import train
from schedc.runtime.setup import make_batches, prepare

from schedc.compiler import compile_spec
from schedc.files import write_programs
from schedc.presets import preset_spec

# preset -> (stages, microbatches, ranks); every preset the exactness tests run
PRESETS = {
    "gpipe": (2, 4, None), "1f1b": (2, 4, None), "interleaved-1f1b": (4, 4, 2),
    "zb-h1": (2, 4, None), "chimera": (2, 4, None), "pipedream": (2, 2, None),
    "pipedream-2bw": (2, 4, None), "paci": (2, 4, None), "amdp": (2, 4, None),
}
TOL = 1e-3  # relative on losses, absolute on weights (values of order 0.1)


def _compile(root: Path, name: str, stages: int, m: int, ranks: int | None) -> Path:
    kw = {"stages": stages, "microbatches": m} | ({"ranks": ranks} if ranks else {})
    compiled = compile_spec(preset_spec(name, **kw).validate())
    return write_programs(root / f"{name}-{stages}x{m}", compiled.manifest, compiled.programs)


def _config(d: Path, *args: str):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return config_from_args(parser.parse_args([str(d), "--quiet", *args]))


def _run(d: Path, device: str, *args: str) -> tuple[list[float], dict, list[dict]]:
    session = build_local(_config(d, "--device", device, *args))
    lines = train(session)
    weights = {k: r.current.detach().cpu().clone() for i in session.interps.values()
               for k, r in i.replicas.items()}
    return [line["loss"] for line in lines], weights, lines


def check_presets(root: Path, device: str, names: list[str], steps: int) -> bool:
    print(f"\n== presets in-process: {device} against cpu, gpt-tiny, {steps} steps ==")
    print(f"{'preset':18} {'max loss rel diff':>18} {'max weight diff':>16}  verdict")
    ok_all = True
    for name in names:
        d = _compile(root, name, *PRESETS[name])
        args = ("--model", "gpt-tiny", "--micro-batch-size", "2", "--seq-len", "16",
                "--steps", str(steps), "--lr", "0.01")
        losses, weights, _ = _run(d, device, *args)
        ref_losses, ref_weights, _ = _run(d, "cpu", *args)
        dl = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, ref_losses,
                                                                   strict=True))
        dw = max(float((weights[k] - w).abs().max()) for k, w in ref_weights.items())
        ok = dl <= TOL and dw <= TOL
        ok_all &= ok
        print(f"{name:18} {dl:18.2e} {dw:16.2e}  {'ok' if ok else 'DIFFERS'}", flush=True)
    return ok_all


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_step_times(d: Path, device: str, args: list[str], steps: int) -> list[float]:
    """The same model and micro-batches, all stages chained in one module list."""
    cfg = _config(d, "--device", device, *args)
    p = prepare(cfg)
    dev = torch.device(device)
    n, m = p.manifest.num_stages, p.manifest.period.microbatches
    modules = [build_stage_module(p.model, s, n, cfg.seed, dev) for s in range(n)]
    params = [q for mod in modules for q in mod.parameters()]
    fused = {"fused": True} if device.startswith("cuda") else {}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, **fused)
    batches = make_batches(p, 0)
    times = []
    for step in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        for mb in range(step * m, (step + 1) * m):
            batch = batches.get(mb)
            x = batch.inputs.to(dev, non_blocking=True)
            for mod in modules:
                x = mod(x)
            (p.model.loss(x, batch.targets.to(dev, non_blocking=True)) / m).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def schedc_step_times(d: Path, device: str, args: list[str]) -> list[float]:
    _, _, lines = _run(d, device, *args)
    t = [line["time_s"] for line in lines]
    return [b - a for a, b in zip(t, t[1:], strict=False)]


def step_times(root: Path, device: str, model: str, steps: int, m: int, mbs: int,
               seq: int) -> None:
    warm = min(2, steps - 2)
    args = ["--model", model, "--micro-batch-size", str(mbs), "--seq-len", str(seq),
            "--steps", str(steps), "--lr", "1e-4"]
    print(f"\n== step time in-process on {device}: {model}, 2 stages, m={m}, micro-batch "
          f"{mbs} x {seq}, median of {steps - warm - 1} steps after {warm} warm-up ==")
    f1b = _compile(root, "1f1b", 2, m, None)
    _reset_peak(device)
    plain = statistics.median(plain_step_times(f1b, device, args, steps)[warm:])
    print(f"plain training step   {plain * 1e3:9.2f} ms{_peak(device)}")
    for name in ("1f1b", "zb-h1", "paci"):
        d = f1b if name == "1f1b" else _compile(root, name, 2, m, None)
        _reset_peak(device)
        ours = statistics.median(schedc_step_times(d, device, args)[warm:])
        print(f"schedc {name:8} step  {ours * 1e3:9.2f} ms   {name}/plain {ours / plain:.3f}"
              f"{_peak(device)}", flush=True)


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> str:
    """The device's peak allocated memory since the last _reset_peak, as a column."""
    if not device.startswith("cuda"):
        return ""
    return f"   peak {torch.cuda.max_memory_allocated() / 2**20:8.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny sizes, two presets: checks the script, measures nothing")
    ap.add_argument("--model", default="gpt-small")
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args(argv)
    torch.set_num_threads(1 if a.dry_run else torch.get_num_threads())
    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device (use --dry-run on CPU)", file=sys.stderr)
        return 2
    device = "cpu" if a.dry_run else "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = ["zb-h1"] if a.dry_run else list(PRESETS)
        ok = check_presets(root, device, names, 1 if a.dry_run else 3)
        if a.dry_run:
            step_times(root, device, "gpt-tiny", 3, 2, 2, 16)
        else:
            step_times(root, device, a.model, a.steps, 8, 8, 512)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
