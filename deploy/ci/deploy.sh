#!/usr/bin/env bash
# Releases an image to one environment the GitOps way: pins IMAGE@DIGEST in the environment's
# overlay and commits it; Argo CD does the rest (deploy/README.md, "GitOps").
#   deploy/ci/deploy.sh staging|production IMAGE sha256:DIGEST [--push]
# Rewrites the `images:` entry for ghcr.io/tideserve/tideserve in
# deploy/k8s/overlays/ENV/kustomization.yaml to `newName: IMAGE` and `digest: DIGEST` (what runs is
# exactly what CI built and tested, whatever tags move later), checks with `kubectl kustomize` that
# the rendered Deployment (the Rollout's pod template) uses IMAGE@DIGEST and nothing else, and
# commits the one file. With --push it pushes to origin's current branch, rebasing onto commits
# that landed meanwhile. Staging's Application syncs by itself; production's waits for a person
# to sync it. Used by .github/workflows/ci.yml; needs git and kubectl.
set -euo pipefail
env_name=${1:?usage: deploy.sh staging|production IMAGE DIGEST [--push]}
image=${2:?image name, e.g. ghcr.io/owner/tideserve}
digest=${3:?image digest, sha256:...}
push=${4:-}
case "$env_name" in
  staging | production) ;;
  *) echo "deploy.sh: unknown environment $env_name" >&2; exit 2 ;;
esac
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "deploy.sh: '$digest' is not an image digest" >&2
  exit 2
fi
if [[ ! "$image" =~ ^[a-z0-9._/:-]+$ ]] || [[ "$image" == *@* ]]; then
  echo "deploy.sh: '$image' is not an image name without tag or digest" >&2
  exit 2
fi
case "$push" in "" | --push) ;; *) echo "deploy.sh: unknown option $push" >&2; exit 2 ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
overlay="deploy/k8s/overlays/$env_name"
file="$repo/$overlay/kustomization.yaml"
name=ghcr.io/tideserve/tideserve

# The entry `  - name: NAME` under `images:`: its newName/newTag/digest lines are replaced.
pin() {
  awk -v name="$name" -v image="$image" -v digest="$digest" '
    /^[^ #]/ { in_images = ($0 ~ /^images:/) }
    in_images && $0 == "  - name: " name { print; print "    newName: " image; print "    digest: " digest; found++; skip = 1; next }
    skip && /^    (newName|newTag|digest):/ { next }
    { skip = 0; print }
    END { if (found != 1) exit 3 }
  ' "$1"
}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if ! pin "$file" >"$tmp"; then
  echo "deploy.sh: $overlay/kustomization.yaml has no single images: entry for $name" >&2
  exit 1
fi
cat "$tmp" >"$file"

# Every image but the model-sync CronJob's (rclone) is tideserve's.
images=$(kubectl kustomize "$repo/$overlay" | sed -n 's/^ *image: *//p' | grep -v '^docker.io/rclone/' | sort -u)
if [ "$images" != "$image@$digest" ]; then
  echo "deploy.sh: $overlay renders the images '$images', not $image@$digest" >&2
  exit 1
fi

cd "$repo"
if git diff --quiet -- "$overlay/kustomization.yaml"; then
  echo "deploy.sh: $env_name already runs $image@$digest"
  exit 0
fi
git add -- "$overlay/kustomization.yaml"
git commit -q -m "deploy/k8s/overlays/$env_name: $image@$digest [skip ci]" -- "$overlay/kustomization.yaml"
echo "deploy.sh: committed $env_name -> $image@$digest"
[ "$push" = --push ] || exit 0
branch=$(git rev-parse --abbrev-ref HEAD)
for attempt in 1 2 3 4 5; do
  if git push -q origin "HEAD:$branch"; then
    echo "deploy.sh: pushed to $branch"
    exit 0
  fi
  echo "deploy.sh: push rejected (attempt $attempt); rebasing onto origin/$branch" >&2
  git pull -q --rebase origin "$branch"
done
echo "deploy.sh: could not push to $branch" >&2
exit 1
