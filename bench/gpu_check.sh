#!/usr/bin/env bash
# The GPU check: everything BENCHMARKS.md needs from one GPU, in one script (<= 12 min; 3.5 on an H200).
#
#   bash bench/gpu_check.sh              # on a CUDA machine, from the repository root
#   bash bench/gpu_check.sh --dry-run    # CPU, tiny: checks the script itself (run in CI)
#
# 1. the kernel tests, compiled by Triton for the GPU (TRITON_INTERPRET=0);
# 2. bench/kernels.py: GB/s against a device copy, and the fused STEP + stash against
#    AdamW(fused=True) + copy (back-to-back launches between CUDA events), then again
#    with the launches replayed from a CUDA graph (the kernels without host overhead);
# 3. every preset in-process on CUDA against the CPU run (within tolerance);
# 4. the in-process CUDA step time of 1F1B, ZB-H1 and PACI against plain training;
# 5. `schedc run` under torchrun with NCCL, one process per visible GPU (a 1-rank
#    interleaved program on one GPU: NCCL allows one rank per device).
# Each part has its own time limit; the script exits non-zero if any part failed.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=1
elif [[ $# -gt 0 ]]; then
    echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2
    exit 2
fi
PY="${PYTHON:-.venv/bin/python}"
cd "$(dirname "$0")/.." || exit 2
failed=0

part() {  # part TITLE LIMIT_S COMMAND...
    local title=$1 limit=$2
    shift 2
    echo
    echo "=== $title ==="
    echo "+ $*"
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "--- $title: exit $rc, $((SECONDS - t0)) s"
    [[ $rc -eq 0 ]] || failed=1
}

if [[ $DRY -eq 1 ]]; then
    echo "gpu_check.sh --dry-run: CPU, tiny sizes; the figures mean nothing"
    echo "would run: TRITON_INTERPRET=0 $PY -m pytest tests/kernels -q -x"
    part "kernel bandwidth (dry run)" 120 "$PY" bench/kernels.py --device cpu \
        --min-size 16KB --max-size 16KB --repeats 1 --launches 2 --only "STEP"
    part "presets and step times (dry run)" 300 "$PY" bench/gpu_check.py --dry-run
    part "torchrun (dry run, gloo)" 120 bash bench/gpu_nccl.sh "$PY" --dry-run
else
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" || {
        echo "gpu_check.sh: no CUDA device visible to $PY (use --dry-run on CPU)" >&2
        exit 3
    }
    "$PY" -c "import schedc.runtime, schedc.kernels" 2>/dev/null || {
        echo "gpu_check.sh: $PY cannot import schedc.runtime: install this checkout" \
            "(pip install -e '.[runtime]'; without pip, link schedc/runtime and" \
            "schedc/kernels to runtime/ and kernels/ and put the checkout on PYTHONPATH)" >&2
        exit 3
    }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    part "kernel tests, compiled (TRITON_INTERPRET=0)" 180 \
        env TRITON_INTERPRET=0 "$PY" -m pytest tests/kernels tests/runtime/test_transport_device.py \
        -q -x -p no:cacheprovider
    part "kernel bandwidth" 150 "$PY" bench/kernels.py --max-size 1GB
    part "kernel bandwidth, launches from a CUDA graph" 120 "$PY" bench/kernels.py --graph \
        --min-size 16MB --max-size 1GB
    part "presets against CPU, and step times" 150 "$PY" bench/gpu_check.py
    part "torchrun with NCCL" 120 bash bench/gpu_nccl.sh "$PY"
fi
echo
if [[ $failed -eq 0 ]]; then echo "gpu_check: all parts passed"; else echo "gpu_check: FAILED"; fi
exit $failed
