#!/usr/bin/env bash
# tideserve's encoder (as served) against ONNX Runtime fp32 in alternating pairs: each round runs
# engine_bench and then the ORT peer on the same workload, so a slow patch of a shared machine
# hits both. Prints one row per round and the median ratio per workload and thread count.
#   [DTYPE=int8] bench/engine/vs_ort_pairs.sh [BUILD_DIR] [ROUNDS]   (default fp32, build/release, 3)
# Needs what bench/engine/run.py leaves in BUILD_DIR/bench: the model, workloads and ONNX export.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${1:-build/release}")
rounds=${2:-3}
dtype=${DTYPE:-fp32}
work=$build/bench/engine/work
model=$build/bench/bert-base
for f in "$work/model.onnx" "$work/a.i32" "$work/b.i32" "$work/d.i32"; do
  [ -f "$f" ] || { echo "vs_ort_pairs: $f is missing: run bench/engine/run.py first" >&2; exit 2; }
done
median_ms() {
  /usr/bin/python3 -c 'import json, statistics, sys
line = [l for l in sys.stdin if l.startswith("{")][-1]
print(round(statistics.median(json.loads(line)["times_ms"]), 1))'
}
echo "| threads | workload | round | tideserve $dtype ms | ONNX Runtime fp32 ms | ORT / ours |"
echo "| --- | --- | --- | --- | --- | --- |"
summary=""
for threads in 1 2; do
  for workload in d a b; do
    case $workload in d) reps=40 ;; a) reps=10 ;; b) reps=3 ;; esac
    ratios=""
    for round in $(seq "$rounds"); do
      ours=$(OMP_NUM_THREADS=$threads "$build/bench/engine/engine_bench" --model "$model" \
        --threads "$threads" --dtype "$dtype" --workload "$work/$workload.i32" --reps "$reps" \
        --out /dev/null | median_ms)
      ort=$(cd bench/peers && OMP_NUM_THREADS=$threads node ort_peer.js --model "$work/model.onnx" \
        --threads "$threads" --workload "$work/$workload.i32" --reps "$reps" --out /dev/null | median_ms)
      ratio=$(/usr/bin/python3 -c "print(f'{$ort / $ours:.3f}')")
      ratios="${ratios:+$ratios,}$ratio"
      echo "| $threads | ($workload) | $round | $ours | $ort | ${ratio}x |"
    done
    median=$(/usr/bin/python3 -c "import statistics; print(f'{statistics.median([$ratios]):.2f}')")
    summary="$summary($workload) at $threads thread(s): median ${median}x\n"
  done
done
printf "\n%b" "$summary"
