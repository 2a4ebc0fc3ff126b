"""The LiteLLM proxy's config: validation with file:line messages, and rendering for N backends."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..settings import ROOT, Settings
from . import metrics as proxymetrics

CONFIG = ROOT / "litellm_config.yaml"
BACKEND_ENV = "os.environ/OLLAMA_API_BASE"
# Providers that talk to an Ollama-style server and so need an api_base.
NEEDS_BASE = ("ollama", "ollama_chat", "openai", "hosted_vllm", "llamafile")
# LiteLLM 1.108.7 never cools a deployment down for a connection error; with several backends a dead one
# is left out only when a background health check marks it, so check often enough to matter.
MULTI_BACKEND_HEALTH_CHECK_INTERVAL = 10
SECTIONS = ("model_list", "litellm_settings", "router_settings", "general_settings", "environment_variables")
# Cost-map facts for a model served by Ollama (or the embedded backend): free, a chat model, and the provider
# LiteLLM resolves it under. With them LiteLLM 1.108.7 answers its per-request model-info lookups from its
# cache; without them each request rescans the 4,255-entry cost map several times (bench/proxy_overhead.py).
LOCAL_MODEL_INFO = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
LOCAL_PROVIDERS = ("ollama", "ollama_chat")
# The request log's LiteLLM callback (llmops/proxy/plugins/requestlog.py); REQUEST_LOG=0 leaves it out.
REQUEST_LOG_CALLBACK = "llmops.proxy.plugins.requestlog.request_log"
# The priority queue (llmops/proxy/plugins/priorityqueue.py); QUEUE_ENABLED=false leaves it out. Listed last, so
# the other plug-ins' pre-call hooks run before it takes a slot.
QUEUE_CALLBACK = "llmops.proxy.plugins.priorityqueue.priority_queue"
# LiteLLM's background health checks are real generations outside every hook: one token each keeps them cheap.
HEALTH_CHECK_MAX_TOKENS = 1
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node) -> dict[str, yaml.Node]:
    return {k.value: v for k, v in node.value} if isinstance(node, yaml.MappingNode) else {}


def validate(path: Path = CONFIG) -> dict:
    """Check the file exists, parses, and every model names a provider and a base URL; return the data."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: YAML does not parse: {exc.problem or exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:1: expected a mapping with a model_list")
    top = _mapping(root)
    for key, node in top.items():
        if key not in SECTIONS:
            raise ConfigError(f"{path}:{_line(node)}: unknown section {key!r} (expected one of {', '.join(SECTIONS)})")
    models = top.get("model_list")
    if not isinstance(models, yaml.SequenceNode) or not models.value:
        raise ConfigError(f"{path}:{_line(models) if models else 1}: model_list is missing or empty")
    for entry in models.value:
        fields = _mapping(entry)
        if "model_name" not in fields:
            raise ConfigError(f"{path}:{_line(entry)}: model entry has no model_name")
        params = _mapping(fields.get("litellm_params")) if "litellm_params" in fields else {}
        name = fields["model_name"].value
        info = fields.get("model_info")
        if info is not None and not isinstance(info, yaml.MappingNode) and info.tag != "tag:yaml.org,2002:null":
            raise ConfigError(f"{path}:{_line(info)}: model {name!r}: model_info must be a mapping")
        if "model" not in params:
            raise ConfigError(f"{path}:{_line(entry)}: model {name!r} has no litellm_params.model")
        model = str(params["model"].value)
        if "/" not in model:
            raise ConfigError(
                f"{path}:{_line(params['model'])}: model {name!r}: {model!r} names no provider "
                "(expected e.g. ollama_chat/smollm2:135m)"
            )
        if model.split("/", 1)[0] in NEEDS_BASE and "api_base" not in params:
            raise ConfigError(f"{path}:{_line(entry)}: model {name!r} has no litellm_params.api_base")
        mode = _mapping(info).get("mode") if info is not None else None
        if mode is not None and mode.value == "embedding" and model.split("/", 1)[0] == "ollama_chat":
            raise ConfigError(
                f"{path}:{_line(mode)}: model {name!r}: LiteLLM has no ollama_chat/ embeddings route "
                f"(it answers 400 \"Unmapped LLM provider\"); use ollama/{model.split('/', 1)[1]}"
            )
    for key in ("litellm_settings", "router_settings", "general_settings"):
        node = top.get(key)
        if node is not None and not isinstance(node, yaml.MappingNode) and node.tag != "tag:yaml.org,2002:null":
            raise ConfigError(f"{path}:{_line(node)}: {key} must be a mapping")
    _validate_metrics_config(path, _mapping(top.get("litellm_settings")))
    _check_fallbacks(path, top, {e.get("model_name") for e in data["model_list"]})
    return data


