#!/usr/bin/env bash
# Installs every Debian package that tideserve's build, tests and benchmarks need.
# Idempotent: runs `apt-get update` and `apt-get install` only when something is missing.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ make ccache pkg-config clang-format
  # fuzzing (fuzz/): clang and its libFuzzer and sanitizer runtimes
  clang libclang-rt-14-dev
  # libraries
  libdnnl-dev libutf8proc-dev libsimdjson-dev libfmt-dev libcli11-dev libboost1.74-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  # `tideserve plan`: Kubernetes manifests are YAML (anchors, several documents, block scalars)
  libyaml-cpp-dev
  # worker mode: the Redis client library (hiredis); the tests' real broker (redis-server)
  libhiredis-dev redis-server
  # reference numerics (fixture goldens) and test clients
  python3-torch python3-numpy
  # serving tests: real HTTP clients, Prometheus' promtool, load generator
  curl wrk prometheus
  # plan tests and validation: the SVG plot rendered to pixels; a real load balancer in front of
  # several replicas (bench/plan)
  librsvg2-bin haproxy
  # deploy checks (tools/validate-deploy, tools/image-test.sh): linters, image build and run
  # without a Docker engine
  yamllint shellcheck python3-yaml podman buildah debootstrap runc
  # benchmarks (bench/): ONNX export for the ONNX Runtime peer, the FastAPI seed service, and
  # OpenBLAS for PyTorch's GEMMs (Debian's torch otherwise calls the reference netlib BLAS)
  python3-onnx python3-fastapi python3-uvicorn libopenblas0-pthread
)
# deploy checks: Debian's kubectl (`kubectl kustomize`), unless another package already owns
# /usr/bin/kubectl (the two conflict); tools/validate-deploy then unpacks Debian's from its .deb.
if ! dpkg-query -S /usr/bin/kubectl >/dev/null 2>&1; then
  packages+=(kubernetes-client)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm (test clients: HF tokenizers, openai); a machine may already carry its own build.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
