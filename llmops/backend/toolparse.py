"""The model's answer read back: text and the calls in `<tool_call>[...]</tool_call>`."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .templates import CALL_CLOSE, CALL_OPEN


@dataclass
class Parsed:
    """An answer split into its text and its calls ({"name", "arguments"}); `error` says why a call part
    did not parse (the text then holds the whole answer)."""

    content: str
    calls: list[dict] = field(default_factory=list)
    has_call_form: bool = False
    error: str = ""


def parse_answer(text: str) -> Parsed:
    """Split text at the first `<tool_call>`; the part inside must be a JSON list of {name, arguments}."""
    start = text.find(CALL_OPEN)
    if start < 0:
        return Parsed(content=text)
    before = text[:start].strip()
    inner = text[start + len(CALL_OPEN):]
    end = inner.find(CALL_CLOSE)
    if end < 0:
        return Parsed(content=text, has_call_form=True, error="the call has no closing </tool_call>")
    inner = inner[:end].strip()
    try:
        value = json.loads(inner)
    except ValueError as exc:
        return Parsed(content=text, has_call_form=True, error=f"the call is not JSON: {exc}")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return Parsed(content=text, has_call_form=True, error="the call is not a list")
    calls = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return Parsed(content=text, has_call_form=True, error="a call has no name")
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return Parsed(content=text, has_call_form=True, error="a call's arguments are not JSON")
        if not isinstance(arguments, dict):
            return Parsed(content=text, has_call_form=True, error="a call's arguments are not an object")
        calls.append({"name": item["name"], "arguments": arguments})
    return Parsed(content=before, calls=calls, has_call_form=True)


def validate_calls(calls: list[dict], tools: list[dict]) -> str:
    """"" when every call names a tool and its arguments validate against its schema, else why not."""
    import jsonschema

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for call in calls:
        if call["name"] not in schemas:
            return f"unknown tool {call['name']!r}"
        try:
            jsonschema.validate(call["arguments"], schemas[call["name"]])
        except jsonschema.ValidationError as exc:
            return f"arguments of {call['name']!r}: {exc.message}"
    return ""


class CallHold:
    """An answer's text streamed as it comes until the model opens a call: text that cannot be the start of
    `<tool_call>` goes out at once, a tail that could be is held, and from the marker on all is held."""

    def __init__(self) -> None:
        self.full = ""
        self.sent = 0
        self.opened = False

    def feed(self, text: str) -> str:
        """Add a piece; return the text that can go out now."""
        self.full += text
        if self.opened:
            return ""
        at = self.full.find(CALL_OPEN, max(0, self.sent - len(CALL_OPEN)))
        if at >= 0:
            self.opened = True
            end = at
        else:
            keep = next((n for n in range(min(len(CALL_OPEN) - 1, len(self.full)), 0, -1)
                         if self.full.endswith(CALL_OPEN[:n])), 0)
            end = len(self.full) - keep
        end = max(end, self.sent)
        out, self.sent = self.full[self.sent:end], end
        return out

    def held(self) -> str:
        """What was not sent."""
        return self.full[self.sent:]
