#!/usr/bin/env bash
# The GPU check's one command on the device machine (carry .gpu; docs/benchmarks.md): build llama-cpp-python
# with CUDA for Hopper (sm_90) from the carried source, write the random-weight SmolLM2-shaped model, decode.
set -euo pipefail
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=16
started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .gpu/llama-cpp-python-*-slim.tar.gz \
  > "${OUT:-/tmp}/build.log" 2>&1 || { tail -40 "${OUT:-/tmp}/build.log"; exit 1; }
echo "built in $(( $(date +%s) - started )) s"
export PYTHONPATH=/tmp/site:$PWD/.gpu/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m bench.gpu.parallel synth .gpu/smollm2-shape.json /tmp/smollm2-random.gguf
python3 -m bench.gpu.parallel run /tmp/smollm2-random.gguf --out "${OUT:-/tmp}/gpu_parallel.json"
