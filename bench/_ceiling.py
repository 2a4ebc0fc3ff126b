"""The ceiling of batched decoding: llama.cpp in this process, no server (a helper of bench/parallel.py and
bench/gpu/parallel.py; it needs only llama_cpp and numpy, so it runs on a GPU machine without the stack)."""
from __future__ import annotations

import time
from pathlib import Path


class Ceiling:
    """N sequences decoded together by llama.cpp itself: prefill all prompts in one batch, then one token of
    each sequence a step (greedy, end-of-generation ignored), in a context laid out as the backend's."""

    def __init__(self, path: Path, slots: int, threads: int, num_ctx: int, gpu_layers: int = 0):
        import llama_cpp
        from llama_cpp import _internals, _logger

        _logger.set_verbose(False)  # as the backend's Llama(verbose=False): no loader dump
        self.lib = llama_cpp
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers
        self.model = _internals.LlamaModel(path_model=str(path), params=mparams, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = num_ctx * slots, slots
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified, params.swa_full, params.no_perf = False, True, True
        params.offload_kqv = gpu_layers > 0
        self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = self.model.n_vocab()
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text.encode(), add_bos=self.model.add_bos_token(), special=False)

    def _decode(self, entries: list[tuple[int, list[int], int]]) -> list[int]:
        batch, n, rows = self.batch, 0, []
        for seq, tokens, pos in entries:
            for j, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos + j, 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = j == len(tokens) - 1
                n += 1
            rows.append(n - 1)
        batch.n_tokens = n
        if self.lib.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return rows

    def _argmax(self, row: int) -> int:
        import numpy as np

        logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
        return int(logits.argmax())

    def run(self, prompts: list[list[int]], tokens: int) -> dict:
        self.lib.llama_memory_clear(self.memory, True)
        began = time.perf_counter()
        rows = self._decode([(i, p, 0) for i, p in enumerate(prompts)])
        last = [self._argmax(r) for r in rows]
        first_token = time.perf_counter() - began
        for step in range(1, tokens):
            rows = self._decode([(i, [last[i]], len(p) + step - 1) for i, p in enumerate(prompts)])
            last = [self._argmax(r) for r in rows]
        wall = time.perf_counter() - began
        return {"tokens_per_s": len(prompts) * tokens / wall, "ttft_p50_s": first_token, "wall_s": wall}

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.context.close()
        self.model.close()
