"""The prompt bank: loading `data/prompts/*.json`, choosing categories, and a reproducible order.

Format (documented in data/prompts/README.md): one JSON object per file,
`{"format": 1, "category": str, "description": str, "prompts": [{"id": str, "prompt": str,
"system": str?, "max_tokens": int?} | {"id": str, "messages": [...], "max_tokens": int?}]}`.
A `.txt` file is read as one prompt per line (category "custom").
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT

BANK_DIR = ROOT / "data" / "prompts"
FORMAT = 1
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Prompt:
    """One prompt: its messages and an optional max_tokens of its own."""

    id: str
    category: str
    messages: tuple
    max_tokens: int | None = None


def load(path: Path | str = BANK_DIR) -> list[Prompt]:
    """Every prompt in a bank file or a folder of them (sorted by file name), ids unique."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConfigError(f"{path}: no *.json prompt files")
    elif path.exists():
        files = [path]
    else:
        raise ConfigError(f"{path}: no such prompt file or folder")
    prompts: list[Prompt] = []
    seen: dict[str, Path] = {}
    for file in files:
        for prompt in _load_text(file) if file.suffix == ".txt" else _load_json(file):
            if prompt.id in seen:
                raise ConfigError(f"{file}: prompt id {prompt.id!r} already used in {seen[prompt.id]}")
            seen[prompt.id] = file
            prompts.append(prompt)
    return prompts


def _load_text(file: Path) -> list[Prompt]:
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    prompts = [Prompt(f"{file.stem}-{n:03d}", "custom", ({"role": "user", "content": line},))
               for n, line in enumerate((x for x in lines if x), start=1)]
    if not prompts:
        raise ConfigError(f"{file}: no prompts (one per line expected)")
    return prompts


def _load_json(file: Path) -> list[Prompt]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    return parse_bank(file, doc)


def parse_bank(file: Path, doc: object) -> list[Prompt]:
    """The prompts of a bank document read from `file` (errors name it)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{file}: expected an object with \"format\": {FORMAT} (see data/prompts/README.md)")
    category = doc.get("category")
    if not isinstance(category, str) or not category:
        raise ConfigError(f"{file}: \"category\" must be a non-empty string")
    items = doc.get("prompts")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{file}: \"prompts\" must be a non-empty list")
    return [_prompt(file, category, n, item) for n, item in enumerate(items)]


def _prompt(file: Path, category: str, n: int, item: object) -> Prompt:
    where = f"{file}: prompts[{n}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object")
    pid = item.get("id")
    if not isinstance(pid, str) or not pid:
        raise ConfigError(f"{where}: \"id\" must be a non-empty string")
    max_tokens = item.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ConfigError(f"{where} ({pid}): \"max_tokens\" must be a positive integer")
    if "messages" in item:
        messages = item["messages"]
        if not valid_messages(messages):
            raise ConfigError(f"{where} ({pid}): \"messages\" must be a list of {{role, content}} objects")
        return Prompt(pid, category, tuple(messages), max_tokens)
    text = item.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where} ({pid}): needs a non-empty \"prompt\" or \"messages\"")
    messages = [{"role": "user", "content": text}]
    system = item.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise ConfigError(f"{where} ({pid}): \"system\" must be a string")
        messages.insert(0, {"role": "system", "content": system})
    return Prompt(pid, category, tuple(messages), max_tokens)


def valid_messages(messages: object) -> bool:
    """A non-empty list of {role, content} objects with known roles and string contents."""
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages)


def categories(prompts: list[Prompt]) -> dict[str, int]:
    """Category -> number of prompts, sorted by name."""
    counts: dict[str, int] = {}
    for p in prompts:
        counts[p.category] = counts.get(p.category, 0) + 1
    return dict(sorted(counts.items()))


def select(prompts: list[Prompt], wanted: list[str] | tuple[str, ...]) -> list[Prompt]:
    """Only the prompts of the wanted categories; an unknown category names the known ones."""
    if not wanted:
        return list(prompts)
    known = categories(prompts)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ConfigError(f"unknown prompt category {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(known)}")
    return [p for p in prompts if p.category in wanted]


class PromptOrder:
    """Request i -> prompt: a seeded shuffle of the bank, reshuffled (still seeded) on each pass."""

    def __init__(self, prompts: list[Prompt], seed: int) -> None:
        if not prompts:
            raise ConfigError("no prompts to send")
        self._prompts = list(prompts)
        self._seed = seed
        self._pass = -1
        self._order: list[Prompt] = []

    def __getitem__(self, i: int) -> Prompt:
        number, index = divmod(i, len(self._prompts))
        if number != self._pass:
            self._order = list(self._prompts)
            random.Random(f"{self._seed}:{number}").shuffle(self._order)
            self._pass = number
        return self._order[index]
