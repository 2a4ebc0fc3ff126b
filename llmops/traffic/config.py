"""What a traffic run does: one dataclass, checked before anything is sent."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..proxy.key import REDACTED
from . import capacity as capacity_search
from .arrivals import ARRIVALS, Burst
from .mix import ModelMix, PriorityMix
from .outputcheck import OutputCheck, ToolCheck
from .tokencount import MODES as TOKEN_COUNTS

USER_AGENT = "llmops-traffic/0.1"
DEFAULT_MAX_TOKENS = 64  # short answers, so a run measures serving, not long decoding (docs/traffic-generator.md)
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_ERROR_RATIO = 0.05
SWEEP_LEVEL_DURATION = 20.0  # seconds per --sweep level when neither --duration nor --max is given
SWEEP_GROWTH = 0.10  # a step that adds less than 10% throughput is where it stops growing
ENDPOINTS = ("chat", "embeddings")
MAX_BATCH = 2048  # OpenAI's own limit on inputs per embeddings request

@dataclass
class TrafficConfig:
    """Everything a run needs; `url`/`api_key`/`model` of None are resolved from settings and the proxy."""

    url: str | None = None
    api_key: str | None = None
    model: str | None = None
    max_requests: int | None = None
    duration: float | None = None
    concurrency: int | None = None
    rate: float | None = None
    arrivals: str = "constant"
    ramp: float = 0.0
    burst: Burst | None = None
    delay: float = 0.0
    sweep: tuple[int, ...] = ()
    capacity: bool = False  # search the most concurrent streams within `slo` (levels: sweep or the default)
    slo: str | None = None  # --slo: aggregate bounds for --capacity (None: capacity.DEFAULT_SLO)
    stream: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    priority: int | None = None
    priority_mix: str | None = None  # --priority-mix 0:20,9:80: each request's priority drawn by these shares
    prompts: Path | None = None
    categories: tuple[str, ...] = ()
    sample: int | None = None  # draw this many of the file's records with the seed (all without it)
    prune: bool = False  # drop ShareGPT records as vLLM's benchmark does (by their lengths in tokens)
    token_count: str = "auto"  # how a prompt file's tokens are counted (tokencount.MODES)
    backend_url: str | None = None  # where the model's tokenizer is asked (None: the stack's backend)
    seed: int | None = None
    warmup: int = 0
    timeout: float = DEFAULT_TIMEOUT
    slo_ttft: float | None = None
    slo_latency: float | None = None
    output: Path | None = None
    summary_json: Path | None = None
    results_dir: Path | None = None  # keep the run in a folder here (the CLI's default: logs/loadtests)
    run_name: str | None = None
    command: tuple[str, ...] = ()  # the command line as typed; kept redacted in run.json, never in public()
    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO
    progress: bool = False
    user_agent: str = USER_AGENT
    extra_body: dict = field(default_factory=dict)
    endpoint: str = "chat"
    batch: int = 1
    response_format: str | None = None  # "json" or a JSON schema file
    tools: str | None = None  # a JSON file of OpenAI tools offered in every request; calls checked

    @property
    def mix(self) -> ModelMix | None:
        """The --model mix, or None when the model is to be taken from the proxy's list."""
        return ModelMix.parse(self.model) if self.model else None

    @property
    def priorities(self) -> PriorityMix | None:
        """The priority classes sent: the --priority-mix, one class for --priority N, None when none is sent."""
        if self.priority_mix is not None:
            return PriorityMix.parse(self.priority_mix)
        return PriorityMix.single(self.priority) if self.priority is not None else None

    @property
    def open_loop(self) -> bool:
        """Requests arrive on a schedule (rate or bursts) rather than as workers free up."""
        return self.rate is not None or self.burst is not None

    @property
    def capacity_levels(self) -> tuple[int, ...]:
        """The levels a --capacity run climbs: --sweep's, else the default."""
        return self.sweep or capacity_search.DEFAULT_LEVELS

    @property
    def slo_bounds(self) -> tuple[capacity_search.Bound, ...]:
        return capacity_search.parse_slo(self.slo or capacity_search.DEFAULT_SLO)

    @property
    def kind(self) -> str:
        """The load shape in words: closed loop, open loop, sweep or capacity."""
        if self.capacity:
            return "capacity"
        if self.sweep:
            return "sweep"
        return "open loop" if self.open_loop else "closed loop"

    @property
    def default_name(self) -> str:
        """A kept run's name when --name is not given, from the load shape: c4, rate-2, burst, sweep-1-2-4."""
        if self.capacity:
            return "capacity"
        if self.sweep:
            return "sweep-" + "-".join(map(str, self.sweep))
        if self.open_loop:
            return f"rate-{self.rate:g}" if self.rate is not None else "burst"
        return f"c{self.concurrency or 1}"

    def validate(self) -> TrafficConfig:
        """Raise ConfigError naming the first bad option; return self."""
        def bad(flag: str, why: str) -> None:
            raise ConfigError(f"{flag}: {why}")

        if self.url is not None and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", self.url):
            bad("--url", f"{self.url!r} is not a URL like http://localhost:8000")
        if self.backend_url is not None and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", self.backend_url):
            bad("--backend-url", f"{self.backend_url!r} is not a URL like http://localhost:11434")
        if self.token_count not in TOKEN_COUNTS:
            bad("--token-count", f"must be one of {', '.join(TOKEN_COUNTS)}, not {self.token_count!r}")
        for flag, value in (("--max", self.max_requests), ("--concurrency", self.concurrency),
                            ("--max-tokens", self.max_tokens), ("--sample", self.sample)):
            if value is not None and value < 1:
                bad(flag, f"must be >= 1, not {value}")
        for flag, value in (("--duration", self.duration), ("--timeout", self.timeout),
                            ("--rate", self.rate), ("--slo-ttft", self.slo_ttft),
                            ("--slo-latency", self.slo_latency)):
            if value is not None and not value > 0:
                bad(flag, f"must be > 0, not {value:g}")
        for flag, value in (("--delay", self.delay), ("--ramp", self.ramp), ("--warmup", self.warmup)):
            if value < 0:
                bad(flag, f"must be >= 0, not {value:g}")
        if self.arrivals not in ARRIVALS:
            bad("--arrivals", f"must be one of {', '.join(ARRIVALS)}, not {self.arrivals!r}")
        if self.arrivals != "constant" and self.rate is None:
            bad("--arrivals", "needs --rate")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            bad("--temperature", f"must be within 0-2, not {self.temperature:g}")
        if self.priority is not None and not 0 <= self.priority <= 255:
            bad("--priority", f"must be within 0-255 (lower is served first), not {self.priority}")
        if self.priority_mix is not None:
            if self.priority is not None:
                bad("--priority-mix", "cannot be combined with --priority (the mix sets each request's priority)")
            try:
                PriorityMix.parse(self.priority_mix)
            except ValueError as exc:
                bad("--priority-mix", str(exc))
        if not 0 <= self.max_error_ratio <= 1:
            bad("--max-error-ratio", f"must be within 0-1, not {self.max_error_ratio:g}")
        if self.model is not None:
            try:
                ModelMix.parse(self.model)
            except ValueError as exc:
                bad("--model", str(exc))
        if self.endpoint not in ENDPOINTS:
            bad("--endpoint", f"must be one of {', '.join(ENDPOINTS)}, not {self.endpoint!r}")
        if not 1 <= self.batch <= MAX_BATCH:
            bad("--batch", f"must be within 1-{MAX_BATCH}, not {self.batch}")
        if self.endpoint == "chat" and self.batch != 1:
            bad("--batch", "is for --endpoint embeddings (inputs per request)")
        if self.endpoint == "embeddings":
            if self.model is None:
                bad("--endpoint", "embeddings needs --model with an embedding model (e.g. all-minilm:22m)")
            if self.response_format is not None:
                bad("--response-format", "checks chat answers; it cannot be combined with --endpoint embeddings")
            if self.priority_mix is not None:
                bad("--priority-mix", "orders chat requests in the proxy's queue; embeddings pass it without waiting")
        if self.response_format is not None:
            OutputCheck.load(self.response_format)  # raises ConfigError naming the file
        if self.tools is not None:
            if self.endpoint == "embeddings":
                bad("--tools", "offers tools to chat; it cannot be combined with --endpoint embeddings")
            if self.response_format is not None:
                bad("--tools", "cannot be combined with --response-format (the backend answers one or the other)")
            ToolCheck.load(self.tools)  # raises ConfigError naming the file
        if self.open_loop and self.delay:
            bad("--delay", "is for closed-loop runs; with --rate or --burst the schedule sets the pace")
        if self.capacity:
            self._validate_capacity(bad)
        elif self.slo is not None:
            bad("--slo", "bounds a --capacity run; --slo-ttft and --slo-latency define goodput")
        if self.sweep:
            if self.open_loop:
                bad("--sweep", "sweeps concurrency; it cannot be combined with --rate or --burst")
            if self.concurrency is not None:
                bad("--sweep", "sets the concurrency levels itself; drop --concurrency")
            if any(c < 1 for c in self.sweep) or list(self.sweep) != sorted(set(self.sweep)):
                bad("--sweep", f"needs rising levels >= 1 like 1,2,4,8,16, not {','.join(map(str, self.sweep))}")
        return self

    def _validate_capacity(self, bad) -> None:
        if self.open_loop:
            bad("--capacity", "climbs closed-loop concurrency levels; it cannot be combined with --rate or --burst")
        if self.concurrency is not None:
            bad("--capacity", "sets the concurrency levels itself (--sweep LEVELS chooses them); drop --concurrency")
        try:
            bounds = self.slo_bounds
        except ValueError as exc:
            bad("--slo", str(exc))
        streamed = [b for b in bounds if b.metric.split("_")[0] in ("ttft", "itl", "tpot")]
        if streamed and (not self.stream or self.endpoint != "chat"):
            bad("--slo", f"{streamed[0]} needs streamed chat completions (drop --no-stream, or bound latency_p95)")
        if any(b.metric == "goodput" for b in bounds) and self.slo_ttft is None and self.slo_latency is None:
            bad("--slo", "a goodput bound needs --slo-ttft or --slo-latency (what a good request is)")

    def public(self) -> dict:
        """The options as JSON-ready data, the key left out."""
        out = asdict(self)
        out["api_key"] = REDACTED if self.api_key else None
        out.pop("command")
        out["burst"] = f"{self.burst.size}@{self.burst.every:g}" if self.burst else None
        for key in ("prompts", "output", "summary_json", "results_dir"):
            out[key] = str(out[key]) if out[key] is not None else None
        out["sweep"] = list(self.sweep)
        out["categories"] = list(self.categories)
        return out
