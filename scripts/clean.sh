#!/usr/bin/env bash
# `make clean`: stop the stack (and a test stack left running), then remove .venv, runtime state and
# logs. Keeps .env and Prometheus's history. Nothing is removed if a stack cannot be stopped, so no
# running service loses its pid file and socket.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -x .venv/bin/python ]; then
  .venv/bin/python -m llmops stop
  for state in .run-test/state .run-test/lc/state .run-test/scaleout/state; do
    if [ -S "$state/supervisor.sock" ]; then LLMOPS_STATE_DIR="$state" LLMOPS_ENV_FILE=/dev/null .venv/bin/python -m llmops stop; fi
  done
fi
rm -rf .venv .run .run-test .run-bench logs .pytest_cache test-artifacts
echo "removed .venv, .run, logs and test state (kept .env and data/prometheus)"
