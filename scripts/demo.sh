#!/usr/bin/env bash
# make demo: compile an example, show it, simulate and draw it, then train the
# tiny GPT on 2 CPU ranks under torchrun on the embedded corpus (the Python
# standard library's sources) and draw the real run beside the simulated one.
set -euo pipefail
OUT=${OUT:-demo-out}
STEPS=${STEPS:-200}
# SCHEDC_MAX_STEPS, when set, caps every run's --steps (docs/runtime.md)
if [ -n "${SCHEDC_MAX_STEPS:-}" ] && [ "$STEPS" -gt "$SCHEDC_MAX_STEPS" ]; then
  STEPS=$SCHEDC_MAX_STEPS
fi
SCHED=${SCHED:-examples/demo2.sched}
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== compile $SCHED"
schedc compile "$SCHED" -o "$OUT/programs" --emit torch-csv "$OUT/schedule.csv"
echo; echo "== the programs"
schedc show "$OUT/programs"
echo; echo "== simulate (unit costs)"
schedc simulate "$OUT/programs" --steps 4
schedc viz "$OUT/programs" --timeline "$OUT/timeline-simulated.svg"
schedc viz "$OUT/programs" --timeline "$OUT/timeline-simulated.html" --graph "$OUT/graph.svg"

echo; echo "== train gpt-tiny for $STEPS steps on 2 ranks (torchrun, gloo)"
torchrun --standalone --nproc-per-node 2 -m schedc.runtime.launch "$OUT/programs" \
  --model gpt-tiny --steps "$STEPS" --lr 3e-3 --optimizer adamw --threads 1 \
  --metrics "$OUT/metrics.jsonl" --trace "$OUT/trace-real.json" --costs-out "$OUT/costs.json"
python - "$OUT/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[0], rows[-1]
print(f"loss: step {first['step']}: {first['loss']:.3f}  ->  step {last['step']}: {last['loss']:.3f}")
PY
echo; echo "== predict from the measured costs, and draw it"
schedc simulate "$OUT/programs" --costs "$OUT/costs.json" --steps 4
schedc viz "$OUT/programs" --costs "$OUT/costs.json" --timeline "$OUT/timeline-measured.svg"
echo; echo "== tune: every schedule for 2 ranks ranked under the measured costs (docs/tune.md)"
schedc tune --costs "$OUT/costs.json" --max-stages 4 --ranks 2 --global-batch 16 --top 3 -o "$OUT/tuned"
echo; echo "== draw the real run from its trace, beside the simulated one"
schedc viz "$OUT/programs" --real-trace "$OUT/trace-real.json" --timeline "$OUT/timeline-real.svg"
schedc viz "$OUT/programs" --real-trace "$OUT/trace-real.json" --timeline "$OUT/timeline-real.html"

echo; echo "wrote, in $OUT/:"
echo "  programs/                 compiled and verified program files"
echo "  schedule.csv              the same schedule in PyTorch's compute-only CSV"
echo "  timeline-simulated.svg/.html, graph.svg   the simulated run and its dependency graph"
echo "  metrics.jsonl, trace-real.json (open in ui.perfetto.dev), costs.json"
echo "  timeline-measured.svg     the schedule predicted from the real run's costs"
echo "  tuned/                    the best schedule for those costs, and tune.json ranking them all"
echo "  timeline-real.svg/.html   the real run, drawn from trace-real.json (optimizer steps 2..5)"
