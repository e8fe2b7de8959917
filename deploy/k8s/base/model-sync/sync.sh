#!/bin/sh
# tideserve model sync: the one writer of the model repository (deploy/README.md, "Model updates").
# Copies model versions from MODEL_SOURCE (an rclone remote:path, or a local path) into
# MODEL_REPOSITORY with the rename convention tideserve relies on:
#
#   MODEL_SOURCE/<name>/<version>/      what a release publishes (a Hugging Face model directory,
#                                       SHA256SUMS beside its files)
#   MODEL_REPOSITORY/<name>/.<version>.tmp-<id>/   copied and verified here (never scanned: a dot)
#   MODEL_REPOSITORY/<name>/<version>/  renamed into place in one rename(2): complete or absent
#
# A version already in the repository is never written again, whatever the source now holds.
# Runs in the CronJob tideserve-model-sync (POSIX sh: busybox in the rclone image).
#
# Environment:
#   MODEL_REPOSITORY   the repository volume (required; /models in the CronJob)
#   MODEL_SOURCE       where versions come from (required), e.g. models:tideserve-models
#   MODELS             model names to sync, space-separated (empty: every directory of the source)
#   SYNC_NEWEST        how many of each model's newest source versions to bring in (default 1;
#                      "all" for every one)
#   REQUIRED_FILES     files each version must have, non-empty (default config.json model.safetensors)
#   REQUIRE_MANIFEST   true (default): a version without SHA256SUMS is refused; false: checked
#                      only when present. SHA256SUMS must list every file of the version.
#   STALE_MINUTES      leftovers of killed runs (.<version>.tmp-*, .<version>.lock) older than
#                      this are removed (default 1440)
#   RCLONE             the rclone command (default rclone)
# Exit status: 0 when every selected version is in place, 1 when any was refused or failed.
set -eu

repo=${MODEL_REPOSITORY:?MODEL_REPOSITORY is not set}
source=${MODEL_SOURCE:?MODEL_SOURCE is not set}
models=${MODELS:-}
newest=${SYNC_NEWEST:-1}
required_files=${REQUIRED_FILES:-config.json model.safetensors}
require_manifest=${REQUIRE_MANIFEST:-true}
stale_minutes=${STALE_MINUTES:-1440}
rclone=${RCLONE:-rclone}
run_id="$(hostname 2>/dev/null || echo sync)-$$"

log() { printf 'model-sync: %s\n' "$*"; }
die() { log "$*"; exit 1; }

case $newest in
  all) ;;
  '' | 0* | *[!0-9]*) die "SYNC_NEWEST must be a positive integer or all, not '$newest'" ;;
esac
case $require_manifest in true | false) ;; *) die "REQUIRE_MANIFEST must be true or false" ;; esac
[ -d "$repo" ] || die "MODEL_REPOSITORY $repo is not a directory (is the volume mounted?)"
[ -w "$repo" ] || die "MODEL_REPOSITORY $repo is not writable by uid $(id -u)"

# What this run has in flight, removed if it stops half-way (SIGTERM at activeDeadlineSeconds).
current_tmp=""
current_lock=""
cleanup() {
  if [ -n "$current_tmp" ]; then rm -rf "$current_tmp"; fi
  if [ -n "$current_lock" ]; then rmdir "$current_lock" 2>/dev/null || true; fi
  current_tmp=""
  current_lock=""
}
trap cleanup EXIT
trap 'cleanup; exit 143' TERM INT

