"""A whole run: resolve settings, check the proxy, warm up, send, summarise, decide the exit code."""
from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from .. import settings as stack_settings
from ..proxy.key import auth_headers
from . import capacity, datasets, tokencount
from . import prompts as bank
from .arrivals import RateProfile, burst_schedule, merge, rate_schedule
from .config import SWEEP_LEVEL_DURATION, TrafficConfig
from .engine import Engine
from .mix import ModelMix, ModelPicker, PriorityPicker
from .preflight import PreflightError, check
from .progress import LiveProgress
from .results import SUMMARY_FORMAT, RunSpec, RunWriter
from .stats import Recorder, per_model, per_priority
from .sweep import knee

EXIT_OK = 0  # the run finished within --max-error-ratio
EXIT_ERRORS = 1  # the error ratio passed --max-error-ratio, or no request succeeded
EXIT_USAGE = 2  # a bad flag, prompt file or .env
EXIT_PREFLIGHT = 3  # the proxy is unreachable, refuses the key, or does not serve the model
EXIT_INTERRUPTED = 130  # Ctrl-C: the summary covers what finished


@dataclass
class RunResult:
    """The summary document, the exit code and the one-line verdict behind it."""

    summary: dict
    exit_code: int
    verdict: str
    run_dir: Path | None = None  # the kept run folder, when the config asked for one
    report: Path | None = None
    report_error: str | None = None
    dataset_line: str = ""  # what the prompts were, in one line


def resolve(config: TrafficConfig) -> TrafficConfig:
    """Fill url and key from the stack's settings (environment, then .env) where not given."""
    if config.url is None or config.api_key is None:
        loaded = stack_settings.load()
        if config.url is None:
            config.url = loaded.litellm_url
        if config.api_key is None:
            config.api_key = str(loaded.litellm_master_key)
    config.url = config.url.rstrip("/")
    return config


