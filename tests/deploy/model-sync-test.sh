#!/usr/bin/env bash
# Runs the model-sync script (deploy/k8s/base/model-sync/sync.sh) against a local source and
# repository and checks the rename convention (deploy/README.md, "Model updates"):
#   - versions are copied into a dot-named directory, verified, then renamed into place
#   - a version already in the repository is never written again
#   - a version with a missing required file, a SHA256SUMS mismatch, an unlisted file or (with
#     REQUIRE_MANIFEST=true) no SHA256SUMS is refused, and nothing of it is left behind
#   - only the SYNC_NEWEST newest versions, only positive integer names
#   - a version another sync holds the lock of is skipped; stale leftovers are removed
#   - tideserve.json is replaced by rename, after the versions
#
#   tests/deploy/model-sync-test.sh [ROOT]     ROOT: a tree laid out like this repository
#
# rclone is replaced by a stub that copies local paths and logs each destination. The script runs
# under sh, and where busybox is installed also under busybox sh with busybox's applets (the
# rclone image's shell and tools).
# tools/validate-deploy runs this as its model-sync check.
set -euo pipefail

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
script="$root/deploy/k8s/base/model-sync/sync.sh"
[ -f "$script" ] || { echo "no $script"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The rclone stub: lsf --dirs-only|--files-only PATH, copy SRC DIR, copyto SRC FILE.
mkdir -p "$work/bin"
cat >"$work/bin/rclone" <<'STUB'
#!/bin/sh
set -eu
echo "$*" >>"$RCLONE_LOG"
case $1 in
  lsf)
    [ -d "$3" ] || { echo "rclone stub: directory not found: $3" >&2; exit 3; }
    for e in "$3"/*; do
      [ -e "$e" ] || continue
      if [ "$2" = --dirs-only ] && [ -d "$e" ]; then echo "${e##*/}/"; fi
      if [ "$2" = --files-only ] && [ -f "$e" ]; then echo "${e##*/}"; fi
    done ;;
  copy) mkdir -p "$3" && cp -R "$2"/. "$3"/ ;;
  copyto) cp "$2" "$3" ;;
  *) echo "rclone stub: unsupported: $*" >&2; exit 2 ;;
esac
STUB
chmod +x "$work/bin/rclone"

# write_sums DIR: SHA256SUMS listing every other file of DIR.
write_sums() {
  (cd "$1" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum) >"$work/sums"
  mv "$work/sums" "$1/SHA256SUMS"
}

# make_version DIR [NO_MANIFEST]: a small model directory with its SHA256SUMS.
make_version() {
  mkdir -p "$1/1_Pooling"
  echo '{"model_type": "bert"}' >"$1/config.json"
  head -c 4096 /dev/urandom >"$1/model.safetensors"
  echo '[CLS]' >"$1/vocab.txt"
  echo '{"pooling_mode_mean_tokens": true}' >"$1/1_Pooling/config.json"
  if [ "${2:-}" != no-manifest ]; then write_sums "$1"; fi
}

# With busybox, its applets come first in PATH too (find, sha256sum, mv, ... as in the image).
shells=(sh)
if command -v busybox >/dev/null 2>&1; then
  shells+=("busybox sh")
  mkdir -p "$work/busybox"
  for applet in $(busybox --list); do ln -s "$(command -v busybox)" "$work/busybox/$applet"; done
fi

