#!/usr/bin/env bash
# The one way the LiteLLM proxy starts (supervisor and `make start-litellm` both use it).
# Loads .env (the environment wins over it), validates litellm_config.yaml (errors name the
# file and line), renders .run/litellm_config.yaml for the configured backends, and execs
# the proxy with the host, port and worker settings. The work is in llmops/proxy/config.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "error: $PY not found; run 'make setup' first" >&2; exit 2; }
cd "$ROOT"
exec "$PY" -m llmops proxy launch "$@"
