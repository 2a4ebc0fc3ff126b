"""A chat that carries tools: the prompt through the family's tool template, the grammar, the calls read back.

The flow (one request, at most two generations):
1. The conversation and tools render through the tool template. When the template demands the call
   form as the whole answer (smollm2: "NO other text"), or the choice is `required`, the call grammar
   holds from the first token; after a `tool` message (a tool's result) the answer is free text and
   the grammar is lazy: it starts only if the model opens a call.
2. The answer is parsed. Calls come back as calls. An empty list (`[]`: no tool fits) is no answer for
   the user, so the conversation is generated again without the tools, as plain text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from .engine import Stats
from .handling import collect
from .options import BadRequest, GenOptions
from .templates import ToolTemplate
from .toolparse import Parsed, parse_answer
from .tools import calls_grammar, lazy_trigger


def parse_tool_messages(raw: object, arguments_as_text: bool = False) -> list[dict]:
    """Chat messages with their tool parts: assistant `tool_calls` ({"name", "arguments" as an object}),
    and a tool message's `tool_name` / `tool_call_id`. OpenAI sends arguments as JSON text."""
    from .protocol import parse_messages

    messages = parse_messages(raw, allow_parts=True)
    for i, (msg, given) in enumerate(zip(messages, raw or [], strict=True)):
        calls = given.get("tool_calls")
        if calls is None:
            pass
        elif not isinstance(calls, list):
            raise BadRequest(f"messages[{i}].tool_calls must be a list")
        else:
            msg["tool_calls"] = [_call(i, j, call) for j, call in enumerate(calls)]
        for key in ("tool_name", "tool_call_id", "name"):
            if isinstance(given.get(key), str):
                msg[key] = given[key]
    return messages


def _call(i: int, j: int, call: object) -> dict:
    where = f"messages[{i}].tool_calls[{j}]"
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise BadRequest(f"{where}.function.name is required")
    arguments = fn.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise BadRequest(f"{where}.function.arguments is not JSON: {arguments[:80]!r}") from None
    if not isinstance(arguments, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object")
    return {"name": fn["name"], "arguments": arguments}


@dataclass
class ToolPlan:
    """How one request's tools shape its generation."""

    template: ToolTemplate
    tools: list[dict]
    mode: str = "auto"  # auto or required (none never reaches here: no tools are offered)
    messages: list[dict] = field(default_factory=list)

    @property
    def after_result(self) -> bool:
        return bool(self.messages) and self.messages[-1]["role"] == "tool"

    def first_options(self, opts: GenOptions) -> GenOptions:
        """The grammar of the first generation: from the first token, or lazy after a tool's result."""
        required = self.mode == "required"
        grammar = calls_grammar(self.tools, required=required)
        strict = required or (self.template.calls_only and not self.after_result)
        return replace(opts, grammar=grammar, grammar_triggers=[] if strict else [lazy_trigger()])

    def prompt(self) -> str:
        return self.template.render(self.messages, self.tools)

    def text_prompt(self) -> str:
        """The conversation without the tools offered: for a plain text answer."""
        return self.template.render(self.messages, [])


@dataclass
class FirstAnswer:
    """What the first generation gave: its parse and its stats."""

    parsed: Parsed
    stats: Stats
    raw: str

    @property
    def needs_text(self) -> bool:
        """An empty call list is no answer: the user then gets text."""
        return self.parsed.has_call_form and not self.parsed.calls and not self.parsed.error and not self.parsed.content


async def first_answer(backend, entry, plan: ToolPlan, opts: GenOptions, arrived: float, keep_alive: float):
    """Run the first generation to its end (a call must be whole to parse); returns it and the wait."""
    gen, waited = await backend.generate(entry, plan.first_options(opts), arrived, keep_alive,
                                         prompt=plan.prompt(), kind="chat")
    text, stats = await collect(gen)
    return FirstAnswer(parse_answer(text), stats, text), waited


def add_stats(first: Stats, second: Stats) -> Stats:
    """The counts and durations of both generations, as one answer's."""
    second.prompt_eval_count += first.prompt_eval_count
    second.prompt_eval_ns += first.prompt_eval_ns
    second.eval_count += first.eval_count
    second.eval_ns += first.eval_ns
    second.load_ns += first.load_ns
    return second
