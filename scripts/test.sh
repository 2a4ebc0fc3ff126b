#!/usr/bin/env bash
# `make test`: install what the tests need on a fresh machine (venv, engine, model, Prometheus,
# node_exporter, Chromium), then run every test: unit, integration against a real stack started on
# test ports (.run-test/, stopped afterwards), browser, and promtool's rule tests.
# `--soak` runs the long reliability tests instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --test-tools
mkdir -p test-artifacts
if [ "${1:-}" = "--soak" ]; then
  shift
  exec .venv/bin/python -m pytest -m soak -p no:cacheprovider "$@" tests
fi
exec .venv/bin/python -m pytest -m "not soak" -p no:cacheprovider "$@" tests
