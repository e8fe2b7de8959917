#!/usr/bin/env bash
# Tokenizer benchmark, one command: tideserve vs Hugging Face tokenizers (npm) on
# tests/fixtures/tokenizer/corpus.jsonl with the bundled model's vocabulary, 1 thread and all
# cores. Prints each result as JSON and the ratios, and exits 1 if the two do not produce the same
# number of tokens per pass over the corpus.
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
# The CPU features that decide which kernels run, for the record beside the figures
isa="$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | cut -d: -f2- | tr ' ' '\n' |
       grep -xE 'sse4_2|avx|avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni|avx512_bf16|amx_tile|asimd|sve' |
       paste -sd, - || true)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), ${threads_all} cores, ISA ${isa:-none of the listed}; $(date -u +%Y-%m-%d)"
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
    // tideserve sums the tokens of every pass (so its total must be a multiple of its passes);
    // hf_bench.js counts its warm-up pass and multiplies. The two must have read the same texts and
    // produced the same tokens per pass, or they did not tokenize the same thing.
    const perPass = (r) => (r.passes > 0 && r.tokens % r.passes === 0 ? r.tokens / r.passes : NaN);
    const oursPerPass = perPass(a), hfPerPass = perPass(b);
    if (a.texts !== b.texts || !Number.isInteger(oursPerPass) || oursPerPass !== hfPerPass) {
      console.error(`bench/tokenizer/run.sh: MISMATCH at threads=${a.threads}: ` +
                    `tideserve read ${a.texts} texts, ${a.tokens} tokens in ${a.passes} passes ` +
                    `(${a.tokens / a.passes} per pass); hf-tokenizers read ${b.texts} texts, ` +
                    `${b.tokens} tokens in ${b.passes} passes (${b.tokens / b.passes} per pass)`);
      process.exit(1);
    }
    console.log(`threads=${a.threads}: same tokens per pass: ${oursPerPass} over ${a.texts} texts`);' "$ours" "$hf"
done