def _validate_metrics_config(path: Path, litellm_settings: dict[str, yaml.Node]) -> None:
    """A prometheus_metrics_config of one's own must be a list of {group, metrics: [names]}; ours is added."""
    node = litellm_settings.get("prometheus_metrics_config")
    if node is None or node.tag == "tag:yaml.org,2002:null":
        return
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(f"{path}:{_line(node)}: prometheus_metrics_config must be a list of groups")
    for group in node.value:
        fields = _mapping(group)
        metrics = fields.get("metrics")
        if "group" not in fields or not isinstance(metrics, yaml.SequenceNode):
            raise ConfigError(f"{path}:{_line(group)}: each prometheus_metrics_config entry needs a group name "
                              "and a list of metrics")


def _check_fallbacks(path: Path, top: dict[str, yaml.Node], names: set) -> None:
    """Every model a fallback list names must be routed: LiteLLM would only fail at request time."""
    router = _mapping(top.get("router_settings")) if "router_settings" in top else {}
    for key in FALLBACK_KEYS:
        node = router.get(key)
        if not isinstance(node, yaml.SequenceNode):
            continue
        for item in node.value:
            for source, targets in (item.value if isinstance(item, yaml.MappingNode) else []):
                wanted = [source] + (targets.value if isinstance(targets, yaml.SequenceNode) else [targets])
                for ref in wanted:
                    if isinstance(ref, yaml.ScalarNode) and ref.value not in names:
                        raise ConfigError(f"{path}:{_line(ref)}: router_settings.{key} names {ref.value!r}, "
                                          f"which no model_list entry routes")


def routed_models(data: dict) -> dict[str, str]:
    """Model name -> mode ("chat", "embedding", ...) for every model the config routes."""
    routed: dict[str, str] = {}
    for entry in data.get("model_list") or []:
        provider = str(entry["litellm_params"]["model"]).split("/", 1)[0]
        mode = (entry.get("model_info") or {}).get("mode") or ("chat" if provider == "ollama_chat" else "completion")
        routed.setdefault(str(entry["model_name"]), mode)
    return routed


