#!/usr/bin/env bash
# How to split 2 cores between HTTP IO threads and engine threads: serves the bundled tiny model
# with each (io, engine) pair and loads /predict with wrk (which shares the same cores).
# usage: [TIDESERVE_BINARY=path] bench/e2e/thread_split.sh [seconds per run] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-5}"
connections="${2:-32}"
binary="${TIDESERVE_BINARY:-build/release/tideserve}"  # another build to compare: TIDESERVE_BINARY=...
[ -x "$binary" ] || make build >/dev/null
bodies="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$bodies" "$log"' EXIT
for text in "今天天气很好，我们去公园散步吧。" "深度学习模型的推理服务需要低延迟和高吞吐。" \
            "tideserve serves BERT embeddings over HTTP." "你好，世界"; do
  printf '{"text": "%s", "max_length": 128}\n' "$text" >> "$bodies"
done
echo "io_threads engine_threads req_per_s p50_ms p99_ms errors"
for io in 1 2; do
  for engine in 1 2; do
    "$binary" serve --model models/tideserve-tiny-zh --host 127.0.0.1 --port 0 \
      --io-threads "$io" --threads "$engine" --drain-delay 0 > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do grep -q model_loaded "$log" && break; sleep 0.05; done
    port="$(grep -o '"port":[0-9]*' "$log" | head -1 | cut -d: -f2)"
    out="$(wrk -t1 -c"$connections" -d"${seconds}s" -s bench/e2e/load.lua \
      "http://127.0.0.1:$port/predict" -- "$bodies" | tail -1)"
    kill -TERM "$pid"
    wait "$pid" || true
    /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(sys.argv[2], sys.argv[3], "%.0f" % (r["requests"] / (r["duration_us"] / 1e6)), "%.2f" % (r["p50_us"] / 1e3), "%.2f" % (r["p99_us"] / 1e3), r["errors"] + r["non2xx"])' "$out" "$io" "$engine"
  done
done
