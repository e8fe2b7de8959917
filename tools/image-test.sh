#!/usr/bin/env bash
# Builds tideserve's container image and runs it, without a Docker engine or a registry
# (CTest: deploy_image). Needs root and the Debian packages podman, buildah, debootstrap, runc.
#
#   tools/image-test.sh [--full] [--binary PATH] [--keep]
#
# 1. The base image debian:bookworm-slim is made locally (debootstrap --variant=minbase, slimmed
#    like the official one, `podman import`) and cached as a tarball under
#    ${TIDESERVE_CACHE_DIR:-~/.cache/tideserve} (rebuilt after 7 days).
# 2. deploy/docker/Dockerfile is built with `podman build --format docker` (OCI drops HEALTHCHECK).
#    By default the runtime stage takes the already built binary (BINARY_FROM=prebuilt: default
#    build/release/tideserve); --full builds the multi-stage path with the compile in the builder
#    stage, as CI's image job does.
# 3. The container runs on a loopback port: /health, /predict and the other routes answer
#    (deploy/smoke-test.sh), the server process runs as uid 1000, `podman healthcheck run` passes,
#    and `podman stop` ends it by SIGTERM within 5 s with exit status 0.
# Prints one line per step and the image size; exits 1 at the first failure, with the reason.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_dir=${TIDESERVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tideserve}
base_image=docker.io/library/debian:bookworm-slim
image=localhost/tideserve:image-test
full=0
keep=0
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1; shift ;;
    --binary) binary=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "image-test: unknown argument $1 (usage: --full --binary PATH --keep)" >&2; exit 2 ;;
  esac
done

fail() {
  echo "image-test: FAIL: $*" >&2
  exit 1
}
step_started=$SECONDS
step() {
  echo "image-test: $* ($((SECONDS - step_started)) s)"
  step_started=$SECONDS
}

# --- preflight: a machine where podman cannot run fails here, loudly ---------------------------

if [ "$(id -u)" -ne 0 ]; then
  fail "needs root (rootful podman with runc); run make test as root, as on CI"
fi
for tool in podman buildah debootstrap runc curl; do
  command -v "$tool" >/dev/null 2>&1 ||
    fail "$tool not found: run tools/install-deps.sh as root (Debian packages podman buildah debootstrap runc curl)"
done
mkdir -p "$cache_dir"
# runc instead of crun (this host's cgroups are hybrid), cgroupfs without systemd, and file limits
# podman's defaults would take from a host that may not allow them.
export CONTAINERS_CONF="$cache_dir/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
podman info >"$cache_dir/podman-info.txt" 2>&1 ||
  fail "podman cannot run on this machine: $(tail -n 3 "$cache_dir/podman-info.txt")"

