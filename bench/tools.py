"""Benchmark: tool calls with the call grammar and without it, same prompts, same run (#26).

Run: .venv/bin/python -m bench.tools [--prompts 50] [--tokens 128] [--temperature 0.7]
SmolLM2-135M in the embedded backend, 50 prompts over 3 tools with typed parameters (string, integer,
enum). Each prompt is sent twice, in alternating order:
- grammar: `/api/chat` with the tools, as a client sends it (the backend's call grammar holds from
  the first token, since the smollm2 template asks for calls only);
- free: `/api/generate` with `raw: true` and the very prompt the tool template writes, no grammar
  (what a backend that parses after the fact, as Ollama does, gets from the model).
Each answer's calls are checked against the tools' schemas (jsonschema). Answers cut by num_predict
are counted apart. Decoding speed is the backend's own eval_count / eval_duration summed per side,
the grammar side over the answers made by one generation (calls or cut calls: an empty list `[]` is
answered by a second, free generation, which would mix the two).
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import requests

from bench import _report
from llmops.backend.templates import render_smollm2
from llmops.backend.toolparse import parse_answer, validate_calls
from llmops.backend.tools import parse_tools
from tests.support.backend import BackendProcess  # the one way to run the backend

ROOT = Path(__file__).resolve().parent.parent

TAG = "smollm2:135m"
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "the city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown timer",
        "parameters": {"type": "object", "properties": {
            "minutes": {"type": "integer", "description": "how long"},
            "label": {"type": "string", "description": "what the timer is for"}}, "required": ["minutes", "label"]}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount of US dollars to another currency",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "integer"},
            "to": {"type": "string", "enum": ["EUR", "GBP", "JPY", "CHF"]}}, "required": ["amount", "to"]}}},
]
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Porto", "Quito", "Perth"]
LABELS = ["the pasta", "tea", "a break", "the laundry", "the oven", "stretching", "a call", "the bus"]


def prompts(n: int, seed: int = 26) -> list[str]:
    """n requests, a third for each tool (prompt i is for TOOLS[i % 3]), with its parameters' values in the
    words (deterministic)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            unit = rnd.choice(["celsius", "fahrenheit"])
            out.append(f"What is the weather in {rnd.choice(CITIES)} right now, in {unit}?")
        elif kind == 1:
            out.append(f"Set a timer for {rnd.randint(1, 90)} minutes for {rnd.choice(LABELS)}.")
        else:
            out.append(f"How much is {rnd.randint(5, 5000)} US dollars in {rnd.choice(['EUR', 'GBP', 'JPY', 'CHF'])}?")
    return out


def judge(calls: list[dict], text_cut: bool, tools: list[dict]) -> str:
    """valid, invalid (a call that does not validate), cut (num_predict ended it inside the call), or none."""
    if calls:
        return "valid" if validate_calls(calls, tools) == "" else "invalid"
    return "cut" if text_cut else "none"


def with_grammar(url: str, prompt: str, options: dict, tools: list[dict]) -> dict:
    body = requests.post(url + "/api/chat", timeout=300, json={
        "model": TAG, "messages": [{"role": "user", "content": prompt}], "tools": TOOLS, "stream": False,
        "options": options}).json()
    message = body["message"]
    calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
             for c in message.get("tool_calls") or []]
    cut = body["done_reason"] == "length" and "<tool_call>" in message["content"]
    verdict = judge(calls, cut, tools)
    # An empty list is answered in text by a second, free generation: its counts are not the grammar's.
    one_generation = verdict in ("valid", "invalid", "cut")
    return {"verdict": verdict, "eval_count": body["eval_count"], "eval_ns": body["eval_duration"],
            "one_generation": one_generation, "calls": len(calls), "names": [c["name"] for c in calls]}


