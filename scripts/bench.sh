#!/usr/bin/env bash
# `make bench`: run every benchmark under bench/; each writes bench/results/<name>.json.
# `make bench ONLY=backend` runs one. Files named _*.py are helpers (fakes), not benchmarks.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
failed=0
for bench in bench/*.py; do
  name="$(basename "$bench" .py)"
  case "$name" in _*) continue ;; esac  # helpers (fakes), not benchmarks
  if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then continue; fi
  echo "== bench/$name"
  if ! .venv/bin/python "$bench"; then echo "bench/$name FAILED"; failed=1; fi
done
exit $failed
