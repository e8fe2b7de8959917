#!/usr/bin/env bash
# Smoke test of a running tideserve: readiness, liveness, the seed contract (/health, /predict),
# the TEI-style and OpenAI embedding routes and /metrics, with curl only.
#   deploy/smoke-test.sh BASE_URL      e.g. http://127.0.0.1:8000
# The CI pipeline runs it against staging (through kubectl port-forward), tools/image-test.sh
# against the container. API_KEY, when set, is sent as a bearer token.
set -euo pipefail
base=${1:?usage: deploy/smoke-test.sh BASE_URL}
auth=()
if [ -n "${API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $API_KEY"); fi
failures=0

# expect NAME METHOD PATH BODY PATTERN: status 200 and the body matching the extended regex.
expect() {
  local name=$1 method=$2 path=$3 body=$4 pattern=$5 out status
  out=$(mktemp)
  if [ "$method" = GET ]; then
    status=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 "${auth[@]}" "$base$path" || true)
  else
    status=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 "${auth[@]}" \
      -H 'Content-Type: application/json' -d "$body" "$base$path" || true)
  fi
  if [ "$status" = 200 ] && grep -qE "$pattern" "$out"; then
    echo "ok   $name"
  else
    echo "FAIL $name: HTTP $status, body: $(head -c 300 "$out")"
    failures=$((failures + 1))
  fi
  rm -f "$out"
}

expect "ready" GET /v2/health/ready "" '.*'
expect "live" GET /v2/health/live "" '.*'
expect "health" GET /health "" '.'
expect "predict" POST /predict '{"text": "今天天气很好"}' '"embedding"'
expect "embed" POST /embed '{"inputs": ["你好", "世界"]}' '^\[\['
# OpenAI requests name a model the server serves: the first one /v1/models lists.
model=$(curl -sS --max-time 30 "${auth[@]}" "$base/v1/models" | grep -oE '"id":"[^"]+"' | head -n 1 |
  cut -d'"' -f4 || true)
expect "openai models" GET /v1/models "" '"object":"model"'
expect "openai embeddings" POST /v1/embeddings "{\"input\": \"你好\", \"model\": \"$model\"}" '"embedding"'
expect "metrics" GET /metrics "" '^tideserve_requests_total'

if [ "$failures" -gt 0 ]; then
  echo "smoke-test: $failures failed against $base"
  exit 1
fi
echo "smoke-test: all passed against $base"