# A version is a positive integer without leading zeros (so 2 and 02 cannot both exist).
is_version() {
  case $1 in '' | 0* | *[!0-9]*) return 1 ;; esac
  return 0
}
# A model name is one path component that tideserve scans (no leading dot).
is_name() {
  case $1 in '' | .* | */* | *[!A-Za-z0-9._-]*) return 1 ;; esac
  return 0
}

# Directories directly under an rclone path, one per line, without the trailing slash.
list_dirs() {
  "$rclone" lsf --dirs-only "$1" | sed 's|/$||'
}

# verify DIR WHAT: the required files are there and every file matches SHA256SUMS.
verify() {
  dir=$1
  what=$2
  for f in $required_files; do
    if [ ! -s "$dir/$f" ]; then
      log "$what: refused: $f is missing or empty"
      return 1
    fi
  done
  if [ ! -f "$dir/SHA256SUMS" ]; then
    if [ "$require_manifest" = true ]; then
      log "$what: refused: no SHA256SUMS (REQUIRE_MANIFEST=true)"
      return 1
    fi
    log "$what: no SHA256SUMS; checked the required files only"
    return 0
  fi
  # Every file of the version is listed, and nothing listed is missing.
  listed=$(sed -e 's/^[0-9a-fA-F]\{64\} [ *]//' -e 's|^\./||' "$dir/SHA256SUMS" | sort)
  present=$(cd "$dir" && find . -type f ! -path ./SHA256SUMS | sed 's|^\./||' | sort)
  if [ "$listed" != "$present" ]; then
    log "$what: refused: SHA256SUMS does not list exactly the files of the version"
    log "  listed:  $(echo "$listed" | tr '\n' ' ')"
    log "  present: $(echo "$present" | tr '\n' ' ')"
    return 1
  fi
  if ! (cd "$dir" && sha256sum -c SHA256SUMS >/dev/null); then
    log "$what: refused: a file does not match its SHA256SUMS entry"
    return 1
  fi
  return 0
}

# sync_version NAME VERSION: copy, verify, rename into place; never touches an existing version.
sync_version() {
  name=$1
  version=$2
  dst="$repo/$name/$version"
  if [ -e "$dst" ]; then
    log "$name/$version: already in the repository, left as it is"
    return 0
  fi
  # One writer per version: mkdir is atomic, also on NFS. A second sync (a manual Job beside the
  # CronJob's) skips the version instead of racing for the rename.
  if ! mkdir "$repo/$name/.$version.lock" 2>/dev/null; then
    log "$name/$version: another sync holds $repo/$name/.$version.lock; skipped"
    return 0
  fi
  current_lock="$repo/$name/.$version.lock"
  current_tmp="$repo/$name/.$version.tmp-$run_id"
  rm -rf "$current_tmp"
  mkdir "$current_tmp"
  log "$name/$version: copying $source/$name/$version"
  if ! "$rclone" copy "$source/$name/$version" "$current_tmp"; then
    log "$name/$version: copy failed"
    cleanup
    return 1
  fi
  if ! verify "$current_tmp" "$name/$version"; then
    cleanup
    return 1
  fi
  chmod -R a+rX,go-w "$current_tmp"
  sync
  if [ -e "$dst" ]; then
    log "$name/$version: appeared while copying; left as it is"
    cleanup
    return 0
  fi
  # rename(2) within one filesystem: tideserve sees the complete version or nothing.
  mv "$current_tmp" "$dst"
  tmp_name=${current_tmp##*/}
  current_tmp=""
  if [ -e "$dst/$tmp_name" ]; then
    die "$name/$version: mv moved the copy into an existing $dst; remove $dst/$tmp_name by hand"
  fi
  rmdir "$current_lock"
  current_lock=""
  log "$name/$version: in place"
  return 0
}

# sync_policy NAME: the source's <name>/tideserve.json (the version policy), replaced by rename.
sync_policy() {
  name=$1
  if ! "$rclone" lsf --files-only "$source/$name" | grep -qx 'tideserve.json'; then
    return 0
  fi
  current_tmp="$repo/$name/.tideserve.json.tmp-$run_id"
  if ! "$rclone" copyto "$source/$name/tideserve.json" "$current_tmp"; then
    log "$name: copying tideserve.json failed"
    cleanup
    return 1
  fi
  if [ -f "$repo/$name/tideserve.json" ] && cmp -s "$current_tmp" "$repo/$name/tideserve.json"; then
    cleanup
    return 0
  fi
  chmod a+r,go-w "$current_tmp"
  mv -f "$current_tmp" "$repo/$name/tideserve.json"
  current_tmp=""
  log "$name: tideserve.json updated"
  return 0
}

# Leftovers of runs that were killed before their cleanup ran.
find "$repo" -mindepth 2 -maxdepth 2 \( -name '.*.tmp-*' -o -name '.*.lock' \) \
  -mmin +"$stale_minutes" -exec rm -rf {} \; 2>/dev/null || true

if [ -z "$models" ]; then
  models=$(list_dirs "$source") || die "cannot list $source"
fi

failures=0
for name in $models; do
  if ! is_name "$name"; then
    log "skipping '$name': not a model name"
    continue
  fi
  if ! all_versions=$(list_dirs "$source/$name"); then
    log "$name: cannot list $source/$name"
    failures=$((failures + 1))
    continue
  fi
  versions=$(for v in $all_versions; do if is_version "$v"; then echo "$v"; fi; done | sort -n)
  if [ "$newest" != all ]; then versions=$(echo "$versions" | tail -n "$newest"); fi
  if [ -z "$versions" ]; then
    log "$name: no versions at $source/$name"
    continue
  fi
  mkdir -p "$repo/$name"
  for version in $versions; do
    sync_version "$name" "$version" || failures=$((failures + 1))
  done
  # After the versions: a policy naming a new version finds it in place.
  sync_policy "$name" || failures=$((failures + 1))
done

if [ "$failures" -gt 0 ]; then
  die "$failures failure(s)"
fi
log "done"