def run(config: TrafficConfig, progress: LiveProgress | None = None) -> RunResult:
    """Run synchronously (uvloop when installed); raises ConfigError or PreflightError before sending."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with litellm
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_async(config, progress))


async def run_async(config: TrafficConfig, progress: LiveProgress | None = None) -> RunResult:
    """The run itself; Ctrl-C (in the main thread) stops it and still returns the summary."""
    config = resolve(config.validate())
    seed = config.seed if config.seed is not None else random.randrange(2**31)
    parsed = datasets.read(config.prompts or bank.BANK_DIR, config.categories)  # a bad file stops it before sending
    progress = progress or LiveProgress(enabled=config.progress)
    headers = {"User-Agent": config.user_agent, "Content-Type": "application/json", **auth_headers(config.api_key)}
    # limit=0: the engine bounds concurrency itself; a connector limit would queue silently.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        mix = config.mix
        if mix is None:
            model = await check(session, config.url, config.api_key or "", None)
            mix = ModelMix((model,), (1.0,))
        for name in mix.models:
            await check(session, config.url, config.api_key or "", name)
        lengths = config.max_tokens is None and config.endpoint == "chat"  # a ShareGPT reply's sets max_tokens
        try:
            dataset = await asyncio.to_thread(tokencount.draw, parsed, config.sample, seed, config.prune, lengths,
                                              config.token_count, mix.models[0], config.backend_url)
        except tokencount.TokenCountError as exc:
            raise PreflightError(f"--token-count model: {exc}") from None
        run = _Run(session, config, mix, dataset, seed, progress)
        out = await RunWriter.open(run_spec(config), ",".join(mix.models), started_at, seed)
        sink = (lambda result: out.record(result.record())) if out.takes_lines else None
        try:
            with _CtrlC(run.interrupt):
                await run.go(sink)
        except BaseException:
            out.abandon()
            raise
        finally:
            progress.stop()
    result = run.result(started_at)
    result.report = out.finish(result.summary)
    result.run_dir, result.report_error = out.path, out.report_error
    return result


def run_spec(config: TrafficConfig) -> RunSpec:
    """What the results are told about the run: once, before it starts."""
    return RunSpec(url=config.url, api_key=config.api_key, tool=config.user_agent, kind=config.kind,
                   name=config.run_name or config.default_name, settings=config.public(), command=config.command,
                   results_dir=config.results_dir, output=config.output, summary_json=config.summary_json)


class _Run:
    """The phases of one run and the recorders they feed."""

    def __init__(self, session, config: TrafficConfig, mix: ModelMix, dataset: datasets.Dataset, seed: int,
                 progress: LiveProgress) -> None:
        self.session, self.config, self.seed, self.progress = session, config, seed, progress
        self.dataset = dataset
        prompts = dataset.prompts
        self.mix, self.model = mix, str(mix)
        path = "embeddings" if config.endpoint == "embeddings" else "chat/completions"
        self.endpoint = f"{config.url}/v1/{path}"
        self.picker = ModelPicker(mix, seed)
        self.by_model: dict[str, Recorder] = {}
        self.priorities = config.priorities if config.endpoint == "chat" else None  # embeddings are sent none
        self.priority_picker = PriorityPicker(self.priorities, seed) if self.priorities is not None else None
        self.by_priority: dict[int, Recorder] = {}
        self.order = bank.PromptOrder(prompts, seed)
        self.warmup_order = bank.PromptOrder(prompts, seed + 1)
        self.total = Recorder(config.slo_ttft, config.slo_latency, seed)
        self.warmup = Recorder(seed=seed)
        self.levels: list[tuple[int, Recorder]] = []
        self.search: capacity.Search | None = None
        self.ids = itertools.count(1)
        self.t0 = time.perf_counter()
        self.interrupted = False
        self._engine: Engine | None = None

    def interrupt(self) -> None:
        self.interrupted = True
        if self._engine is not None:
            self._engine.interrupt()

    def _engine_for(self, order, recorders, sink, phase="measure", level=None) -> Engine:
        self._engine = Engine(self.session, self.endpoint, self.config, self.mix.models[0], order, recorders,
                              self.t0, self.ids, sink, phase, level, picker=self.picker,
                              by_model=self.by_model if phase == "measure" else None,
                              priorities=self.priority_picker,
                              by_priority=self.by_priority if phase == "measure" else None)
        return self._engine

    async def go(self, sink) -> None:
        c = self.config
        if c.warmup and not self.interrupted:
            engine = self._engine_for(self.warmup_order, [self.warmup], sink, phase="warmup")
            self.progress.watch(self.warmup, "warmup")
            await engine.closed_loop(min(c.concurrency or 1, c.warmup), max_requests=c.warmup)
        if c.capacity:
            self.search = capacity.Search(c.capacity_levels, c.slo_bounds)
            while not self.interrupted and (level := self.search.next()) is not None:
                rec = await self._level(level, sink)
                if not self.interrupted:  # a level cut short by Ctrl-C is not judged
                    self.search.record(level, rec.summary())
            return
        if c.sweep:
            for level in c.sweep:
                if self.interrupted:
                    break
                await self._level(level, sink)
            return
        if self.interrupted:
            return
        engine = self._engine_for(self.order, [self.total], sink)
        self.progress.watch(self.total, "traffic")
        if c.open_loop:
            schedules = []
            if c.rate is not None:
                schedules.append(rate_schedule(RateProfile(c.rate, c.ramp), c.arrivals, self.seed))
            if c.burst is not None:
                schedules.append(burst_schedule(c.burst))
            await engine.open_loop(merge(*schedules), c.max_requests, c.duration, c.concurrency)
        else:
            await engine.closed_loop(c.concurrency or 1, c.max_requests, c.duration, c.delay, c.ramp)

    async def _level(self, level: int, sink) -> Recorder:
        """One closed-loop level of a sweep or a capacity search, for --duration or --max."""
        c = self.config
        rec = Recorder(c.slo_ttft, c.slo_latency, self.seed)
        self.levels.append((level, rec))
        engine = self._engine_for(self.order, [self.total, rec], sink, level=level)
        self.progress.watch(rec, f"concurrency {level}")
        duration = c.duration or (None if c.max_requests else SWEEP_LEVEL_DURATION)
        await engine.closed_loop(level, c.max_requests, duration, c.delay, c.ramp)
        return rec

    def result(self, started_at: str) -> RunResult:
        summary = self.total.summary()
        summary = {
            "format": SUMMARY_FORMAT, "tool": self.config.user_agent, "started_at": started_at, "url": self.config.url,
            "model": self.model, "seed": self.seed, "interrupted": self.interrupted,
            "warmup": {"requests": self.warmup.total, "ok": self.warmup.ok},
            **summary, "config": self.config.public(),
        }
        summary["endpoint"] = self.config.endpoint
        summary["dataset"] = self.dataset.public()
        summary["models"] = per_model(self.mix, self.by_model)
        summary["priorities"] = per_priority(self.priorities, self.by_priority)
        if self.levels:
            # A capacity search runs levels out of order (its bisection): the sweep's figures rise by level.
            levels = [{"concurrency": lvl, **rec.summary()} for lvl, rec in sorted(self.levels, key=lambda x: x[0])]
            summary["sweep"] = levels
            summary["knee"] = knee([(x["concurrency"], x["throughput"]["requests_per_s"]) for x in levels])
        if self.search is not None:
            summary["capacity"] = self.search.answer(self.config.slo or capacity.DEFAULT_SLO, self.interrupted)
        code, verdict = self._verdict(summary)
        summary["exit_code"], summary["verdict"] = code, verdict
        return RunResult(summary, code, verdict, dataset_line=self.dataset.line())

    def _verdict(self, summary: dict) -> tuple[int, str]:
        req, ratio, limit = summary["requests"], summary["error_ratio"], self.config.max_error_ratio
        if self.interrupted:
            cancelled = f", {req['cancelled']} cancelled in flight (not counted)" if req["cancelled"] else ""
            return EXIT_INTERRUPTED, f"interrupted: {req['total']} requests counted{cancelled}"
        if req["total"] and not req["ok"]:
            return EXIT_ERRORS, f"no request succeeded out of {req['total']}"
        if "capacity" in summary:  # errors at the levels that broke the SLO are part of the answer
            return EXIT_OK, summary["capacity"]["message"]
        if ratio > limit:
            return EXIT_ERRORS, f"error ratio {ratio:.1%} is above --max-error-ratio {limit:.1%}"
        return EXIT_OK, f"ok: {req['ok']}/{req['total']} requests succeeded (error ratio {ratio:.1%})"


class _CtrlC:
    """Ctrl-C calls `stop` once; a second Ctrl-C raises KeyboardInterrupt as usual."""

    def __init__(self, stop) -> None:
        self.stop = stop
        self.installed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.loop = asyncio.get_running_loop()
            self.loop.add_signal_handler(signal.SIGINT, self._first)
            self.installed = True
        return self

    def _first(self) -> None:
        self.loop.remove_signal_handler(signal.SIGINT)
        self.installed = False
        self.stop()

    def __exit__(self, *exc) -> None:
        if self.installed:
            self.loop.remove_signal_handler(signal.SIGINT)

