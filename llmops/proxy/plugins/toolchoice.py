"""The LiteLLM plug-in that carries OpenAI's `tool_choice` to the backend through `ollama_chat/`.

LiteLLM 1.108.7's `ollama_chat/` transformation pops `tool_choice` (a comment there says it made Ollama
hang), so `required` or a named function would never reach the embedded backend. Its request body
does take `extra_body` keys as top-level fields, so this hook copies `tool_choice` there; the embedded
backend reads `tool_choice` on `/api/chat`. A real Ollama ignores the unknown field.

Loaded by the proxy from `litellm_settings.callbacks: ["llmops.proxy.plugins.toolchoice.tool_choice"]`.
"""
from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger


def carry(data: dict) -> dict:
    """The request with `tool_choice` (when set beside tools) also in `extra_body`."""
    choice = data.get("tool_choice")
    if choice is not None and data.get("tools"):
        extra = data.get("extra_body")
        extra = dict(extra) if isinstance(extra, dict) else {}
        extra.setdefault("tool_choice", choice)
        data["extra_body"] = extra
    return data


class ToolChoice(CustomLogger):
    """Copies tool_choice into extra_body before the call (pre-call hook)."""

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        return carry(data)


tool_choice = ToolChoice()
