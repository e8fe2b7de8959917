#!/usr/bin/env bash
# Waits until Argo CD has applied IMAGE@DIGEST to NAMESPACE and the Rollout has promoted it
# through the canary (deploy/README.md, "Canary"); fails as soon as the Rollout aborts.
#   deploy/ci/wait-rollout.sh NAMESPACE IMAGE@sha256:DIGEST [TIMEOUT_SECONDS]
# Done when the Rollout is Healthy and its stable ReplicaSet runs the image: the canary passed
# 10 %, 50 % and 100 % with its analysis. Reads only (get on deployments, rollouts, replicasets).
# Used by .github/workflows/ci.yml before the staging smoke test.
set -euo pipefail
namespace=${1:?usage: wait-rollout.sh NAMESPACE IMAGE@DIGEST [TIMEOUT_SECONDS]}
want=${2:?image reference IMAGE@sha256:DIGEST}
timeout=${3:-2700}
deadline=$((SECONDS + timeout))
k() { kubectl -n "$namespace" "$@"; }
image_of() { k get "$1" -o jsonpath='{.spec.template.spec.containers[?(@.name=="tideserve")].image}' 2>/dev/null || true; }

last=""
say() { if [ "$1" != "$last" ]; then echo "wait-rollout: $1"; last=$1; fi; }
while [ "$SECONDS" -lt "$deadline" ]; do
  if [ "$(image_of deployment/tideserve)" != "$want" ]; then
    say "Argo CD has not applied $want to deployment/$namespace/tideserve yet"
  else
    phase=$(k get rollout tideserve -o jsonpath='{.status.phase}')
    aborted=$(k get rollout tideserve -o jsonpath='{.status.abort}')
    stable=$(k get rollout tideserve -o jsonpath='{.status.stableRS}')
    current=$(k get rollout tideserve -o jsonpath='{.status.currentPodHash}')
    weight=$(k get rollout tideserve -o jsonpath='{.status.canary.weights.canary.weight}')
    if [ "$aborted" = true ]; then
      echo "wait-rollout: the Rollout aborted the canary of $want:" >&2
      k get rollout tideserve -o jsonpath='{.status.message}{"\n"}' >&2 || true
      k get analysisrun -o wide >&2 || true
      exit 1
    fi
    if [ "$phase" = Degraded ]; then
      echo "wait-rollout: the Rollout is Degraded: $(k get rollout tideserve -o jsonpath='{.status.message}')" >&2
      exit 1
    fi
    if [ "$phase" = Healthy ] && [ -n "$stable" ] && [ "$stable" = "$current" ] &&
      [ "$(image_of "replicaset/tideserve-$stable")" = "$want" ]; then
      echo "wait-rollout: $want promoted in $namespace"
      exit 0
    fi
    say "Rollout $phase, canary weight ${weight:-0} %"
  fi
  sleep 15
done
echo "wait-rollout: $want not promoted in $namespace within $timeout s" >&2
exit 1
