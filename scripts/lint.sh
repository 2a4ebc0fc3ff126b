#!/usr/bin/env bash
# `make lint`: ruff on the Python code, the proxy config check, promtool on the rules, amtool on Alertmanager's config.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
.venv/bin/ruff check llmops scripts tests bench dashboard.py
.venv/bin/python -m llmops proxy check litellm_config.yaml
if command -v promtool >/dev/null; then
  promtool check rules rules/*.rules.yml
else
  echo "promtool not installed: rules not checked (make setup installs it)"
fi
.venv/bin/python -m llmops alerts check
