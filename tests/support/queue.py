"""The queue's integration tests' shared parts: the proxy's config and key, the official client, /metrics/ readers."""
from __future__ import annotations

import openai
import requests

from tests.support.helpers import wait_for

KEY = "sk-test-queue-5d1e0b"
MODEL = "smollm2:135m"
HOLD_PROMPT = "Write the numbers 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and continue the sequence up to 500"


# The model the backend serves, and one it does not have (the backend answers 404: a backend error).
CONFIG = """\
model_list:
  - model_name: smollm2:135m
    litellm_params: {model: ollama_chat/smollm2:135m, api_base: os.environ/OLLAMA_API_BASE}
  - model_name: ghost
    litellm_params: {model: ollama_chat/ghost:1b, api_base: os.environ/OLLAMA_API_BASE}
litellm_settings:
  num_retries: 1
  callbacks: ["prometheus"]
  require_auth_for_metrics_endpoint: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def client(url: str, timeout: float = 120.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=timeout)


def chat(url: str, content: str = "Say hi", max_tokens: int = 4, priority: int | None = None, **kw):
    extra = {"priority": priority} if priority is not None else {}
    return client(url, kw.pop("timeout", 120.0)).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0,
        extra_body=extra or None, **kw)


def hold(url: str, tokens: int = 300):
    """A request that keeps the slot for seconds (it counts until max_tokens)."""
    return chat(url, HOLD_PROMPT, max_tokens=tokens, priority=0)


def metrics(url: str) -> str:
    return requests.get(f"{url}/metrics/", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text


def family(text: str, name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def busy(url: str) -> float:
    return family(metrics(url), "llmops_queue_busy_slots")


def waiting(url: str) -> float:
    return family(metrics(url), "llmops_queue_waiting")


def wait_idle(url: str, within: float = 60) -> None:
    wait_for(lambda: busy(url) == 0 and waiting(url) == 0, within, "the queue to be idle (busy 0, waiting 0)")


def backend_chats(backend) -> float:
    text = requests.get(f"{backend.url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llm_backend_requests_total{") and 'endpoint="/api/chat"' in line)


