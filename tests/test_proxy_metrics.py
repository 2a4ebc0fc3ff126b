"""The one list of LiteLLM metrics: every family the stack reads is on it, LiteLLM accepts it, the render adds it."""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops import settings
from llmops.errors import ConfigError
from llmops.proxy import config as proxyconf
from llmops.proxy import metrics as proxymetrics
from tests.support.env import ROOT

# A LiteLLM name in text: not part of a longer identifier, and not inside a recording rule's name (job:x:rate5m).
TOKEN = re.compile(r"(?<![\w:])litellm_[a-z0-9_]+(?![\w:])")
# litellm_* words in the package's strings that are config keys or JSON fields, not metrics.
NOT_METRICS = {"litellm_config", "litellm_key", "litellm_params", "litellm_provider", "litellm_settings",
               "litellm_version"}
# Sample suffixes, and name endings that only a metric has (so a misspelt metric is caught, not skipped).
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
METRIC_ENDINGS = (*SAMPLE_SUFFIXES, "_metric", "_seconds", "_requests", "_fallbacks", "_state", "_tokens")


def litellm_catalogue() -> set[str]:
    """LiteLLM's DEFINED_PROMETHEUS_METRICS, read from its source (importing litellm here would cost seconds)."""
    package = Path(importlib.util.find_spec("litellm").submodule_search_locations[0])
    tree = ast.parse((package / "types" / "integrations" / "prometheus.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEFINED_PROMETHEUS_METRICS"
                                                for t in node.targets):
            return {elt.value for elt in node.value.slice.elts}
    raise AssertionError("DEFINED_PROMETHEUS_METRICS not found in LiteLLM's source")


def configured_name(token: str, catalogue: set[str]) -> str:
    """The prometheus_metrics_config name of a sample or family name as PromQL writes it."""
    if token in catalogue:
        return token
    for suffix in SAMPLE_SUFFIXES:
        if token.endswith(suffix) and token[: -len(suffix)] in catalogue:
            return token[: -len(suffix)]
    return token


def promql_in_rules() -> dict[str, set[str]]:
    """litellm_* names in every rule's expr (rules/*.yml): all of them are metrics."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for token in TOKEN.findall(rule["expr"]):
                    found.setdefault(token, set()).add(path.name)
    return found


def names_in_code() -> dict[str, set[str]]:
    """litellm_* words in the package's and the dashboard's string constants, and in the front end's files."""
    found: dict[str, set[str]] = {}
    sources = sorted((ROOT / "llmops").rglob("*.py")) + [ROOT / "dashboard.py"]
    for path in sources:
        if path == ROOT / "llmops" / "proxy" / "metrics.py":  # the list itself
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for token in TOKEN.findall(node.value):
                    found.setdefault(token, set()).add(str(path.relative_to(ROOT)))
    front = [p for d in ("llmops/dashboard/static", "llmops/dashboard/templates", "llmops/traffic/results/templates")
             for p in sorted((ROOT / d).rglob("*"))
             if p.is_file() and "vendor" not in p.parts and p.suffix in (".js", ".html", ".css")]
    for path in front:
        for token in TOKEN.findall(path.read_text(errors="replace")):
            found.setdefault(token, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_listed_metric_is_a_name_litellm_accepts():
    unknown = set(proxymetrics.METRICS) - litellm_catalogue()
    assert not unknown, f"not in LiteLLM 1.108.7's DEFINED_PROMETHEUS_METRICS: {sorted(unknown)}"
    assert all(kind in proxymetrics.SUFFIXES for kind in proxymetrics.METRICS.values())


def test_the_collectors_find_the_names_the_rules_and_charts_read():
    # The collectors themselves: they must see what is known to be read, or the next test proves nothing.
    assert "litellm_proxy_failed_requests_metric_total" in promql_in_rules()
    code = names_in_code()
    assert {"litellm_request_total_latency_metric", "litellm_in_flight_requests"} <= set(code)
    assert "llmops/proxy/counts.py" in code["litellm_proxy_total_requests_metric_total"]


def test_every_litellm_metric_the_stack_reads_is_on_the_list():
    catalogue = litellm_catalogue()
    missing = {}
    for token, where in promql_in_rules().items():
        if configured_name(token, catalogue) not in proxymetrics.METRICS:
            missing[token] = sorted(where)
    for token, where in names_in_code().items():
        name = configured_name(token, catalogue)
        looks_like_a_metric = name in catalogue or token.endswith(METRIC_ENDINGS)
        if token not in NOT_METRICS and looks_like_a_metric and name not in proxymetrics.METRICS:
            missing[token] = sorted(where)
    assert not missing, ("read but not in llmops/proxy/metrics.py's METRICS (so the proxy would not export it), or a "
                         f"misspelt name: {missing}")


def test_family_and_sample_names_follow_the_metric_type():
    assert proxymetrics.family("litellm_proxy_total_requests_metric_total") == "litellm_proxy_total_requests_metric"
    assert proxymetrics.family("litellm_request_total_latency_metric_bucket") == "litellm_request_total_latency_metric"
    assert proxymetrics.family("litellm_deployment_state") == "litellm_deployment_state"
    assert proxymetrics.sample_names("litellm_request_total_latency_metric") == (
        "litellm_request_total_latency_metric_bucket", "litellm_request_total_latency_metric_sum",
        "litellm_request_total_latency_metric_count")
    assert proxymetrics.sample_names("litellm_deployment_successful_fallbacks") == (
        "litellm_deployment_successful_fallbacks_total",)


LOGGER_PROBE = r"""
import json, sys
import litellm
litellm.prometheus_metrics_config = json.loads(sys.argv[1])
from prometheus_client import REGISTRY
from litellm.integrations.prometheus import PrometheusLogger
PrometheusLogger()
print(json.dumps({m.name: m.type for m in REGISTRY.collect() if m.name.startswith("litellm_")}))
"""


def test_litellm_registers_exactly_the_listed_metrics_with_their_types():
    """LiteLLM's own PrometheusLogger, given the rendered setting, in a fresh process (its registry is global)."""
    out = subprocess.run([sys.executable, "-c", LOGGER_PROBE, json.dumps(proxymetrics.metrics_config())],
                         capture_output=True, text=True, timeout=120, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                                                           "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    registered = json.loads(out.stdout.strip().splitlines()[-1])
    # The in-flight gauge belongs to a middleware, registered on the first request, whatever the config says.
    expected = {name: kind for name, kind in proxymetrics.METRICS.items() if name != "litellm_in_flight_requests"}
    assert registered == expected


def test_render_adds_the_list_and_keeps_a_group_of_ones_own(tmp_path):
    source = tmp_path / "litellm_config.yaml"
    data = yaml.safe_load(proxyconf.CONFIG.read_text())
    data["litellm_settings"]["prometheus_metrics_config"] = [
        {"group": "mine", "metrics": ["litellm_spend_metric"]},
        {"group": proxymetrics.GROUP, "metrics": ["litellm_requests_metric"]},  # ours is replaced, not doubled
    ]
    source.write_text(yaml.safe_dump(data))
    s = settings.load(env_file=tmp_path / "env", environ={})
    rendered = proxyconf.render(s, source)["litellm_settings"]["prometheus_metrics_config"]
    assert rendered == [{"group": "mine", "metrics": ["litellm_spend_metric"]}, *proxymetrics.metrics_config()]
    shipped = proxyconf.render(s)["litellm_settings"]["prometheus_metrics_config"]
    assert shipped == proxymetrics.metrics_config()


@pytest.mark.parametrize("settings_text, line, words", [
    ("litellm_settings:\n  prometheus_metrics_config: litellm_spend_metric\n", 5, "must be a list of groups"),
    ("litellm_settings:\n  prometheus_metrics_config:\n    - metrics: [litellm_spend_metric]\n", 6,
     "needs a group name and a list of metrics"),
    ("litellm_settings:\n  prometheus_metrics_config:\n    - {group: a, metrics: litellm_spend_metric}\n", 6,
     "needs a group name and a list of metrics"),
    ("litellm_settings: [prometheus]\n", 4, "litellm_settings must be a mapping"),
])
def test_a_bad_metrics_config_names_file_and_line(tmp_path, settings_text, line, words):
    path = tmp_path / "litellm_config.yaml"
    path.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: ollama/a, api_base: x}\n"
                    + settings_text)
    with pytest.raises(ConfigError) as info:
        proxyconf.validate(path)
    assert f"{path}:{line}:" in str(info.value) and words in str(info.value)


def test_opentelemetry_sdk_matches_the_installed_api_and_is_pinned():
    api = importlib.metadata.version("opentelemetry-api")
    assert importlib.metadata.version("opentelemetry-sdk") == api
    assert f"opentelemetry-sdk=={api}" in (ROOT / "requirements.txt").read_text().splitlines()
    # The import LiteLLM's auth tries on every request (it failed without the SDK, so it ran again each time).
    out = subprocess.run([sys.executable, "-c", "import litellm.integrations.otel.logger"], capture_output=True,
                         text=True, timeout=120, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]


def test_uvicorn_parses_http_with_httptools():
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert AutoHTTPProtocol is HttpToolsProtocol
    version = importlib.metadata.version("httptools")
    assert f"httptools=={version}" in (ROOT / "requirements.txt").read_text().splitlines()


def test_the_committed_config_leaves_tracing_off():
    data = yaml.safe_load(Path(proxyconf.CONFIG).read_text())
    callbacks = [str(c) for key in ("callbacks", "success_callback", "failure_callback")
                 for c in data["litellm_settings"].get(key) or []]
    assert not any("otel" in c or "opentelemetry" in c for c in callbacks), callbacks