def render(settings: Settings, source: Path | None = None) -> dict:
    """The config the proxy runs with: one deployment per backend, limits from the settings."""
    data = validate(source or settings.litellm_config_path)
    backends = settings.backend_urls
    deployments = []
    for entry in data["model_list"]:
        params = entry["litellm_params"]
        provider = str(params["model"]).split("/", 1)[0]
        if provider in LOCAL_PROVIDERS:
            info = entry.get("model_info") or {}
            # ollama/ (/api/generate, or /api/embed for an embedding model) keeps the mode the file gives it:
            # only the file knows that a model embeds; `mode: embedding` is kept below (**info).
            mode = {"mode": "chat"} if provider == "ollama_chat" else {}
            entry["model_info"] = {**LOCAL_MODEL_INFO, **mode, "litellm_provider": provider, **info}
        targets = backends if params.get("api_base") == BACKEND_ENV else [None]
        for url in targets:
            deployment = copy.deepcopy(entry)
            if url:
                deployment["litellm_params"]["api_base"] = url
            if settings.litellm_max_parallel:
                deployment["litellm_params"]["max_parallel_requests"] = settings.litellm_max_parallel
            if settings.litellm_rpm:
                deployment["litellm_params"]["rpm"] = settings.litellm_rpm
            deployments.append(deployment)
    data["model_list"] = deployments
    # Timeout and retries can be overridden from .env, written where LiteLLM reads them.
    if settings.litellm_timeout is not None:
        timeout = settings.litellm_timeout
        timeout = int(timeout) if timeout.is_integer() else timeout
        data.setdefault("litellm_settings", {})["request_timeout"] = timeout
        data.setdefault("router_settings", {})["timeout"] = timeout
    if settings.litellm_num_retries is not None:
        data.setdefault("litellm_settings", {})["num_retries"] = settings.litellm_num_retries
        data.setdefault("router_settings", {})["num_retries"] = settings.litellm_num_retries
    interval = settings.litellm_health_check_interval
    if interval is None and len(backends) > 1:
        interval = MULTI_BACKEND_HEALTH_CHECK_INTERVAL
    if interval is not None:
        data.setdefault("general_settings", {})["health_check_interval"] = int(interval)
    if not settings.request_log:
        callbacks = data.get("litellm_settings", {}).get("callbacks")
        if isinstance(callbacks, list) and REQUEST_LOG_CALLBACK in callbacks:
            callbacks.remove(REQUEST_LOG_CALLBACK)
    if settings.queue_enabled:
        callbacks = data.setdefault("litellm_settings", {}).setdefault("callbacks", [])
        if QUEUE_CALLBACK not in callbacks:
            callbacks.append(QUEUE_CALLBACK)
        # A client that hangs up on an admitted, non-streamed request cancels its backend call, so its slot frees.
        data.setdefault("general_settings", {}).setdefault("cancel_on_disconnect", True)
        for deployment in deployments:
            provider = str(deployment["litellm_params"]["model"]).split("/", 1)[0]
            if provider in LOCAL_PROVIDERS and (deployment.get("model_info") or {}).get("mode") != "embedding":
                deployment.setdefault("model_info", {}).setdefault("health_check_max_tokens", HEALTH_CHECK_MAX_TOKENS)
    if settings.litellm_rpm:
        # Without pre-call checks LiteLLM 1.108.7 treats rpm as requests in flight, not per minute.
        data.setdefault("router_settings", {})["enable_pre_call_checks"] = True
    # Only the metrics the stack reads (llmops/proxy/metrics.py); groups of one's own are kept beside ours.
    litellm_settings = data["litellm_settings"] = data.get("litellm_settings") or {}
    own = [g for g in litellm_settings.get("prometheus_metrics_config") or [] if g.get("group") != proxymetrics.GROUP]
    litellm_settings["prometheus_metrics_config"] = own + proxymetrics.metrics_config()
    return data


def queue_groups(data: dict) -> dict[str, list[str]]:
    """Model group -> its deployments' slot pools ("api_base|model"), for every generating model with a base URL."""
    groups: dict[str, list[str]] = {}
    for entry in data.get("model_list") or []:
        params = entry.get("litellm_params") or {}
        model, base = str(params.get("model") or ""), params.get("api_base")
        if (entry.get("model_info") or {}).get("mode") == "embedding" or not base or "/" not in model:
            continue
        key = f"{str(base).rstrip('/')}|{model.split('/', 1)[1]}"
        pools = groups.setdefault(str(entry["model_name"]), [])
        if key not in pools:
            pools.append(key)
    return groups


def redis_needed(settings: Settings) -> bool:
    """The stack runs its own Redis for the queue: several proxy workers share it, unless REDIS_URL names one."""
    return bool(settings.queue_enabled and settings.litellm_workers > 1 and not settings.redis_url)


def queue_redis_url(settings: Settings) -> str:
    """Where the queue's shared state lives: REDIS_URL, the stack's own Redis when needed, else "" (in-process)."""
    if settings.redis_url:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.redis_port}/0" if redis_needed(settings) else ""


def queue_settings(settings: Settings, data: dict) -> dict:
    """What the priority-queue plug-in reads in each proxy worker (LLMOPS_QUEUE, JSON)."""
    return {"max": settings.queue_max, "timeout": settings.queue_timeout, "ageing": settings.queue_ageing,
            "default_priority": settings.queue_default_priority, "ollama_num_parallel": settings.ollama_num_parallel,
            "backend_num_parallel": settings.backend_num_parallel, "redis_url": queue_redis_url(settings),
            "groups": queue_groups(data)}


def write_rendered(settings: Settings) -> Path:
    path = settings.state_dir / "litellm_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(render(settings), sort_keys=False)
    path.write_text("# Rendered from litellm_config.yaml at start; do not edit.\n" + body)
    return path