work=$(mktemp -d)
container=tideserve-image-test-$$
cleanup() {
  if [ "$keep" = 0 ]; then podman rm -f "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Serialize the base image and builds: CTest or two users may run this at once.
exec 9>"$cache_dir/image-test.lock"
flock 9

# --- 1. base image --------------------------------------------------------------------------

base_tar="$cache_dir/debian-bookworm-slim.tar"
if [ -f "$base_tar" ] && [ -z "$(find "$base_tar" -mtime -7)" ]; then
  echo "image-test: base image tarball older than 7 days, making it again"
  rm -f "$base_tar"
  podman rmi -f "$base_image" >/dev/null 2>&1 || true
fi
if [ ! -f "$base_tar" ]; then
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    fail "debootstrap failed: $(tail -n 5 "$work/debootstrap.log")"
  # What bookworm-slim does: no docs, man pages or locales from later installs, empty apt lists,
  # the security and updates suites.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  podman rmi -f "$base_image" >/dev/null 2>&1 || true
  step "made the base image with debootstrap"
fi
if ! podman image exists "$base_image"; then
  podman import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$base_tar" "$base_image" >/dev/null || fail "podman import of the base image failed"
  step "imported $base_image from $base_tar"
fi

# --- 2. build -------------------------------------------------------------------------------

context="$work/context"
mkdir -p "$context"
(cd "$repo" && tar -cf - deploy/docker models/tideserve-tiny-zh) | tar -C "$context" -xf -
build_args=()
if [ "$full" = 1 ]; then
  (cd "$repo" && tar -cf - CMakeLists.txt CMakePresets.json src) | tar -C "$context" -xf -
  build_args+=(--build-arg BINARY_FROM=builder)
  what="multi-stage build (compiles in the builder stage)"
else
  if [ -z "$binary" ]; then
    for candidate in "$repo/build/release/tideserve" "$repo/build/release/src/tideserve/cli/tideserve"; do
      if [ -x "$candidate" ]; then binary=$candidate; break; fi
    done
  fi
  if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    fail "no built binary (build/release/tideserve): run make build first"
  fi
  mkdir -p "$context/prebuilt"
  cp "$binary" "$context/prebuilt/tideserve"
  strip "$context/prebuilt/tideserve" 2>/dev/null || true
  "$repo/deploy/docker/runtime-packages.sh" "$binary" >"$context/prebuilt/runtime-packages.txt" ||
    fail "cannot list the runtime packages of $binary"
  build_args+=(--build-arg BINARY_FROM=prebuilt)
  what="runtime stage from the prebuilt $binary"
fi
if ! podman build --format docker --pull=never --layers -f "$context/deploy/docker/Dockerfile" \
  "${build_args[@]}" -t "$image" "$context" >"$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  fail "podman build failed ($what)"
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
step "built $image: $what; image size $((size / 1048576)) MiB"

# --- 3. image metadata ------------------------------------------------------------------------

inspect() { podman image inspect --format "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = "1000:1000" ] || fail "image user is '$(inspect '{{.Config.User}}')', want 1000:1000"
[ "$(inspect '{{.Config.StopSignal}}')" = "SIGTERM" ] || fail "STOPSIGNAL is '$(inspect '{{.Config.StopSignal}}')'"
inspect '{{json .Config.ExposedPorts}}' | grep -q '"8000/tcp"' || fail "port 8000 is not exposed"
inspect '{{json .Config.Entrypoint}}' | grep -qx '\["tideserve","serve"\]' ||
  fail "entrypoint is $(inspect '{{json .Config.Entrypoint}}'), want [\"tideserve\",\"serve\"]"
inspect '{{json .Config.Healthcheck}}' | grep -q 'tideserve","healthcheck' ||
  fail "no HEALTHCHECK running tideserve healthcheck (built with --format docker?)"
inspect '{{json .Config.Env}}' | grep -q 'MODEL_NAME=/opt/tideserve/models/tideserve-tiny-zh' ||
  fail "MODEL_NAME does not default to the bundled model"
extras=$(podman run --rm --no-healthcheck --entrypoint /bin/sh "$image" -c 'for t in curl wget python3; do command -v $t; done' || true)
[ -z "$extras" ] || fail "the runtime image carries tools it should not: $extras"
uid=$(podman run --rm --no-healthcheck --entrypoint /usr/bin/id "$image" -u)
[ "$uid" = 1000 ] || fail "container runs as uid $uid"
podman run --rm --no-healthcheck --entrypoint tideserve "$image" --help >"$work/help.txt" 2>&1 ||
  fail "tideserve --help fails in the container: $(head -n 5 "$work/help.txt")"
step "metadata: user 1000:1000, EXPOSE 8000, STOPSIGNAL SIGTERM, HEALTHCHECK, entrypoint tideserve serve; --help runs as uid 1000"

# `tideserve serve --help` must exist (CLI11 answers a top-level --help even for an unknown
# subcommand, so look for serve's own --port option).
if ! podman run --rm --no-healthcheck "$image" --help >"$work/serve-help.txt" 2>&1 ||
  ! grep -q -- '--port' "$work/serve-help.txt"; then
  fail "the image's entrypoint 'tideserve serve' does not exist in this binary: $(head -n 3 "$work/serve-help.txt")"
fi

# --- 4. run -----------------------------------------------------------------------------------

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# (Without systemd, podman logs that it cannot schedule the healthcheck timer; the check itself
# runs below with `podman healthcheck run`.)
podman run -d --name "$container" -p "127.0.0.1:$port:8000" "$image" >"$work/run.log" 2>&1 ||
  fail "podman run failed: $(cat "$work/run.log")"
base_url="http://127.0.0.1:$port"
ready=0
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null --max-time 2 "$base_url/v2/health/ready" 2>/dev/null; then ready=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$container")" = true ] || break
  sleep 0.5
done
if [ "$ready" = 0 ]; then
  podman logs "$container" 2>&1 | tail -n 20 >&2
  fail "the container did not become ready on $base_url within 60 s"
fi
step "container ready on $base_url"

"$repo/deploy/smoke-test.sh" "$base_url" || fail "smoke test against the container failed"
step "routes answer (/health, /predict, /embed, /v1/embeddings, /metrics)"

pid=$(podman inspect --format '{{.State.Pid}}' "$container")
host_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$host_uid" = 1000 ] || fail "the server process runs as uid $host_uid, want 1000"
[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" = "tideserve serve " ] ||
  fail "PID 1 of the container is '$(tr '\0' ' ' <"/proc/$pid/cmdline")', want tideserve serve"
step "the server process is PID 1 of the container and runs as uid 1000"

podman healthcheck run "$container" >"$work/health.txt" 2>&1 ||
  fail "podman healthcheck run: $(cat "$work/health.txt")"
step "HEALTHCHECK passes (podman healthcheck run)"

# --- 5. stop ---------------------------------------------------------------------------------

# A 10 s timeout: were SIGTERM ignored, podman would SIGKILL after 10 s and the exit status
# would be 137, so both the time and the status below tell.
stop_started=$(date +%s.%N)
podman stop -t 10 "$container" >"$work/stop.log" 2>&1 || fail "podman stop: $(cat "$work/stop.log")"
stop_secs=$(python3 -c "print(round($(date +%s.%N) - $stop_started, 2))")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || {
  podman logs "$container" 2>&1 | tail -n 10 >&2
  fail "exit status after podman stop is $exit_code, want 0"
}
python3 -c "import sys; sys.exit(0 if $stop_secs <= 5 else 1)" ||
  fail "podman stop took ${stop_secs} s, want <= 5 s"
# (Read the logs whole first: with pipefail, grep -q quitting early can SIGPIPE podman logs.)
podman logs "$container" >"$work/container.log" 2>&1
grep -q 'shutting_down' "$work/container.log" ||
  fail "no shutting_down event in the logs: the server did not see the SIGTERM"
step "podman stop: SIGTERM, exit 0 in ${stop_secs} s"

echo "image-test: PASS ($what; image size $((size / 1048576)) MiB)"
