"""Benchmark: the embedded backend's models, loads, grammars and embeddings, each beside its same-run baseline.

Run: .venv/bin/python -m bench.backend_models [--rounds 3]
One backend process (scripts/embedded_backend.py) and, for the in-process baselines, llama-cpp-python in
this process on the same GGUF with the same thread count; rounds alternate between the two sides.
- embeddings/s over /api/embed vs Llama.embed in-process: single short texts (from 4 clients at once, and from
  one client a request at a time), and batches of 32;
- JSON-mode output tokens/s (format "json") vs unconstrained, same model, prompt and seed, both over HTTP;
- cold load (load_duration of an empty request after keep_alive 0) of smollm2:135m and gemma3:270m;
- the backend's RSS after every model is unloaded vs its idle RSS before the first load.
The embedding figures need all-minilm:22m (llmops.backend.embedmodel, or --embed-gguf PATH).
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent


SMOL, GEMMA, MINILM = "smollm2:135m", "gemma3:270m", "all-minilm:22m"
TEXTS = [f"sentence number {i} about {topic}" for i, topic in enumerate(
    ["cats", "rivers", "bread", "trains", "stars", "music", "taxes", "gardens"] * 8)]
JSON_PROMPT = "Describe a small town as a JSON object with a few keys."


def embed_gguf(given: str) -> Path | None:
    if given:
        return Path(given)
    try:
        from llmops.backend.embedmodel import ensure_gguf  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(ensure_gguf())


class Backend:
    """scripts/embedded_backend.py on a free port, with a fresh models folder."""

    def __init__(self, models_dir: Path, embed: Path | None, threads: int):
        if embed is not None:
            (models_dir / ".llmops-models.json").write_text(json.dumps({"links": {MINILM: str(embed)}, "hidden": []}))
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "embedded_backend.py"), "--host", "127.0.0.1", "--port", "0",
             "--models-dir", str(models_dir), "--no-access-log", "--threads", str(threads), "--num-ctx", "2048"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT),
        )
        for line in self.proc.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise SystemExit("backend did not start")
        self.http = requests.Session()
        # A plain keep-alive connection for the timed calls: it measures the server, not a client library.
        self.conn = self.connect()

    def connect(self) -> http.client.HTTPConnection:
        host, port = self.url.removeprefix("http://").split(":")
        return http.client.HTTPConnection(host, int(port), timeout=600)

    def post(self, path: str, body: dict, conn: http.client.HTTPConnection | None = None) -> dict:
        conn = conn or self.conn
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {data[:200]!r}")
        return json.loads(data)

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def embeddings_per_s(backend: Backend, llama, rounds: int, connections: int) -> dict:
    """Texts/s on each side; the sides alternate, so that other load on the machine hits both alike.

    Over HTTP, single texts go two ways: one connection, one request at a time (what one client's latency
    allows: every text pays a full round trip), and `connections` clients at once (what the server can
    serve: the requests that wait gather into one batch). In-process, Llama.embed takes one text a call."""
    spent = {"http_single": 0.0, "http_single_concurrent": 0.0, "raw_single": 0.0, "http_batch32": 0.0,
             "raw_batch32": 0.0}
    backend.post("/api/embed", {"model": MINILM, "input": "warm up"})
    llama.embed(["warm up"])
    clients = [backend.connect() for _ in range(connections)]
    pool = ThreadPoolExecutor(connections)

    done = dict.fromkeys(spent, 0)

    def timed(key: str, call, texts) -> None:
        t = time.perf_counter()
        call(texts)
        spent[key] += time.perf_counter() - t
        done[key] += 1 if isinstance(texts, str) else len(texts)

    def http(texts) -> None:
        backend.post("/api/embed", {"model": MINILM, "input": texts})

    def http_concurrent(texts: list[str]) -> None:
        def client(i: int) -> None:
            for text in texts[i::connections]:
                backend.post("/api/embed", {"model": MINILM, "input": text}, conn=clients[i])
        for future in [pool.submit(client, i) for i in range(connections)]:
            future.result()

    def raw(texts) -> None:
        llama.embed(texts, normalize=True)

    for _ in range(rounds):
        for text in TEXTS:
            timed("http_single", http, text)
            timed("raw_single", raw, [text])
        timed("http_single_concurrent", http_concurrent, TEXTS)
        for text in TEXTS:
            timed("raw_single", raw, [text])
        for i in range(0, len(TEXTS), 32):
            timed("http_batch32", http, TEXTS[i:i + 32])
            timed("raw_batch32", raw, TEXTS[i:i + 32])
    pool.shutdown()
    return {key: done[key] / seconds for key, seconds in spent.items()}


def tokens_per_s(reply: dict) -> float:
    return reply["eval_count"] / (reply["eval_duration"] / 1e9) if reply.get("eval_duration") else 0.0


def json_mode(backend: Backend, model: str, rounds: int, tokens: int) -> dict:
    free, constrained, parsed = [], [], 0
    opts = {"num_predict": tokens, "seed": 7, "temperature": 0.8}
    backend.post("/api/generate", {"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    for r in range(rounds):
        body = {"model": model, "prompt": JSON_PROMPT, "stream": False, "options": {**opts, "seed": 7 + r}}
        free.append(tokens_per_s(backend.post("/api/generate", body)))
        reply = backend.post("/api/generate", {**body, "format": "json"})
        constrained.append(tokens_per_s(reply))
        try:
            json.loads(reply["response"])
            parsed += 1
        except ValueError:
            pass
    return {"free": statistics.median(free), "json": statistics.median(constrained), "parsed": parsed, "rounds": rounds}


def cold_load(backend: Backend, model: str, rounds: int) -> float:
    seconds = []
    for _ in range(rounds):
        backend.post("/api/generate", {"model": model, "keep_alive": 0})
        seconds.append(backend.post("/api/generate", {"model": model})["load_duration"] / 1e9)
    backend.post("/api/generate", {"model": model, "keep_alive": 0})
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--connections", type=int, default=4, help="clients at once for the single-text throughput")
    parser.add_argument("--embed-gguf", default="", help="all-MiniLM GGUF when llmops.backend.embedmodel is absent")
    args = parser.parse_args()

    from bench import _report
    from llmops.backend.engine import default_threads

    threads = default_threads()
    embed = embed_gguf(args.embed_gguf)
    metrics, extra = {}, {"rounds": args.rounds, "tokens": args.tokens, "threads": threads,
                          "note": "shared 2-core machine: only same-run ratios carry over"}
    with tempfile.TemporaryDirectory() as models_dir:
        backend = Backend(Path(models_dir), embed, threads)
        try:
            time.sleep(1.0)  # let the start-up digest threads finish before the idle reading
            idle = backend.rss()
            loads = {model: cold_load(backend, model, args.rounds) for model in (SMOL, GEMMA)}
            for model, seconds in loads.items():
                key = "cold_load_" + model.split(":")[0] + "_s"
                metrics[key] = _report.metric(round(seconds, 3), "s", goal=1.0)
            smol = json_mode(backend, SMOL, args.rounds, args.tokens)
            metrics["json_mode_tokens_per_s_ratio"] = _report.metric(
                round(smol["json"] / smol["free"], 3), "ratio", goal=0.8, better="higher",
                baseline="unconstrained generation, same model and prompt (smollm2:135m)")
            metrics["json_mode_tokens_per_s"] = _report.metric(round(smol["json"], 1), "tokens/s", better="higher")
            metrics["free_tokens_per_s"] = _report.metric(round(smol["free"], 1), "tokens/s", better="higher")
            gemma = json_mode(backend, GEMMA, args.rounds, args.tokens)
            metrics["gemma_json_mode_tokens_per_s_ratio"] = _report.metric(
                round(gemma["json"] / gemma["free"], 3), "ratio", goal=0.8, better="higher",
                baseline="unconstrained generation, same model and prompt (gemma3:270m)")
            extra["json_mode"] = {"smollm2": smol, "gemma3": gemma}
            if embed is not None:
                from llama_cpp import Llama

                llama = Llama(str(embed), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                              n_threads=threads, n_threads_batch=threads, verbose=False)
                emb = embeddings_per_s(backend, llama, args.rounds, args.connections)
                llama.close()
                extra["embeddings_per_s"] = emb
                extra["embed_connections"] = args.connections
                metrics["embed_single_ratio"] = _report.metric(
                    round(emb["http_single_concurrent"] / emb["raw_single"], 3), "ratio", goal=0.9, better="higher",
                    baseline=f"Llama.embed in-process, one text a call; over HTTP, {args.connections} clients at once")
                metrics["embed_single_sequential_ratio"] = _report.metric(
                    round(emb["http_single"] / emb["raw_single"], 3), "ratio", better="higher",
                    baseline="Llama.embed in-process, one text a call; over HTTP, one request at a time")
                metrics["embed_batch32_ratio"] = _report.metric(
                    round(emb["http_batch32"] / emb["raw_batch32"], 3), "ratio", goal=0.9, better="higher",
                    baseline="Llama.embed in-process, 32 texts a call")
                metrics["embed_single_per_s"] = _report.metric(round(emb["http_single_concurrent"], 1), "texts/s",
                                                               better="higher")
                metrics["embed_batch32_per_s"] = _report.metric(round(emb["http_batch32"], 1), "texts/s", better="higher")
            for model in (SMOL, GEMMA):
                backend.post("/api/generate", {"model": model, "keep_alive": 0})
            if embed is not None:
                backend.post("/api/embed", {"model": MINILM, "input": [], "keep_alive": 0})
            loaded = backend.http.get(backend.url + "/api/ps", timeout=10).json()
            assert loaded["models"] == [], loaded
            after = backend.rss()
            metrics["rss_after_unload_ratio"] = _report.metric(round(after / idle, 3), "ratio", goal=1.1,
                                                               baseline="the backend's idle RSS before any load")
            extra.update(idle_rss_mb=round(idle / 2**20, 1), rss_after_unload_mb=round(after / 2**20, 1))
        finally:
            backend.close()
    _report.report("backend_models", metrics, extra)


if __name__ == "__main__":
    main()
