"""Tool templates per model family: how tools, calls and tool results go into the prompt.

A GGUF's own `tokenizer.chat_template` rarely knows tools (SmolLM2's has no tools section), so the
backend keeps, as Ollama does in its library, a template per family that does. It is used only when a
request carries tools; `/api/show` shows it and lists `tools` among the capabilities because of it.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

# Ollama's library template for smollm2 (135m, 360m, 1.7b), shown as /api/show's `template`; the
# renderer below writes the same text.
SMOLLM2_OLLAMA_TEMPLATE = """{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the functions can be used, point it out and refuse to answer.
If the given question lacks the parameters required by the function, also point it out.

You have access to the following tools:
<tools>{{- range .Tools }}{{ . }}
{{ end }}</tools>

The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make the tool calls an empty list '[]'.
<tool_call>[
{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},
... (more tool calls as required)
]</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{- if .Content }}
{{ .Content }}
{{- else if .ToolCalls }}
<tool_call>[
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}]</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

_SMOLLM2_TOOLS_INTRO = (
    "You are an expert in composing functions. You are given a question and a set of possible functions.\n"
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose.\n"
    "If none of the functions can be used, point it out and refuse to answer.\n"
    "If the given question lacks the parameters required by the function, also point it out.\n\n"
    "You have access to the following tools:\n<tools>"
)
_SMOLLM2_TOOLS_FORMAT = (
    "</tools>\n\n"
    "The output MUST strictly adhere to the following format, and NO other text MUST be included.\n"
    "The example format is as follows. Please make sure the parameter type is correct. If no function call"
    " is needed, please make the tool calls an empty list '[]'.\n"
    "<tool_call>[\n"
    '{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},\n'
    "... (more tool calls as required)\n"
    "]</tool_call>"
)

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


def _go_json(value: object) -> str:
    """JSON as Go's encoding/json writes it in Ollama's templates (compact, no HTML escaping needed here)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_smollm2(messages: list[dict], tools: list[dict]) -> str:
    """Ollama's smollm2 template: tools in the system prompt, calls in <tool_call>[...], results as user turns."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    turns = [m for m in messages if m["role"] != "system"]
    out = []
    if system or tools:
        out.append("<|im_start|>system")
        if system:
            out.append("\n" + system)
        if tools:
            out.append("\n\n" + _SMOLLM2_TOOLS_INTRO + "".join(_go_json(t) + "\n" for t in tools) + _SMOLLM2_TOOLS_FORMAT)
        out.append("<|im_end|>\n")
    for i, msg in enumerate(turns):
        last = i == len(turns) - 1
        role = msg["role"]
        if role == "user":
            out.append(f"<|im_start|>user\n{msg['content']}<|im_end|>\n")
        elif role == "assistant":
            out.append("<|im_start|>assistant")
            if msg["content"]:
                out.append("\n" + msg["content"])
            elif msg.get("tool_calls"):
                calls = "".join(
                    f'{{"name": "{c["name"]}", "arguments": {_go_json(c["arguments"])}}}\n' for c in msg["tool_calls"]
                )
                out.append(f"\n{CALL_OPEN}[\n{calls}]{CALL_CLOSE}")
            if not last:
                out.append("<|im_end|>\n")
        elif role == "tool":
            out.append(f"<|im_start|>user\n<tool_response>\n{msg['content']}\n</tool_response><|im_end|>\n")
        if role != "assistant" and last:
            out.append("<|im_start|>assistant\n")
    return "".join(out)


@dataclass(frozen=True)
class ToolTemplate:
    """A family's tool template: the text /api/show shows, its renderer, and what it asks of the answer."""

    family: str
    template: str
    render: Callable[[list[dict], list[dict]], str]
    # The template asks for the call form as the whole answer ("NO other text"), with [] for no call:
    # the grammar then holds from the first token.
    calls_only: bool


SMOLLM2 = ToolTemplate("smollm2", SMOLLM2_OLLAMA_TEMPLATE, render_smollm2, calls_only=True)


def tool_template_for(metadata: dict) -> ToolTemplate | None:
    """The tool template for a model's family (from its GGUF metadata), or None: the model has no tools."""
    names = " ".join(str(metadata.get(key, "")) for key in ("general.basename", "general.name")).lower()
    if "smollm2" in names:
        return SMOLLM2
    return None
