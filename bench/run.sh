#!/usr/bin/env bash
# `make bench`: the engine benchmark (tideserve vs ONNX Runtime vs PyTorch), the end-to-end
# benchmark (tideserve serve vs the FastAPI seed service) and rerank beside embedding throughput,
# on BERT-base-shaped models with random weights, generated into the build tree on first use.
#   bench/run.sh [BUILD_DIR]        (default build/release)
# Environment: BENCH_THREADS (1,2), BENCH_REPS (a,b,c[,d] timed passes: 10,5,3[,40]), BENCH_SKIP (e.g. c@1:
# the peers need minutes per padded pass of (c) at 1 thread), E2E_DURATION (10 s),
# E2E_SOAK (120 s), BENCH_SKIP_E2E=1, BENCH_SKIP_ENGINE=1, BENCH_SKIP_RERANK=1, SOAK_MINUTES (10),
# BENCH_SKIP_SOAK=1, BENCH_SKIP_REPOSITORY=1, BENCH_SKIP_WRK=1, BENCH_SKIP_PLAN=1,
# BENCH_SKIP_JOBS=1, JOBS_LINES (400), BENCH_PAIR_ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
model=$build/bench/bert-base
if [ ! -f "$model/model.safetensors" ] || [ tools/make_fixture_model.py -nt "$model/model.safetensors" ]; then
  /usr/bin/python3 tools/make_fixture_model.py --bert-base "$model"
fi
bench/peers/setup.sh
echo "# tideserve benchmarks, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${BENCH_SKIP_ENGINE:-0}" != 1 ]; then
  /usr/bin/python3 bench/engine/run.py --model "$model" --build "$build" \
    --threads "${BENCH_THREADS:-1,2}" --reps "${BENCH_REPS:-10,5,3}" --skip "${BENCH_SKIP:-}" \
    --json "$build/bench/engine_results.json"
  # The same comparisons in interleaved pairs, which a shared machine's noise moves less: the
  # two fp32 GEMMs (when the CPU has AVX2 + FMA), then tideserve against ONNX Runtime.
  for threads in 1 2; do OMP_NUM_THREADS=$threads "$build/bench/engine/gemm_pair"; done
  bench/engine/vs_ort_pairs.sh "$build" "${BENCH_PAIR_ROUNDS:-3}"
  DTYPE=int8 bench/engine/vs_ort_pairs.sh "$build" "${BENCH_PAIR_ROUNDS:-3}"
fi
tideserve=$build/tideserve
[ -x "$tideserve" ] || tideserve=$build/src/tideserve/cli/tideserve
if [ "${BENCH_SKIP_E2E:-0}" != 1 ]; then
  /usr/bin/python3 bench/e2e/run.py --model "$model" --tideserve "$tideserve" \
    --duration "${E2E_DURATION:-10}" --soak "${E2E_SOAK:-120}" --work "$build/bench" \
    --json "$build/bench/e2e_results.json"
fi
if [ "${BENCH_SKIP_RERANK:-0}" != 1 ]; then
  /usr/bin/python3 bench/e2e/rerank.py --tideserve "$tideserve" --work "$build/bench" \
    --json "$build/bench/rerank_results.json"
fi
if [ "${BENCH_SKIP_REPOSITORY:-0}" != 1 ]; then
  /usr/bin/python3 bench/server/repository.py --tideserve "$tideserve" --model "$model" \
    --json "$build/bench/repository_results.json"
fi
if [ "${BENCH_SKIP_WRK:-0}" != 1 ]; then
  /usr/bin/python3 bench/server/bench_vs_wrk.py --tideserve "$tideserve" --rounds 3
fi
if [ "${BENCH_SKIP_PLAN:-0}" != 1 ]; then
  /usr/bin/python3 bench/plan/validate.py --tideserve "$tideserve" \
    --out "$build/bench/plan_validation.json"
fi
if [ "${BENCH_SKIP_JOBS:-0}" != 1 ]; then
  /usr/bin/python3 bench/jobs/throughput.py --tideserve "$tideserve" --model "$model" \
    --lines "${JOBS_LINES:-400}" --json "$build/bench/jobs_results.json"
fi
if [ "${BENCH_SKIP_SOAK:-0}" != 1 ]; then
  /usr/bin/python3 bench/server/soak.py --binary "$tideserve" --minutes "${SOAK_MINUTES:-10}"
fi
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
