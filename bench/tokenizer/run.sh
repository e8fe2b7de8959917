#!/usr/bin/env bash
# Tokenizer benchmark, one command: tideserve vs Hugging Face tokenizers (npm) on
# tests/fixtures/tokenizer/corpus.jsonl with the bundled model's vocabulary, 1 thread and all
# cores. Prints each result as JSON and the ratios.
#   bench/tokenizer/run.sh [seconds per measurement, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-3}"
BUILD_DIR="${BUILD_DIR:-build/release}"
MODEL="models/tideserve-tiny-zh"
CORPUS="tests/fixtures/tokenizer/corpus.jsonl"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then  # the flags of the "release" preset
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O2 -g -DNDEBUG" >/dev/null
fi
cmake --build "$BUILD_DIR" --target tideserve_tokenizer_bench >/dev/null
tools/setup-test-clients.sh

ours_bin="$BUILD_DIR/bench/tokenizer/tideserve_tokenizer_bench"
threads_all="$(nproc)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), ${threads_all} cores; $(date -u +%Y-%m-%d)"
for threads in 1 "$threads_all"; do
  ours="$("$ours_bin" --model "$MODEL" --corpus "$CORPUS" --threads "$threads" --seconds "$SECONDS_PER_RUN")"
  hf="$(RAYON_NUM_THREADS="$threads" TOKENIZERS_PARALLELISM=true node bench/tokenizer/hf_bench.js \
          --vocab "$MODEL/vocab.txt" --corpus "$CORPUS" --seconds "$SECONDS_PER_RUN")"
  echo "$ours"
  echo "$hf"
  # shellcheck disable=SC2016  # the single-quoted argument is JavaScript source for node
  node -e '
    const a = JSON.parse(process.argv[1]), b = JSON.parse(process.argv[2]);
    console.log(`threads=${a.threads}: tideserve ${(a.tokens_per_second / 1e6).toFixed(2)} M tokens/s, ` +
                `hf-tokenizers ${(b.tokens_per_second / 1e6).toFixed(2)} M tokens/s, ` +
                `ratio ${(a.tokens_per_second / b.tokens_per_second).toFixed(2)}x`);
    if (a.tokens / a.passes !== b.tokens / b.passes) {
      console.log(`note: tokens per pass differ (${a.tokens / a.passes} vs ${b.tokens / b.passes})`);
    }' "$ours" "$hf"
done
