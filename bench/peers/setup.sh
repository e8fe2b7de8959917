#!/usr/bin/env bash
# Installs the benchmark's npm peer (onnxruntime-node, bench/peers/package.json) into
# bench/peers/node_modules. Idempotent: reinstalls only when package.json changed.
# ONNXRUNTIME_NODE_INSTALL=skip: use the CPU library the package ships, download nothing else.
set -euo pipefail
cd "$(dirname "$0")"
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -f node_modules/.tideserve-stamp ] || [ package.json -nt node_modules/.tideserve-stamp ]; then
  npm install --no-audit --no-fund --no-package-lock --loglevel=error
  mkdir -p node_modules && touch node_modules/.tideserve-stamp
fi
# The bundled CPU library must load offline.
node -e "require('onnxruntime-node')" >/dev/null
