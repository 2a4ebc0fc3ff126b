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
        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(self.schema)(self.schema)
                                                  .iter_errors(doc))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"answer does not match the schema at {where}: {error.message}"
