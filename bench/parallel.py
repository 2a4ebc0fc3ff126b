"""Benchmark: parallel slots (#25), the same run against the 1-slot backend and against llama.cpp's own ceiling.

Run: .venv/bin/python -m bench.parallel [--models smollm2:135m,gemma3:270m] [--concurrency 1,4,8] [--rounds 3]

Per model, three sides measured in the same run, their rounds interleaved (so a machine that slows down
slows all three alike): the embedded backend with as many slots as the highest concurrency, the same
backend with one slot, and the ceiling: the same prompts decoded by llama.cpp in this process in one
batch (one sequence id each, greedy, no server, the backend's thread count and context layout). Prompts
are raw 32-token story openings (`raw: true`), 64 output tokens, temperature 0, seeded (a seeded request
evaluates its whole prompt, as the ceiling does: the rounds repeat the prompts); aggregate tokens/s is
the output tokens of a round over its wall time, send of the first request to the end of the last.
Then the prompt cache: a 400-token system prompt shared by every request, TTFT at concurrency 1 on
both backends (the prefix cached), and at concurrency 4 on the slot backend (one warm request first:
the other slots copy the prefix). RSS is each backend's peak (VmHWM) after its runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import requests

from bench._ceiling import Ceiling
from bench._report import judged as _report_judged
from bench._report import metric, report
from llmops.backend.engine import default_threads
from tests.support.backend import BackendProcess

SMOL, GEMMA = "smollm2:135m", "gemma3:270m"
NUM_CTX = 512  # per slot: 8 slots x 512 = 4,096 cells, within SmolLM2's 8,192
OPENINGS = [
    "Once upon a time, in a small village at the edge of a dark forest, there lived an old baker who every morning",
    "The spaceship drifted silently past the rings of the giant planet while the captain, tired after the long watch,",
    "In the year of the great flood the river rose so high that the people of the valley gathered on the hill and",
    "My grandmother kept a wooden box under her bed, and nobody in the family knew what was inside until the day",
    "The detective stepped into the rain-soaked alley, lit a cigarette, and looked at the footprints that led towards",
    "Long ago, before the mountains had names, a young shepherd found a strange glowing stone near the spring and",
    "The train was already an hour late when the lights went out, and in the darkness a voice from the back said",
    "On the first day of school the new teacher wrote a single question on the blackboard and asked the children to",
]
SYSTEM = ("You are a patient assistant for a bakery. " + " ".join(
    f"Rule {i}: answer politely, name the bread of the day, mention that rye bread {i} is baked at dawn, "
    "and never promise a delivery time." for i in range(1, 13)))
QUESTIONS = ["Do you have rye bread?", "When do you open?", "Can I order a cake?", "Is there bread without gluten?",
             "What is the bread of the day?"]


# --- the backends over HTTP ------------------------------------------------------------------------

def stream(url: str, body: dict) -> dict:
    """One streamed request; TTFT from sending to the first non-empty piece, eval_count from the last line."""
    sent = time.perf_counter()
    first = None
    with requests.post(url, json=body, stream=True, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line:
                continue
            data = json.loads(line)
            if first is None and (data.get("response") or data.get("message", {}).get("content")):
                first = time.perf_counter()
            if data.get("done"):
                end = time.perf_counter()
                return {"sent": sent, "ttft": (first or end) - sent, "end": end, "tokens": data.get("eval_count", 0),
                        "prompt_tokens": data.get("prompt_eval_count", 0)}
    raise RuntimeError(f"{url}: the stream ended without done")


def at_once(url: str, bodies: list[dict]) -> list[dict]:
    results: list[dict | BaseException] = [None] * len(bodies)  # type: ignore[list-item]

    def one(i: int) -> None:
        try:
            results[i] = stream(url, bodies[i])
        except BaseException as exc:  # noqa: BLE001 - raised below, in the bench's thread
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def throughput_round(backend: BackendProcess, model: str, n: int, tokens: int) -> dict:
    bodies = [{"model": model, "prompt": OPENINGS[i % len(OPENINGS)], "raw": True, "stream": True,
               "options": {"temperature": 0, "num_predict": tokens, "seed": 1}} for i in range(n)]
    results = at_once(backend.url + "/api/generate", bodies)
    wall = max(r["end"] for r in results) - min(r["sent"] for r in results)
    return {"tokens_per_s": sum(r["tokens"] for r in results) / wall,
            "ttft_p50_s": statistics.median(r["ttft"] for r in results),
            "tokens": sum(r["tokens"] for r in results), "prompt_tokens": [r["prompt_tokens"] for r in results]}


def cache_bodies(model: str, n: int, offset: int) -> list[dict]:
    return [{"model": model, "stream": True, "options": {"temperature": 0, "num_predict": 8},
             "messages": [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": QUESTIONS[(offset + i) % len(QUESTIONS)]}]} for i in range(n)]


def peak_rss(backend: BackendProcess) -> int:
    for line in Path(f"/proc/{backend.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def kv_bytes_per_cell(path: Path) -> int:
    """f16 K and V of one position over every layer, from the GGUF's metadata (as LlamaEngine counts it)."""
    from llmops.backend.gguf_meta import read_header

    meta = {key: str(value) for key, value in read_header(path).metadata.items()}
    arch = meta.get("general.architecture", "llama")
    layers, heads = int(meta[f"{arch}.block_count"]), int(meta[f"{arch}.attention.head_count"])
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    key_len = int(meta.get(f"{arch}.attention.key_length", int(meta[f"{arch}.embedding_length"]) // heads))
    return 2 * 2 * layers * kv_heads * key_len


def model_path(tag: str) -> Path:
    from llmops.backend.model import default_model_path
    from llmops.backend.sources import gemma_path

    return default_model_path() if tag == SMOL else gemma_path()


def bench_model(tag: str, levels: list[int], rounds: int, tokens: int) -> dict:
    slots, threads = max(levels), default_threads()
    path = model_path(tag)
    ceiling = Ceiling(path, slots, threads, NUM_CTX)
    prompts = [ceiling.tokenize(OPENINGS[i % len(OPENINGS)]) for i in range(slots)]
    many = BackendProcess("--num-parallel", str(slots), "--num-ctx", str(NUM_CTX), "--no-access-log")
    one = BackendProcess("--num-parallel", "1", "--num-ctx", str(NUM_CTX), "--no-access-log")
    sides = {"ceiling": None, "slots": many, "one_slot": one}
    runs: dict[str, dict[int, list[dict]]] = {side: {n: [] for n in levels} for side in sides}
    try:
        for backend in (many, one):  # load the model, warm both
            throughput_round(backend, tag, 1, 8)
        ceiling.run(prompts[:1], 8)
        for r in range(rounds):
            for n in levels:
                order = list(sides)
                order = order[r % 3:] + order[:r % 3]
                for side in order:
                    if side == "ceiling":
                        runs[side][n].append(ceiling.run(prompts[:n], tokens))
                    else:
                        runs[side][n].append(throughput_round(sides[side], tag, n, tokens))
        cache: dict[str, list[float]] = {"slots_c1": [], "one_slot_c1": [], "slots_c4": []}
        for backend in (many, one):
            at_once(backend.url + "/api/chat", cache_bodies(tag, 1, 0))  # the prefix is now cached
        for r in range(rounds * 2):
            for key, backend in (("slots_c1", many), ("one_slot_c1", one)):
                cache[key].append(at_once(backend.url + "/api/chat", cache_bodies(tag, 1, r + 1))[0]["ttft"])
        for r in range(rounds):
            cache["slots_c4"].extend(x["ttft"] for x in at_once(many.url + "/api/chat", cache_bodies(tag, 4, r)))
        rss = {"slots": peak_rss(many), "one_slot": peak_rss(one)}
    finally:
        many.stop()
        one.stop()
        ceiling.close()
    medians = {side: {n: {k: statistics.median(run[k] for run in runs[side][n]) for k in ("tokens_per_s", "ttft_p50_s")}
                      for n in levels} for side in sides}
    return {"medians": medians, "cache": cache, "rss": rss, "slots": slots, "threads": threads,
            "extra_kv_bytes": kv_bytes_per_cell(path) * NUM_CTX * (slots - 1),
            "prompt_tokens": runs["slots"][levels[0]][0]["prompt_tokens"], "ceiling_prompt_tokens": len(prompts[0])}


def judged(value: float, unit: str, goal: float | None, better: str, baseline: str) -> dict:
    """_report.judged, a miss discussed in docs/backend.md."""
    return _report_judged(value, unit, goal, better, baseline, doc="docs/backend.md")


def figures(tag: str, found: dict, levels: list[int], main: bool) -> dict[str, dict]:
    """The issue's goals; SmolLM2's are judged, Gemma's are reported beside them (goal None)."""
    m, name = found["medians"], tag.split(":")[0]
    out: dict[str, dict] = {}

    def goal(value: float | None) -> float | None:
        return value if main else None

    for n in levels:
        out[f"{name}_c{n}_tokens_per_s"] = metric(round(m["slots"][n]["tokens_per_s"], 1), "tokens/s", better="higher")
        out[f"{name}_c{n}_vs_ceiling"] = judged(round(m["slots"][n]["tokens_per_s"] / m["ceiling"][n]["tokens_per_s"], 3),
                                                "ratio", goal(0.9), "higher", "llama.cpp in-process batch")
        out[f"{name}_c{n}_vs_one_slot"] = judged(
            round(m["slots"][n]["tokens_per_s"] / m["one_slot"][n]["tokens_per_s"], 3), "ratio",
            goal({1: 0.95, 4: 1.25, 8: 1.55}.get(n)), "higher", "1-slot backend")
        out[f"{name}_c{n}_ceiling_vs_its_c1"] = metric(
            round(m["ceiling"][n]["tokens_per_s"] / m["ceiling"][levels[0]]["tokens_per_s"], 3), "ratio",
            better="higher", baseline="ceiling at concurrency 1")
    if 4 in levels:
        out[f"{name}_c4_ttft_p50_vs_one_slot"] = judged(
            round(m["slots"][4]["ttft_p50_s"] / m["one_slot"][4]["ttft_p50_s"], 3), "ratio", goal(0.5), "lower", "1-slot backend")
    cache = found["cache"]
    c1, one = statistics.median(cache["slots_c1"]), statistics.median(cache["one_slot_c1"])
    out[f"{name}_cache_c1_ttft_p50_ms"] = metric(round(c1 * 1000, 1), "ms")
    out[f"{name}_cache_c1_ttft_vs_one_slot"] = judged(round(c1 / one, 3), "ratio", goal(1.2), "lower", "1-slot backend")
    out[f"{name}_cache_c4_worst_ttft_vs_cached"] = judged(round(max(cache["slots_c4"]) / c1, 3), "ratio", goal(2.0), "lower",
                                                          "cached single-request TTFT")
    growth = found["rss"]["slots"] - found["rss"]["one_slot"]
    out[f"{name}_rss_growth_vs_extra_kv"] = judged(round(growth / found["extra_kv_bytes"], 3), "ratio", goal(1.1), "lower",
                                                   "extra KV cache of the added slots")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{SMOL},{GEMMA}")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    levels = sorted({int(x) for x in args.concurrency.split(",")})
    metrics: dict[str, dict] = {}
    details: dict[str, dict] = {"num_ctx_per_slot": NUM_CTX, "output_tokens": args.tokens, "rounds": args.rounds}
    for tag in args.models.split(","):
        found = bench_model(tag, levels, args.rounds, args.tokens)
        metrics.update(figures(tag, found, levels, main=tag == SMOL))
        details[tag] = found
    report("parallel", metrics, details, width=44)


if __name__ == "__main__":
    main()
