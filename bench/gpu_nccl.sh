#!/usr/bin/env bash
# Part 5 of bench/gpu_check.sh: `schedc run` under torchrun on CUDA (NCCL), one
# process per visible GPU. NCCL refuses two ranks on one device, so on one GPU the
# program is interleaved 1F1B with both stages on one rank (the NCCL world is then
# that rank alone); on two or more GPUs it is 1F1B over 2 ranks.
#
#   bash bench/gpu_nccl.sh [PYTHON] [--dry-run]   # --dry-run: CPU (gloo), gpt-tiny
set -euo pipefail
PY="${1:-${PYTHON:-.venv/bin/python}}"
run=(--device cuda --model gpt-small --micro-batch-size 8 --seq-len 512)
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [[ "${2:-}" == "--dry-run" ]]; then
    run=(--device cpu --model gpt-tiny --micro-batch-size 2 --seq-len 16)
    gpus=1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if [[ "$gpus" -ge 2 ]]; then
    "$PY" -m schedc compile --preset 1f1b --stages 2 --microbatches 8 -o "$dir/p" -q
else
    "$PY" -m schedc compile --preset interleaved-1f1b --stages 2 --ranks 1 --microbatches 8 \
        -o "$dir/p" -q
fi
"$PY" -m schedc run "$dir/p" "${run[@]}" --steps 10 --lr 1e-4 --metrics "$dir/metrics.jsonl"
"$PY" - "$dir/metrics.jsonl" <<'PYEOF'
import json, statistics, sys
lines = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
steps = [x for x in lines if "loss" in x and "time_s" in x]
t = [x["time_s"] for x in steps]
dt = [b - a for a, b in zip(t, t[1:])][2:]
print(f"torchrun: {len(steps)} steps, losses {steps[0]['loss']:.4f} -> "
      f"{steps[-1]['loss']:.4f}, median step {statistics.median(dt) * 1e3:.1f} ms "
      f"after 3 warm-up" if dt else "torchrun NCCL: too few steps to time")
PYEOF
