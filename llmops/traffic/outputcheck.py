"""`--response-format json|schema.json`: what to ask for, and whether each answer is what was asked for."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from ..errors import ConfigError


@dataclass(frozen=True)
class OutputCheck:
    """JSON mode (`schema` None) or a JSON schema every answer must parse as and validate against."""

    name: str
    schema: dict | None = None

    @classmethod
    def load(cls, spec: str) -> OutputCheck:
        """"json", or the path of a JSON schema file (ConfigError names the file and the problem)."""
        if spec == "json":
            return cls("json")
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--response-format: {spec!r} is neither \"json\" nor a JSON schema file")
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--response-format: {path}: not JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise ConfigError(f"--response-format: {path}: a JSON schema is an object, not {type(schema).__name__}")
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"--response-format: {path}: not a valid JSON schema ({exc.message})") from None
        return cls(path.stem, schema)

    def response_format(self) -> dict:
        """The OpenAI `response_format` that asks for it."""
        if self.schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": True}}

    def problem(self, text: str) -> str | None:
        """Why `text` is not a valid answer, or None when it is."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            return f"answer is not JSON ({exc}): {text[:80]!r}"
        if self.schema is None:
            return None if isinstance(doc, dict) else f"answer is JSON but not an object: {text[:80]!r}"
        mismatch = schema_mismatch(self.schema, doc)
        return f"answer {mismatch}" if mismatch else None


def schema_mismatch(schema: dict, doc: object) -> str | None:
    """"does not match the schema at PATH: WHY" for the best-matching error, or None when `doc` validates."""
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"does not match the schema at {where}: {error.message}"


@dataclass(frozen=True)
class ToolCheck:
    """`--tools FILE.json`: the OpenAI tools every request offers, and whether each call the answer makes
    names one of them with arguments that parse as JSON and validate against its `parameters`."""

    tools: tuple[dict, ...]

    @classmethod
    def load(cls, spec: str | Path) -> ToolCheck:
        """A JSON list of OpenAI tools (ConfigError names the file and the problem)."""
        path = Path(spec)
        try:
            tools = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"--tools: {path}: cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConfigError(f"--tools: {path}: not JSON ({exc})") from None
        if not isinstance(tools, list) or not tools:
            raise ConfigError(f"--tools: {path}: a non-empty JSON list of tools is needed")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise ConfigError(f"--tools: {path}: tools[{i}] needs function.name")
            schema = fn.get("parameters", {"type": "object"})
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except (jsonschema.SchemaError, TypeError, AttributeError) as exc:
                why = getattr(exc, "message", str(exc))
                raise ConfigError(f"--tools: {path}: tool {fn['name']!r} parameters: not a valid JSON schema ({why})") from None
        return cls(tuple(tools))

    def problem(self, calls: list[dict]) -> str | None:
        """Why the answer's calls ({"name", "arguments" as JSON text}) are not valid, or None when they are."""
        schemas = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in self.tools}
        for i, call in enumerate(calls):
            name = call.get("name")
            if name not in schemas:
                return f"tool call {i} names {name!r}, which is not among the tools"
            text = call.get("arguments") or ""
            try:
                arguments = json.loads(text) if isinstance(text, str) else text
            except ValueError as exc:
                return f"tool call {i} ({name}): arguments are not JSON ({exc}): {text[:80]!r}"
            mismatch = schema_mismatch(schemas[name], arguments)
            if mismatch:
                return f"tool call {i} ({name}): arguments {mismatch}"
        return None
