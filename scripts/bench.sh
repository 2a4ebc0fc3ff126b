#!/usr/bin/env bash
# `make bench`: run every benchmark under bench/; each writes bench/results/<name>.json.
# `make bench ONLY=backend` runs one. Each runs as a module (python -m bench.NAME), a client of the llmops package
# and of tests/support; files named _*.py are its helpers (the result format, shared phases), not benchmarks.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
failed=0
for bench in bench/*.py; do
  name="$(basename "$bench" .py)"
  case "$name" in _*|__init__) continue ;; esac  # helpers, not benchmarks
  if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then continue; fi
  echo "== bench/$name"
  if ! .venv/bin/python -m "bench.$name"; then echo "bench/$name FAILED"; failed=1; fi
done
exit $failed
