"""Command line of the traffic generator: load through the LiteLLM proxy, measured like LLM serving is.

Closed loop by default: --concurrency workers (1 unless given) each send the next request when
the last one ends (plus --delay). With --rate and/or --burst it is open loop: requests arrive on a
schedule whether or not earlier ones have finished, and --concurrency then caps requests in flight.
It stops after --max requests, after --duration, or on Ctrl-C (without --max or --duration it runs
until Ctrl-C). Durations take 30, 30s, 200ms or 2m.

Exit codes:
  0    the run finished and the error ratio stayed within --max-error-ratio
  1    the error ratio passed --max-error-ratio (default 0.05), or no request succeeded
  2    bad usage: a flag, prompt file or .env value is malformed
  3    the proxy is unreachable, refuses the key, or does not serve the model
  130  interrupted with Ctrl-C (the summary covers what finished)

The error ratio is failures other than 429s over finished requests: a 429 is the proxy's rate
limit doing its job ("rate_limited"), shown on its own, and requests cancelled by Ctrl-C are
left out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from ..durations import cli_seconds
from ..errors import ConfigError
from . import capacity, datasets, results, tokencount
from . import prompts as bank
from .arrivals import ARRIVALS, Burst
from .config import (
    DEFAULT_MAX_ERROR_RATIO,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TIMEOUT,
    ENDPOINTS,
    SWEEP_LEVEL_DURATION,
    TrafficConfig,
)
from .preflight import PreflightError
from .progress import LiveProgress
from .runner import EXIT_INTERRUPTED, EXIT_PREFLIGHT, EXIT_USAGE, run

PROG = "traffic_generator"
_EPILOG = __doc__[__doc__.index("Exit codes:"):]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _typed(convert, what: str):
    def parse(text: str):
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}" if "invalid" in str(exc) or
                                             "could not" in str(exc) else str(exc)) from None
    parse.__name__ = what
    return parse


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a list of concurrency levels like 1,2,4,8,16") from None


_int = _typed(int, "an integer")
_float = _typed(float, "a number")
_duration = _typed(cli_seconds, "a duration")
_burst = _typed(Burst.parse, "SIZE@SECONDS")
_sweep = _typed(_levels, "a list of levels")


# The Makefile's runs, by name: `--preset NAME` stands for these flags, and flags given after it win.
PRESETS: dict[str, tuple[str, ...]] = {
    "quick": ("--max", "5", "--concurrency", "1", "--max-tokens", "32"),
    "steady": ("--duration", "180", "--rate", "1", "--arrivals", "poisson", "--concurrency", "4", "--max-tokens", "64",
               "--output", "logs/traffic.jsonl", "--summary-json", "logs/traffic-summary.json"),
    "sweep": ("--sweep", "1,2,4,8,16", "--duration", "20", "--warmup", "2", "--max-tokens", "32",
              "--summary-json", "logs/load-test.json", "--name", "load-test"),
    "capacity": ("--capacity", "--duration", "20", "--warmup", "2", "--max-tokens", "32",
                 "--summary-json", "logs/capacity.json", "--name", "capacity"),
}


def with_preset(argv: list[str]) -> list[str]:
    """argv with a known `--preset NAME` (or `--preset=NAME`) preceded by its flags, so later flags override them.

    An unknown name is left for the parser, which refuses it naming the presets.
    """
    for i, arg in enumerate(argv):
        name = argv[i + 1] if arg == "--preset" and i + 1 < len(argv) else arg.partition("=")[2]
        if (arg == "--preset" or arg.startswith("--preset=")) and name in PRESETS:
            return [*PRESETS[name], *argv]
    return argv


def build_parser() -> argparse.ArgumentParser:
    """Every flag, grouped as --help shows them."""
    p = _Parser(prog=PROG, description=__doc__[:__doc__.index("Exit codes:")].strip(), epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_argument_group("where")
    where.add_argument("--url", help="proxy base URL (default: LITELLM_PORT from .env, http://localhost:8000)")
    where.add_argument("--api-key", help="proxy key (default: LITELLM_MASTER_KEY from the environment or .env)")
    where.add_argument("--model", metavar="A[,B[:W]]",
                       help="model, or a mix like smollm2:135m,gemma3:270m:3 (a trailing :N is a weight; "
                            "default: the first one /v1/models lists)")
    how = p.add_argument_group("how much and how fast")
    how.add_argument("--preset", choices=tuple(PRESETS), metavar="{" + ",".join(PRESETS) + "}",
                     help="a named run: quick (5 requests), steady (3 minutes at 1/s, Poisson), sweep "
                          "(concurrency 1-16, 20 s each), capacity (--capacity, 20 s a level); flags after it "
                          "override its own")
    how.add_argument("--max", type=_int, dest="max_requests", metavar="N", help="stop after N requests")
    how.add_argument("--duration", type=_duration, metavar="DUR", help="stop sending after DUR")
    how.add_argument("--concurrency", type=_int, metavar="N",
                     help="closed loop: N workers (default 1); open loop: at most N in flight (default no cap)")
    how.add_argument("--delay", type=_duration, default=0.0, metavar="DUR",
                     help="closed loop: pause of each worker between requests (default 0)")
    how.add_argument("--rate", type=_float, metavar="R", help="open loop: R requests/s")
    how.add_argument("--arrivals", choices=ARRIVALS, default="constant",
                     help="spacing of --rate arrivals: evenly, or Poisson (exponential gaps)")
    how.add_argument("--ramp", type=_duration, default=0.0, metavar="DUR",
                     help="rise linearly over DUR: the rate from 0, or the workers from 1")
    how.add_argument("--burst", type=_burst, metavar="SIZE@SEC",
                     help="open loop: SIZE requests at once every SEC seconds (with --rate: on top of it)")
    how.add_argument("--sweep", type=_sweep, default=(), metavar="LEVELS",
                     help="closed loop at each concurrency (e.g. 1,2,4,8,16) for --duration or --max each "
                          f"(default {SWEEP_LEVEL_DURATION:g}s each); reports where throughput stops growing")
    how.add_argument("--capacity", action="store_true",
                     help="answer how many concurrent streams stay within --slo: closed loop up the levels "
                          f"(--sweep, default {','.join(map(str, capacity.DEFAULT_LEVELS))}; --duration or --max "
                          "each), stop at the first that breaks it, bisect the gap below")
    how.add_argument("--slo", metavar="BOUNDS",
                     help=f"--capacity's bounds on each level (default {capacity.DEFAULT_SLO.replace('%', '%%')!r}): "
                          "ttft/itl/tpot/latency_p50|p90|p95|p99<=DUR, errors<=PCT (429s count), goodput>=PCT")
    how.add_argument("--warmup", type=_int, default=0, metavar="N", help="N requests first, not counted")
    what = p.add_argument_group("what to send")
    what.add_argument("--endpoint", choices=ENDPOINTS, default="chat",
                      help="chat completions (default) or embeddings (/v1/embeddings, needs --model)")
    what.add_argument("--batch", type=_int, default=1, metavar="N",
                      help="embeddings: N texts per request (default 1)")
    what.add_argument("--response-format", metavar="json|SCHEMA.json",
                      help="ask for JSON (json_object) or for a JSON schema, and check every answer: one that "
                           "does not parse or validate counts as invalid_output")
    what.add_argument("--tools", metavar="FILE.json",
                      help="offer these OpenAI tools (a JSON list) in every chat request and check each tool call: "
                           "one that names no tool or whose arguments do not parse or validate counts as invalid_output")
    what.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                      help="stream (SSE) to measure time to first token and inter-token latency (default on)")
    what.add_argument("--max-tokens", type=_int, metavar="N",
                      help=f"max_tokens (default: the prompt's own, else {DEFAULT_MAX_TOKENS})")
    what.add_argument("--temperature", type=_float, metavar="T", help="temperature (default: the server's)")
    what.add_argument("--priority", type=_int, metavar="N",
                      help="request priority for the proxy's queue, 0-255, lower first (docs/queue.md); 0 is sent too")
    what.add_argument("--priority-mix", metavar="P:PCT,...",
                      help="each request's priority drawn with --seed by these shares in percent, e.g. 0:20,9:80 "
                           "(20 %% at 0, 80 %% at 9; they sum to 100); reported per priority (not with --priority)")
    what.add_argument("--prompts", type=Path, metavar="FILE|DIR",
                      help="prompts, the format by the suffix: .jsonl (one {\"prompt\"|\"text\"|\"messages\"} "
                           "a line, max_tokens or output_tokens optional: GuideLLM, llmperf), .json (ShareGPT, "
                           "vLLM's benchmark file: the first human turn, max_tokens from the reply's length; or the "
                           "generator's bank), .csv (a prompt column), .txt (one prompt a line), or a folder of "
                           "them (default data/prompts/); see docs/traffic-generator.md")
    what.add_argument("--sample", type=_int, metavar="N",
                      help="send N of the file's records, drawn with --seed (default all); tokens are counted only "
                           "for those")
    what.add_argument("--prune", action="store_true",
                      help="ShareGPT: drop records as vLLM's benchmark does: prompts under "
                           f"{datasets.PRUNE_MIN_TOKENS} or over {datasets.PRUNE_MAX_PROMPT_TOKENS:,} tokens, replies "
                           f"under {datasets.PRUNE_MIN_TOKENS}, totals over {datasets.PRUNE_MAX_TOTAL_TOKENS:,} "
                           "(tokens counted as --token-count says)")
    what.add_argument("--token-count", choices=tokencount.MODES, default="auto",
                      help="how a prompt file's tokens are counted (a ShareGPT reply's length, --prune): auto "
                           "(default) asks the served model's tokenizer on the stack's backend (POST /api/tokenize) "
                           f"and, when it cannot, says why and uses the estimate ({tokencount.CHARS_PER_TOKEN} "
                           "characters a token); model insists (exit 3 when it cannot); estimate never asks")
    what.add_argument("--backend-url", metavar="URL",
                      help="the backend whose tokenizer counts (default: the model's api_base in the proxy's config, "
                           "else the stack's first backend: OLLAMA_HOSTS or OLLAMA_PORT)")
    what.add_argument("--category", action="append", default=[], metavar="CAT",
                      help="only these categories (repeat or comma-separate)")
    what.add_argument("--list-categories", action="store_true", help="print the bank's categories and exit")
    what.add_argument("--seed", type=_int, metavar="N",
                      help="seed of prompt order, Poisson gaps and the model and priority mixes' draws (default random; "
                           "the summary shows it)")
    judge = p.add_argument_group("judging and results")
    judge.add_argument("--timeout", type=_duration, default=DEFAULT_TIMEOUT, metavar="DUR",
                       help=f"per request, whole answer (default {DEFAULT_TIMEOUT:g}s)")
    judge.add_argument("--slo-ttft", type=_duration, metavar="DUR", help="TTFT objective for goodput")
    judge.add_argument("--slo-latency", type=_duration, metavar="DUR", help="end-to-end objective for goodput")
    judge.add_argument("--max-error-ratio", type=_float, default=DEFAULT_MAX_ERROR_RATIO, metavar="R",
                       help=f"exit 1 above this error ratio (default {DEFAULT_MAX_ERROR_RATIO:g})")
    judge.add_argument("--output", type=Path, metavar="FILE.jsonl", help="one JSON line per request, as it ends")
    judge.add_argument("--summary-json", type=Path, metavar="FILE", help="the summary as JSON")
    judge.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="live progress line on stderr (default: when stderr is a terminal)")
    kept = p.add_argument_group("kept results (see docs/load-tests.md)")
    kept.add_argument("--name", metavar="NAME", help="name of the run's folder <time>-NAME (default: from the load shape)")
    kept.add_argument("--results-dir", type=Path, metavar="DIR",
                      help="where each run's folder goes (default: LLMOPS_LOADTEST_DIR, logs/loadtests)")
    kept.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                      help="send nothing: print B's figures against A's with ratios and draw both on one page "
                           "(a run folder, its name, or a summary JSON)")
    return p


def to_config(args: argparse.Namespace) -> TrafficConfig:
    """The parsed flags as a checked TrafficConfig (ConfigError names the flag)."""
    categories = tuple(c.strip() for arg in args.category for c in arg.split(",") if c.strip())
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    return TrafficConfig(
        url=args.url, api_key=args.api_key, model=args.model, max_requests=args.max_requests,
        duration=args.duration, concurrency=args.concurrency, rate=args.rate, arrivals=args.arrivals,
        ramp=args.ramp, burst=args.burst, delay=args.delay, sweep=args.sweep, stream=args.stream,
        capacity=args.capacity, slo=args.slo,
        max_tokens=args.max_tokens, temperature=args.temperature, priority=args.priority,
        priority_mix=args.priority_mix,
        prompts=args.prompts, categories=categories, sample=args.sample, prune=args.prune, seed=args.seed, warmup=args.warmup,
        token_count=args.token_count, backend_url=args.backend_url,
        timeout=args.timeout, slo_ttft=args.slo_ttft, slo_latency=args.slo_latency, output=args.output,
        summary_json=args.summary_json, max_error_ratio=args.max_error_ratio, progress=progress,
        endpoint=args.endpoint, batch=args.batch, response_format=args.response_format, tools=args.tools,
    ).validate()


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; returns the exit code."""
    argv = with_preset(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)

    def fail(code: int, message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code

    try:
        if args.list_categories:
            for name, count in bank.categories(datasets.load(args.prompts or bank.BANK_DIR).prompts).items():
                print(f"{name}\t{count}")
            return 0
        if args.compare:
            return results.compare.main(*args.compare, results_dir=args.results_dir or results.default_dir())
        config = to_config(args)
        config.results_dir = args.results_dir or results.default_dir()
        config.run_name = args.name
        config.command = (f"scripts/{PROG}.py", *argv)
        result = run(config, LiveProgress(enabled=config.progress))
    except ConfigError as exc:
        return fail(EXIT_USAGE, str(exc))
    except PreflightError as exc:
        return fail(EXIT_PREFLIGHT, str(exc))
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted before the run started")
    console = Console()
    console.print(results.text.run_tables(result.summary))
    print(f"{PROG}: {result.dataset_line}", file=sys.stderr)
    for warning in (result.summary.get("capacity") or {}).get("warnings", ()):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    print(f"{PROG}: {result.verdict}", file=sys.stderr)
    if result.report is not None:
        print(f"report: {results.shown_path(result.report)}", flush=True)
    elif result.run_dir is not None:
        print(f"{PROG}: report not drawn ({result.report_error}); results kept in {result.run_dir}", file=sys.stderr)
    return result.exit_code