for shell in "${shells[@]}"; do
  read -ra shell_cmd <<<"$shell"
  path="$work/bin:$PATH"
  if [ "$shell" != sh ]; then path="$work/bin:$work/busybox:$PATH"; fi
  t="$work/${shell// /-}"
  src="$t/source"
  repo="$t/models"
  log="$t/rclone.log"
  mkdir -p "$src/bert" "$repo"
  # run NAME EXPECTED_STATUS [VAR=VALUE...]: one run of the script.
  run() {
    local name=$1 want=$2 status=0
    shift 2
    : >"$log"
    env PATH="$path" RCLONE_LOG="$log" MODEL_REPOSITORY="$repo" MODEL_SOURCE="$src" \
      MODELS=bert "$@" "${shell_cmd[@]}" "$script" >"$t/$name.out" 2>&1 || status=$?
    if [ "$status" != "$want" ]; then
      fail "[$shell] $name: exit $status, want $want"
      sed 's/^/    /' "$t/$name.out"
    fi
  }
  # No copy may write where tideserve scans: every copy's destination is a dot name.
  copies_hidden() {
    local dest
    while read -r verb _ dest; do
      case $verb in copy | copyto) ;; *) continue ;; esac
      case ${dest##*/} in
        .*) ;;
        *) fail "[$shell] $1: rclone $verb wrote straight to $dest, not to a dot-named copy" ;;
      esac
    done <"$log"
  }
  no_leftovers() {
    local left
    left=$(find "$repo" -mindepth 2 -maxdepth 2 -name '.*' | sort | tr '\n' ' ')
    [ -z "$left" ] || fail "[$shell] $1: left behind: $left"
  }

  # 1. Three versions at the source, plus names that are not versions: only 3 comes in.
  for v in 1 2 3; do make_version "$src/bert/$v"; done
  make_version "$src/bert/latest"
  make_version "$src/bert/04"
  run first 0
  copies_hidden first
  no_leftovers first
  [ -d "$repo/bert/3" ] || fail "[$shell] first: version 3 not in place"
  for v in 1 2 latest 04; do [ ! -e "$repo/bert/$v" ] || fail "[$shell] first: $v synced (SYNC_NEWEST=1)"; done
  if [ -d "$repo/bert/3" ]; then
    diff -r "$src/bert/3" "$repo/bert/3" >/dev/null || fail "[$shell] first: version 3 differs from the source"
    [ -f "$repo/bert/3/1_Pooling/config.json" ] || fail "[$shell] first: subdirectories not copied"
  fi

  # 2. Again, with the source's version 3 changed: the repository's copy stays as it was.
  echo changed >"$src/bert/3/vocab.txt"
  write_sums "$src/bert/3"
  run again 0
  grep -q '^copy ' "$log" && fail "[$shell] again: copied a version that is already in the repository"
  [ "$(cat "$repo/bert/3/vocab.txt" 2>/dev/null)" = "[CLS]" ] || fail "[$shell] again: version 3 was overwritten"

  # 3. SYNC_NEWEST=all brings the older versions in.
  run all 0 SYNC_NEWEST=all
  for v in 1 2; do [ -d "$repo/bert/$v" ] || fail "[$shell] all: version $v not in place"; done
  no_leftovers all

  # 4. Refused versions: nothing of them stays, the run fails.
  make_version "$src/bert/4"
  echo tampered >>"$src/bert/4/model.safetensors"
  run checksum 1
  [ ! -e "$repo/bert/4" ] || fail "[$shell] checksum: a version failing SHA256SUMS was put in place"
  no_leftovers checksum
  rm -rf "$src/bert/4"

  make_version "$src/bert/5"
  rm "$src/bert/5/model.safetensors"
  write_sums "$src/bert/5"
  run missing-file 1
  [ ! -e "$repo/bert/5" ] || fail "[$shell] missing-file: a version without model.safetensors was put in place"
  no_leftovers missing-file
  rm -rf "$src/bert/5"

  make_version "$src/bert/6"
  echo extra >"$src/bert/6/unlisted.bin"
  run unlisted 1
  [ ! -e "$repo/bert/6" ] || fail "[$shell] unlisted: a version with a file SHA256SUMS does not list was put in place"
  rm -rf "$src/bert/6"

  make_version "$src/bert/7" no-manifest
  run no-manifest 1
  [ ! -e "$repo/bert/7" ] || fail "[$shell] no-manifest: a version without SHA256SUMS was put in place"
  no_leftovers no-manifest
  run no-manifest-allowed 0 REQUIRE_MANIFEST=false
  [ -d "$repo/bert/7" ] || fail "[$shell] no-manifest-allowed: version 7 not in place with REQUIRE_MANIFEST=false"

  # 5. A lock held by another sync: skipped, left alone. A stale one: removed, version synced.
  make_version "$src/bert/8"
  mkdir "$repo/bert/.8.lock"
  run locked 0
  [ ! -e "$repo/bert/8" ] || fail "[$shell] locked: synced a version another sync holds"
  [ -d "$repo/bert/.8.lock" ] || fail "[$shell] locked: removed another sync's fresh lock"
  mkdir -p "$repo/bert/.8.tmp-old"
  touch -d '3 days ago' "$repo/bert/.8.lock" "$repo/bert/.8.tmp-old"
  run stale 0
  [ -d "$repo/bert/8" ] || fail "[$shell] stale: version 8 not in place after its stale lock"
  no_leftovers stale

  # 6. The version policy: copied by rename, after the versions, only when it changed.
  echo '{"version_policy": "latest"}' >"$src/bert/tideserve.json"
  run policy 0
  cmp -s "$src/bert/tideserve.json" "$repo/bert/tideserve.json" || fail "[$shell] policy: tideserve.json not copied"
  copies_hidden policy
  no_leftovers policy

  # 7. Bad settings are refused before anything is written.
  run bad-newest 1 SYNC_NEWEST=0
  run no-repository 1 MODEL_REPOSITORY="$t/absent"
done

if [ "$failures" -gt 0 ]; then
  echo "model-sync: $failures failure(s)"
  exit 1
fi
echo "model-sync: all cases passed (${shells[*]})"
