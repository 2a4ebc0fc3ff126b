"""Benchmark: how fast the traffic generator reads a large prompt file, whole and sampled (llmops/traffic/datasets.py).

Run: .venv/bin/python -m bench.datasets [--records 100000] [--sample 1000] [--repeats 5]
Writes a ShareGPT file and a JSONL file of `records` records each (generated, seeded, in a temporary folder),
then loads each whole (every record a prompt, every ShareGPT reply's tokens counted) and with `--sample` (the
run's seed draws them; only those become prompts and have their tokens counted), interleaved, and takes the
median of `repeats`. Reports the file's records read per second (every line is parsed in both cases), the
sampled load's time as a same-run ratio of the whole load's, and how many records had their tokens counted
(the count that sampling saves: with a real tokenizer it is where the time goes).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import _report
from llmops.traffic import datasets, tokencount

WORDS = ("latency queue token stream model proxy backend request answer prompt cache slot batch "
         "throughput error budget window percentile rate limit").split()
SEED = 7  # the run's seed (--seed) that draws the sample


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def write_files(folder: Path, n: int, seed: int = 1) -> tuple[Path, Path]:
    """A ShareGPT file (one record in 50 with a single turn, skipped) and a JSONL file, n records each."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        turns = [{"from": "human", "value": _text(rng, 5, 120)}]
        if i % 50:
            turns.append({"from": "gpt", "value": _text(rng, 5, 300)})
        records.append({"id": f"r{i}", "conversations": turns})
    sharegpt = folder / "sharegpt.json"
    sharegpt.write_text(json.dumps(records))
    jsonl = folder / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": _text(rng, 5, 120), "output_tokens": rng.randint(8, 256)}) + "\n"
                             for _ in range(n)))
    return sharegpt, jsonl


class CountingTokens:
    """tokencount.estimate_tokens wrapped: how many texts a load counted the tokens of."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = tokencount.estimate_tokens

    def __enter__(self) -> CountingTokens:
        def counted(text: str) -> int:
            self.calls += 1
            return self._real(text)
        tokencount.estimate_tokens = counted
        return self

    def __exit__(self, *exc) -> None:
        tokencount.estimate_tokens = self._real


def timed(path: Path, sample: int | None) -> tuple[float, datasets.Dataset]:
    start = time.perf_counter()
    ds = datasets.load(path, sample=sample, seed=SEED)
    return time.perf_counter() - start, ds


def tokenized(path: Path, sample: int | None) -> int:
    """Texts whose tokens one load counted (a load outside the timed ones: the counter costs time)."""
    with CountingTokens() as counter:
        datasets.load(path, sample=sample, seed=SEED)
    return counter.calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    metrics: dict[str, dict] = {}
    details: dict = {"records": args.records, "sample": args.sample, "repeats": args.repeats, "seed": SEED,
                     "tokens": datasets.TOKENS}
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_files(Path(tmp), args.records):
            kind = "sharegpt" if path.suffix == ".json" else "jsonl"
            whole, sampled = [], []
            for _ in range(args.repeats):  # interleaved, so a drift of the machine's speed hits both alike
                t, ds_whole = timed(path, None)
                whole.append(t)
                t, ds_sampled = timed(path, args.sample)
                sampled.append(t)
            w, s = statistics.median(whole), statistics.median(sampled)
            metrics[f"{kind}_whole_records_per_s"] = _report.metric(round(args.records / w), "records/s",
                                                                    better="higher")
            metrics[f"{kind}_sampled_records_per_s"] = _report.metric(
                round(args.records / s), "records/s", better="higher", baseline=f"{kind}_whole_records_per_s")
            # Sampling never costs more than using every record (a regression guard, same run).
            metrics[f"{kind}_sampled_time_ratio"] = _report.metric(round(s / w, 3), "x",
                                                                   goal=1.0 if kind == "sharegpt" else None)
            if kind == "sharegpt":  # JSONL records here carry output_tokens: nothing to count in either load
                metrics["sharegpt_whole_tokenized_records"] = _report.metric(tokenized(path, None), "records")
                metrics["sharegpt_sampled_tokenized_records"] = _report.metric(
                    tokenized(path, args.sample), "records", goal=args.sample,
                    baseline="sharegpt_whole_tokenized_records")
            details[kind] = {"file_bytes": path.stat().st_size, "usable_records": ds_whole.records,
                             "skipped": ds_whole.skipped, "whole_s": [round(x, 4) for x in whole],
                             "sampled_s": [round(x, 4) for x in sampled], "prompts_sampled": len(ds_sampled.prompts)}
    _report.report("datasets", metrics, details)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
