"""A chat that carries tools: the prompt through the family's tool template, the grammar, the calls read back.

The flow (one request, at most two generations):
1. The conversation and tools render through the tool template. When the template demands the call
   form as the whole answer (smollm2: "NO other text"), or the choice is `required`, the call grammar
   holds from the first token; after a `tool` message (a tool's result) the answer is free text and
   the grammar is lazy: it starts only if the model opens a call.
2. The answer is parsed. Calls come back as calls. An empty list (`[]`: no tool fits) is no answer for
   the user, so the conversation is generated again without the tools, as plain text.
A streamed answer under the lazy grammar streams its text as it comes (LazyCalls) until the model opens
a call; the call is then held and sent whole once it has ended, as Ollama streams calls.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

from .engine import Stats
from .handling import collect
from .options import BadRequest, GenOptions
from .templates import ToolTemplate
from .toolparse import CallHold, Parsed, parse_answer
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

    @property
    def lazy(self) -> bool:
        """The grammar starts only when the model opens a call (else it holds from the first token)."""
        return self.mode != "required" and not (self.template.calls_only and not self.after_result)

    def first_options(self, opts: GenOptions) -> GenOptions:
        """The grammar of the first generation: from the first token, or lazy after a tool's result."""
        grammar = calls_grammar(self.tools, required=self.mode == "required")
        if self.lazy:  # text or a call: the text may not be empty
            return replace(opts, grammar=grammar, grammar_triggers=[lazy_trigger()], text_required=True)
        return replace(opts, grammar=grammar, grammar_triggers=[])

    def text_options(self, opts: GenOptions) -> GenOptions:
        """The options of the text answer (after `[]`): it cannot end before it holds visible text."""
        return replace(opts, text_required=True)

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


class LazyCalls:
    """A streamed answer under the lazy grammar, read like a Generation (handling.stream_out takes it): its
    pieces are the text as it comes until a call opens; an empty list with no text before it is answered
    by `second()`, a generation without the tools, whose text streams. After the pieces, `calls` holds the
    answer's calls and `held()` the text not sent (a cut or broken call: sent as text at the end)."""

    def __init__(self, first, second: Callable[[], Awaitable[object]]):
        self.first, self.second, self._second_gen = first, second, None
        self.hold = CallHold()
        self.calls: list[dict] = []

    async def pieces(self) -> AsyncIterator[str]:
        async for text in self.first.pieces():
            out = self.hold.feed(text)
            if out:
                yield out
        parsed = parse_answer(self.hold.full)
        if parsed.calls:
            self.calls = parsed.calls
        elif parsed.has_call_form and not parsed.error and not parsed.content:
            self.hold = CallHold()  # the [] is no answer: nothing of it is sent
            self._second_gen = await self.second()
            async for text in self._second_gen.pieces():
                yield text

    def held(self) -> str:
        return "" if self.calls else self.hold.held()

    async def result(self) -> Stats:
        stats = await self.first.result()
        if self._second_gen is not None:
            stats = add_stats(stats, await self._second_gen.result())
        return stats

    def stop(self) -> None:
        self.first.stop()
        if self._second_gen is not None:
            self._second_gen.stop()


def add_stats(first: Stats, second: Stats) -> Stats:
    """The counts and durations of both generations, as one answer's."""
    second.prompt_eval_count += first.prompt_eval_count
    second.prompt_eval_ns += first.prompt_eval_ns
    second.eval_count += first.eval_count
    second.eval_ns += first.eval_ns
    second.load_ns += first.load_ns
    return second


async def start_lazy(backend, entry, plan: ToolPlan, opts: GenOptions, arrived: float, keep_alive: float):
    """Start a streamed answer under the lazy grammar; returns (LazyCalls, wait)."""
    gen, waited = await backend.generate(entry, plan.first_options(opts), arrived, keep_alive, prompt=plan.prompt(),
                                         kind="chat")

    async def second():
        text_gen, _ = await backend.generate(entry, plan.text_options(opts), arrived, keep_alive,
                                             prompt=plan.text_prompt(), kind="chat")
        return text_gen

    return LazyCalls(gen, second), waited
