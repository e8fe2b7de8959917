#!/usr/bin/env bash
# The plot in deploy/README.md: the production overlay's HPA (and the KEDA overlay's ScaledObject)
# replayed by `tideserve plan` on the built-in tidal day, each replica modelled from a capacity
# profile of a real server on this machine: the BERT-base-shaped bench model (random weights,
# bert-base-chinese's shapes and speed) on the machine's cores, its start-up from its own log.
#   bench/plan/production_day.sh [BUILD_DIR] [OUT_DIR]   (default build/release, docs/images)
# Environment: PEAK_REPLICAS (the morning peak in replicas' capacities, 6), PROFILE (reuse a
# profile instead of measuring one), KEEP (a directory that keeps the profile, the server's log
# and the replays' JSON).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
out=${2:-docs/images}
tideserve=$build/tideserve
model=$build/bench/bert-base
if [ ! -f "$model/model.safetensors" ]; then
  /usr/bin/python3 tools/make_fixture_model.py --bert-base "$model"
fi
work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP" && cp -r "$work"/. "$KEEP"/
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cpus=$(nproc)

# One replica with every core of this machine (the pods' request is replaced by it below).
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tideserve" serve --model "$model" --model-id bert-base-chinese --host 127.0.0.1 --port "$port" \
  --threads "$cpus" --drain-delay 0 >"$work/serve.log" 2>"$work/serve.err" &
server=$!
for _ in $(seq 600); do
  grep -q '"event":"serving"' "$work/serve.log" && break
  sleep 0.1
done
grep -q '"event":"serving"' "$work/serve.log" || { cat "$work/serve.err" >&2; exit 1; }
profile=${PROFILE:-$work/profile.json}
if [ -z "${PROFILE:-}" ]; then
  "$tideserve" bench --url "http://127.0.0.1:$port" --route /v1/embeddings \
    --model bert-base-chinese --profile "$profile" --slo-p99-ms 500 --profile-start-rate 2 \
    --profile-step 1.25 --profile-step-seconds 15 --quiet
fi
capacity=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['capacity_rps'])" "$profile")
# The tidal day scaled to the replica: the morning peak needs PEAK_REPLICAS replicas at capacity.
peak=$(/usr/bin/python3 -c "print(round(${PEAK_REPLICAS:-6} * $capacity, 1))")
evening=$(/usr/bin/python3 -c "print(round(0.8 * $peak, 1))")
trough=$(/usr/bin/python3 -c "print(round(0.1 * $peak, 1))")
tidal=(--tidal-morning-peak-rps "$peak" --tidal-evening-peak-rps "$evening" --tidal-trough-rps "$trough")
mkdir -p "$out"
echo "# replica capacity within p99 <= 500 ms: $capacity req/s on $cpus CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); tidal day: trough $trough, peaks $peak and $evening req/s; $(date -u +%Y-%m-%d)"
for overlay in production keda; do
  echo "## overlays/$overlay"
  "$tideserve" plan --manifests "deploy/k8s/overlays/$overlay" --profile "$profile" \
    --startup-log "$work/serve.log" --scheduling-seconds 20 --cpu-request "$cpus" \
    --slo-p99-ms 500 "${tidal[@]}" --recommend --svg "$out/plan-$overlay.svg" \
    --json "$work/plan-$overlay.json"
done
