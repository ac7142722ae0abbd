"""Asynchronous data parallelism study (issue 9), run as

    .venv/bin/python bench/convergence.py --dp-study            # ~5 min on 2 cores
    .venv/bin/python bench/dp_study.py --steps 600              # the same, directly

Results in bench/results/dp/, figure docs/img/results_dp.png, table in
docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---- Asynchronous data parallelism (issue 9) -------------------------------------------
#
#     .venv/bin/python bench/convergence.py --dp-study            # ~5 min on 2 cores
#     .venv/bin/python bench/convergence.py --dp-study --steps 600
#
# 2 pipeline stages (1F1B) x 2 data-parallel replicas, 4 gloo processes under
# torchrun, gpt-tiny, the same seed and micro-batches for every configuration:
# sync DP (gradients all-reduced every step) against async-sparse DP
# (runtime/dp_sparse.py: own-gradient steps, a rotating fraction rho of the
# parameters averaged every k steps, tau steps late, drift-corrected). Loss:
# the training loss of each step, mean over both replicas' micro-batches
# (fresh windows every step). tau = 1 unless named (tau = 0: exact parameter
# averaging, the tests' exactness case). Bytes: what one replica contributes to the
# data-parallel collectives per step, all stages (sync: the whole fp32
# gradient; async: the packed fp32 subset, computed with the runtime's own
# subset rule). Results in bench/results/dp/, figure docs/img/results_dp.png.

DP_CONFIGS = [  # name, spec fields (None: sync DP)
    ("sync", None),
    ("async rho=1 tau=0", dict(dp_fraction=1.0, dp_period=1, dp_max_lateness=0)),
    ("async rho=1", dict(dp_fraction=1.0, dp_period=1, dp_max_lateness=1)),
    ("async rho=0.25", dict(dp_fraction=0.25, dp_period=1, dp_max_lateness=1)),
    ("async rho=0.05", dict(dp_fraction=0.05, dp_period=1, dp_max_lateness=1)),
]
DP_ARGS = ["--model", "gpt-tiny", "--micro-batch-size", "4", "--seq-len", "32",
           "--lr", "3e-3", "--threads", "1", "--quiet"]


def _dp_compile(fields: dict | None, out: Path) -> Path:
    from schedc.compiler import compile_spec
    from schedc.files import write_programs
    from schedc.presets import preset_spec

    extra = {} if fields is None else {"dp_mode": "async-sparse", "dp_beta": 0.9, **fields}
    compiled = compile_spec(preset_spec("1f1b", stages=2, microbatches=2, **extra).validate())
    out.mkdir(parents=True, exist_ok=True)
    write_programs(out, compiled.manifest, compiled.programs)
    return out


def _dp_bytes_per_step(fields: dict | None, numels: list[int], steps: int) -> float:
    from schedc.runtime.dp_sparse import block_size, subset_blocks

    if fields is None:
        return 4.0 * sum(numels)
    total = 0
    k, rho = fields["dp_period"], fields["dp_fraction"]
    for n in numels:
        b = block_size(n)
        nb = -(-n // b)
        for j in range(steps // k):
            total += 4 * sum(min(b, n - i * b) for i in subset_blocks(nb, rho, j))
    return total / steps


def _dp_run(name: str, fields: dict | None, steps: int, out: Path) -> dict:
    import os
    import socket
    import subprocess

    from schedc.runtime.build import stage_numels
    from schedc.runtime.models import resolve_model

    safe = name.replace(" ", "_").replace("=", "")
    res_path = out / f"{safe}.json"
    if res_path.exists():
        return json.loads(res_path.read_text())
    d = _dp_compile(fields, out / "programs" / safe)
    metrics = out / f"{safe}.jsonl"
    with socket.socket() as s_:
        s_.bind(("127.0.0.1", 0))
        port = s_.getsockname()[1]
    k = 1 if fields is None else fields["dp_period"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node=4",
           "--master-addr", "127.0.0.1", f"--master-port={port}", "-m", "schedc.runtime.launch",
           str(d), "--dp", "2", "--steps", str(steps // k), "--metrics", str(metrics), *DP_ARGS]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    losses = [json.loads(line)["loss"] for line in metrics.read_text().splitlines()]
    numels = stage_numels(resolve_model("gpt-tiny"), 2)
    r = {"name": name, "fields": fields, "steps": steps, "period": k, "losses": losses,
         "bytes_per_step": _dp_bytes_per_step(fields, numels, steps), "params": sum(numels),
         "wall_s": wall}
    res_path.write_text(json.dumps(r) + "\n")
    return r


def _smooth(xs: list[float], w: int = 20) -> float:
    tail = xs[-w:]
    return sum(tail) / len(tail)


def dp_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench/convergence.py --dp-study")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per configuration")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dp")
    ap.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [_dp_run(name, fields, args.steps, args.out) for name, fields in DP_CONFIGS]
    sync = results[0]
    rows = ["| DP mode | final loss (mean of last 20 steps) | vs sync | bytes / replica / step "
            "| of sync | loss at 1/3, 2/3 of the run |", "|---|---|---|---|---|---|"]
    for r in results:
        f, fs = _smooth(r["losses"]), _smooth(sync["losses"])
        n = len(r["losses"])
        thirds = ", ".join(f"{_smooth(r['losses'][: n * i // 3]):.3f}" for i in (1, 2))
        rows.append(f"| {r['name']} | {f:.3f} | {f - fs:+.3f} | {r['bytes_per_step']:,.0f} "
                    f"| {r['bytes_per_step'] / sync['bytes_per_step']:.3f} | {thirds} |")
    text = "\n".join(rows) + "\n"
    (args.out / "table.md").write_text(text)
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        k = r["period"]
        ys = [sum(r["losses"][max(0, i - 9): i + 1]) / len(r["losses"][max(0, i - 9): i + 1])
              for i in range(len(r["losses"]))]
        xs = [(i + 1) * k for i in range(len(ys))]
        ax1.plot(xs, ys, label=r["name"])
        ax2.plot([x * r["bytes_per_step"] / 2**20 for x in xs], ys, label=r["name"])
    ax1.set_xlabel("optimizer step")
    ax2.set_xlabel("MiB exchanged per replica")
    ax2.set_xscale("symlog", linthresh=0.1)
    for ax in (ax1, ax2):
        ax.set_ylabel("training loss (10-step mean)")
        ax.legend()
    fig.suptitle("gpt-tiny, 2 stages x 2 replicas: sync DP vs async-sparse DP")
    fig.tight_layout()
    args.img.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.img / "results_dp.png", dpi=110)
    print(f"wrote {args.img / 'results_dp.png'}", file=sys.stderr)
    return 0



if __name__ == "__main__":
    sys.exit(dp_main(sys.argv[1:]))