def without_grammar(url: str, prompt: str, options: dict, tools: list[dict]) -> dict:
    raw_prompt = render_smollm2([{"role": "user", "content": prompt}], tools)
    body = requests.post(url + "/api/generate", timeout=300, json={
        "model": TAG, "prompt": raw_prompt, "raw": True, "stream": False, "options": options}).json()
    parsed = parse_answer(body["response"])
    cut = body["done_reason"] == "length" and parsed.has_call_form and not parsed.calls
    verdict = judge(parsed.calls, cut, tools)
    if parsed.has_call_form and parsed.error and not cut:
        verdict = "invalid"
    return {"verdict": verdict, "eval_count": body["eval_count"], "eval_ns": body["eval_duration"],
            "one_generation": True, "calls": len(parsed.calls), "names": [c["name"] for c in parsed.calls],
            "text": body["response"][:160]}


def tokens_per_s(runs: list[dict]) -> float:
    runs = [r for r in runs if r["one_generation"] and r["eval_ns"]]
    return sum(r["eval_count"] for r in runs) / (sum(r["eval_ns"] for r in runs) / 1e9) if runs else 0.0


def right_tool(runs: list[dict]) -> float:
    """Of the answers with calls, the share whose first call is the tool the prompt was written for."""
    called = [(i, r) for i, r in enumerate(runs) if r["names"]]
    hits = sum(r["names"][0] == TOOLS[i % 3]["function"]["name"] for i, r in called)
    return round(hits / len(called), 4) if called else 0.0


def tally(runs: list[dict]) -> dict:
    return {v: sum(r["verdict"] == v for r in runs) for v in ("valid", "invalid", "cut", "none")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=128, help="num_predict")
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()
    tools = parse_tools(TOOLS)
    backend = BackendProcess("--num-ctx", "2048")
    grammar, free = [], []
    started = time.perf_counter()
    try:
        warm = {"num_predict": 8, "temperature": 0}
        with_grammar(backend.url, "hello", warm, tools), without_grammar(backend.url, "hello", warm, tools)
        for i, prompt in enumerate(prompts(args.prompts)):
            options = {"num_predict": args.tokens, "temperature": args.temperature, "seed": i}
            sides = [(grammar, with_grammar), (free, without_grammar)]
            for runs, side in sides if i % 2 == 0 else reversed(sides):  # alternate which goes first
                runs.append({"prompt": prompt, **side(backend.url, prompt, options, tools)})
    finally:
        backend.stop()
    g, f = tally(grammar), tally(free)
    g_ended, f_ended = g["valid"] + g["invalid"], f["valid"] + f["invalid"]
    g_tps, f_tps = tokens_per_s(grammar), tokens_per_s(free)
    metrics = {
        "grammar_calls_valid_ratio": _report.metric(round(g["valid"] / g_ended, 4) if g_ended else 0.0, "ratio",
                                                    goal=1.0, better="higher"),
        "free_calls_valid_ratio": _report.metric(round(f["valid"] / f_ended, 4) if f_ended else 0.0, "ratio",
                                                 better="higher"),
        "grammar_prompts_with_valid_call_ratio": _report.metric(round(g["valid"] / len(grammar), 4), "ratio",
                                                                better="higher"),
        "free_prompts_with_valid_call_ratio": _report.metric(round(f["valid"] / len(free), 4), "ratio",
                                                             better="higher"),
        "grammar_first_call_right_tool_ratio": _report.metric(right_tool(grammar), "ratio", better="higher"),
        "grammar_calls_per_answer": _report.metric(
            round(sum(r["calls"] for r in grammar) / max(1, sum(bool(r["calls"]) for r in grammar)), 2), "calls"),
        "grammar_tokens_per_s": _report.metric(round(g_tps, 1), "tokens/s", better="higher"),
        "free_tokens_per_s": _report.metric(round(f_tps, 1), "tokens/s", better="higher"),
        "grammar_vs_free_tokens_per_s": _report.metric(round(g_tps / f_tps, 3) if f_tps else 0.0, "ratio", goal=0.8,
                                                       better="higher", baseline="free_tokens_per_s"),
    }
    extra = {"prompts": args.prompts, "num_predict": args.tokens, "temperature": args.temperature,
             "grammar": g, "free": f, "seconds": round(time.perf_counter() - started, 1),
             "grammar_one_generation_runs": sum(r["one_generation"] for r in grammar),
             "grammar_runs": grammar, "free_runs": free}
    _report.report("tools", metrics, extra, width=40)


if __name__ == "__main__":
    main()
