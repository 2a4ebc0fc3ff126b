"""The LiteLLM metrics the stack reads: the one list the proxy is told to export.

The renderer (llmops/proxy/config.py) writes this list into the proxy's config as
`litellm_settings.prometheus_metrics_config`. LiteLLM 1.108.7 then registers only these families; every other
one becomes a no-op. That matters for speed as well as for clutter: with the budget metrics off, the prometheus
callback no longer looks the caller up in a database the stack does not have (two failing `prisma` imports per
request; bench/proxy_overhead.py). tests/test_proxy_metrics.py fails when the rules, the charts or the probes
read a `litellm_*` family that is not listed here.
"""
from __future__ import annotations

# Names as prometheus_metrics_config takes them (LiteLLM's DEFINED_PROMETHEUS_METRICS): with the litellm_ prefix,
# without the _total that prometheus_client adds to a counter, without a histogram's _bucket/_sum/_count.
# Value: the metric's type, which decides the sample names /metrics/ shows.
METRICS: dict[str, str] = {
    # Requests and outcomes (the traffic card, rules, the requests chart; status_code/exception_status labels).
    "litellm_proxy_total_requests_metric": "counter",
    "litellm_proxy_failed_requests_metric": "counter",
    # Per-model latency: end to end, the backend call alone, and time to first token (streams only).
    "litellm_request_total_latency_metric": "histogram",
    "litellm_llm_api_latency_metric": "histogram",
    "litellm_llm_api_time_to_first_token_metric": "histogram",
    # Tokens per model.
    "litellm_input_tokens_metric": "counter",
    "litellm_output_tokens_metric": "counter",
    "litellm_total_tokens_metric": "counter",
    # Requests in flight (the in-flight middleware exports it whatever the config says; listed so it is read).
    "litellm_in_flight_requests": "gauge",
    # Per-deployment health (0 healthy, 1 partial outage, 2 outage) and fallbacks between models.
    "litellm_deployment_state": "gauge",
    "litellm_deployment_successful_fallbacks": "counter",
    "litellm_deployment_failed_fallbacks": "counter",
    # Failed calls per deployment (api_base label): which host of several failed (tests/test_scaleout.py reads it).
    "litellm_deployment_failure_responses": "counter",
}

GROUP = "llmops"
# What a sample name adds to its family's name, by type (prometheus_client 0.26's text exposition).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_ALL_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def metrics_config() -> list[dict]:
    """The value of litellm_settings.prometheus_metrics_config: one group, every label kept."""
    return [{"group": GROUP, "metrics": list(METRICS)}]


def family(sample_name: str) -> str:
    """The configured name a sample or family name belongs to (litellm_x_metric_total -> litellm_x_metric)."""
    if sample_name in METRICS:
        return sample_name
    for suffix in _ALL_SUFFIXES:
        if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in METRICS:
            return sample_name[: -len(suffix)]
    return sample_name


def sample_names(name: str) -> tuple[str, ...]:
    """The sample names /metrics/ shows for a listed metric (a counter's _total, a histogram's _bucket...)."""
    return tuple(name + suffix for suffix in SUFFIXES[METRICS[name]])
