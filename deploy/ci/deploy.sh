#!/usr/bin/env bash
# Deploys one environment with the image pinned by digest, then waits for the rollout.
#   deploy/ci/deploy.sh staging|production IMAGE sha256:DIGEST
# Renders deploy/k8s/overlays/ENV through a throwaway overlay whose `images:` entry replaces the
# image by IMAGE@DIGEST (`kubectl kustomize ... | kubectl apply`): what runs is exactly what CI
# built and tested, whatever tags move later. Used by .github/workflows/ci.yml.
set -euo pipefail
env_name=${1:?usage: deploy.sh staging|production IMAGE DIGEST}
image=${2:?image name, e.g. ghcr.io/owner/tideserve}
digest=${3:?image digest, sha256:...}
case "$env_name" in
  staging) namespace=tideserve-staging ;;
  production) namespace=tideserve ;;
  *) echo "deploy.sh: unknown environment $env_name" >&2; exit 2 ;;
esac
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "deploy.sh: '$digest' is not an image digest" >&2
  exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
release="$repo/deploy/k8s/overlays/.release-$env_name"
trap 'rm -rf "$release"' EXIT
mkdir -p "$release"
cat >"$release/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
bases:
  - ../$env_name
images:
  - name: ghcr.io/tideserve/tideserve
    newName: $image
    digest: $digest
KUSTOMIZATION

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
kubectl kustomize "$release" >"$release/rendered.yaml"
grep -q "image: $image@$digest" "$release/rendered.yaml" || {
  echo "deploy.sh: the rendered Deployment does not use $image@$digest" >&2
  exit 1
}
kubectl apply -f "$release/rendered.yaml"
kubectl -n "$namespace" rollout status deployment/tideserve --timeout=15m
