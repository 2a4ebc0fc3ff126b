#!/usr/bin/env bash
# Prepare what the GPU check carries to the device machine (docs/benchmarks.md, "GPU check"), in .gpu/
# (ignored through .git/info/exclude): llama-cpp-python's source without its git pack, vocab files and op
# tables (the sdist is 77 MB, over the device tool's 64 MiB), the pure-Python gguf and diskcache packages
# the device image lacks, and SmolLM2-135M's metadata and tensor shapes (the model itself is 98 MB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VERSION=0.3.36
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> "$(git rev-parse --git-path info/exclude)"
mkdir -p .gpu/site
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
.venv/bin/pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$VERSION"
tar -xzf "$tmp/llama_cpp_python-$VERSION.tar.gz" -C "$tmp"
src="$tmp/llama_cpp_python-$VERSION"
rm -rf "$src/.git" "$src/vendor/llama.cpp/models"/*.gguf "$src/vendor/llama.cpp/docs" "$src/vendor/llama.cpp/examples" \
       "$src/vendor/llama.cpp/tests"
tar -czf ".gpu/llama-cpp-python-$VERSION-slim.tar.gz" -C "$tmp" "llama_cpp_python-$VERSION"
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf .gpu/site/gguf .gpu/site/diskcache
cp -r "$site/gguf" "$site/diskcache" .gpu/site/
.venv/bin/python -m bench.gpu.parallel dump .gpu/smollm2-shape.json
du -sh .gpu
