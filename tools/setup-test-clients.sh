#!/usr/bin/env bash
# Installs the npm packages that tests use as independent clients and references
# (tests/clients/package.json). Idempotent: reinstalls only when package.json changed.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -f node_modules/.tideserve-stamp ] || [ package.json -nt node_modules/.tideserve-stamp ]; then
  npm install --no-audit --no-fund --loglevel=error
  mkdir -p node_modules && touch node_modules/.tideserve-stamp
fi
