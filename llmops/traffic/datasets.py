"""Prompt files people already have: JSONL, ShareGPT JSON, CSV, text, the generator's own bank, or a folder of them.

The format is chosen by the suffix:
  .jsonl  one JSON object a line with "prompt", "text" or "messages" (and "max_tokens" or
          "output_tokens"), as GuideLLM and llmperf write it
  .json   ShareGPT (a list of {"conversations": [{"from": "human", "value": ...}, ...]}, vLLM's
          benchmark file) or the generator's own bank (an object with "format": 1)
  .csv    a "prompt" column (and "max_tokens" or "output_tokens")
  .txt    one prompt a line
Each prompt's id is its file's name and its place (`prompts.jsonl:12`, the line; `sharegpt.json:3`, the
record's index; `p.csv:4`, the line; `mine.txt:2`, the line), its category the file's name without the
suffix (a bank file keeps its own ids and category).

ShareGPT: the first human turn is the prompt and the reply after it sets max_tokens by its length in
tokens, as vLLM does; records with fewer than two turns, no human turn or no reply after it are skipped
and counted. Tokens are counted only for the records a run uses, in batches, by a counter (tokencount: the served
model's tokenizer, or the stated estimate).
"""
from __future__ import annotations

import csv
import io
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import ConfigError
from . import prompts as bank
from .prompts import Prompt
from .tokencount import ESTIMATE, Estimate

SUFFIXES = (".jsonl", ".json", ".csv", ".txt")
FORMATS_READ = ("formats read: .jsonl (one object a line with prompt, text or messages), .json (ShareGPT or the "
                "generator's bank), .csv (a prompt column), .txt (one prompt a line), or a folder of them")
TOKENS = ESTIMATE
BATCH = 256  # records whose tokens are counted together (a sample draws only as many as it still needs)
# vLLM's benchmark pruning of ShareGPT (benchmarks/datasets: is_valid_sequence): its defaults.
PRUNE_MIN_TOKENS = 4
PRUNE_MAX_PROMPT_TOKENS = 1024
PRUNE_MAX_TOTAL_TOKENS = 2048
_HUMAN = ("human", "user")
_TEXT_KEYS = ("prompt", "text")
_OUTPUT_KEYS = ("max_tokens", "output_tokens")


@dataclass
class _Record:
    """One usable record before sampling: its messages, and the reply whose length sets max_tokens (ShareGPT)."""

    id: str
    category: str
    messages: tuple
    max_tokens: int | None = None
    reply: str | None = None


@dataclass
class Dataset:
    """The prompts a run sends and what loading them found."""

    prompts: list[Prompt]
    files: list[str]
    formats: dict[str, int]  # format -> files read in it
    records: int  # usable records in the files (after --category, before sampling and pruning)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> records skipped
    sample: int | None = None
    pruned: int = 0  # records dropped by the length pruning
    tokens: str = TOKENS  # how tokens were counted, in words
    token_count: dict = field(default_factory=dict)  # the counter's details (tokencount: public())

    def public(self) -> dict:
        """The summary's "dataset" part."""
        return {"files": self.files, "formats": self.formats, "records": self.records, "used": len(self.prompts),
                "sample": self.sample, "skipped": self.skipped, "pruned": self.pruned, "tokens": self.tokens,
                "token_count": self.token_count}

    def line(self) -> str:
        """One line for the terminal: how many prompts of how many records, and what was skipped."""
        used = f"{len(self.prompts)} of {self.records} records" if len(self.prompts) != self.records \
            else f"{self.records} records"
        kinds = ", ".join(f"{n} {name}" for name, n in self.formats.items())
        notes = [f"skipped {n} ({why})" for why, n in self.skipped.items()]
        if self.pruned:
            notes.append(f"pruned {self.pruned} by length")
        if self.token_count.get("texts"):
            notes.append(f"tokens: {self.tokens}")
        return f"prompts: {used} from {kinds}" + (f"; {'; '.join(notes)}" if notes else "")


@dataclass
class Parsed:
    """Every usable record of a prompt file or folder, before sampling and counting."""

    path: Path
    records: list[_Record]
    files: list[str]
    formats: dict[str, int]
    skipped: dict[str, int]

    def needs_tokens(self, prune: bool, lengths: bool = True) -> bool:
        """Whether drawing counts tokens: a ShareGPT reply sets max_tokens (`lengths`: no --max-tokens), or --prune."""
        return any(r.reply is not None and (prune or (lengths and r.max_tokens is None)) for r in self.records)

    def draw(self, sample: int | None = None, seed: int = 0, prune: bool = False, counter=None,
             lengths: bool = True) -> Dataset:
        """The prompts a run sends: `sample` records drawn with the seed (all without it), pruned as vLLM prunes when
        asked, their tokens counted by `counter` (default: the estimate) only where needed. `lengths`: a ShareGPT
        reply's length sets max_tokens (False when --max-tokens sets every answer's). The counter's errors pass
        through (tokencount.TokenCountError)."""
        if sample is not None and sample < 1:
            raise ConfigError(f"--sample: must be >= 1, not {sample}")
        counter = counter or Estimate()
        chosen, pruned = _draw(self.records, sample, seed, prune, counter, lengths)
        if not chosen:
            raise ConfigError(f"{self.path}: no prompt is left after pruning by length ({pruned} pruned)" if pruned
                              else f"{self.path}: no prompts")
        if self.needs_tokens(prune, lengths):
            tokens, details = counter.label, counter.public()
        else:
            why = "--max-tokens sets every answer's length" if any(r.reply is not None for r in self.records) \
                else "no record's length is measured"
            tokens, details = f"not counted ({why})", {"counter": None, "why": why, "texts": 0}
        return Dataset([_prompt(r, n) for r, n in chosen], self.files, dict(self.formats), len(self.records),
                       dict(self.skipped), sample, pruned, tokens, details)


def read(path: Path | str, categories: list[str] | tuple[str, ...] = ()) -> Parsed:
    """Every record of a file or folder (only `categories`, all when empty); ConfigError names the file, the line
    and what was expected."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise ConfigError(f"{path}: no prompt files in it ({FORMATS_READ})")
    elif path.exists():
        if path.suffix not in SUFFIXES:
            raise ConfigError(f"{path}: the suffix {path.suffix or '(none)'!r} names no format ({FORMATS_READ})")
        files = [path]
    else:
        raise ConfigError(f"{path}: no such prompt file or folder")
    records: list[_Record] = []
    formats: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    seen: dict[str, Path] = {}
    for file in files:
        kind, found = _read(file, skipped)
        formats[kind] += 1
        for record in found:
            if record.id in seen:
                raise ConfigError(f"{file}: prompt id {record.id!r} already used in {seen[record.id]}")
            seen[record.id] = file
            records.append(record)
    return Parsed(path, _select(records, categories), [str(f) for f in files], dict(formats), dict(skipped))


def load(path: Path | str, categories: list[str] | tuple[str, ...] = (), sample: int | None = None,
         seed: int = 0, prune: bool = False, counter=None, lengths: bool = True) -> Dataset:
    """The prompts of a file or folder: only `categories` (all when empty), `sample` of them drawn with the seed.

    Tokens (a ShareGPT reply's length, the pruning) are counted only for the records drawn, by `counter` (default:
    the estimate). ConfigError names the file, the line and what was expected."""
    return read(path, categories).draw(sample, seed, prune, counter, lengths)


def _select(records: list[_Record], wanted) -> list[_Record]:
    if not wanted:
        return records
    known = sorted({r.category for r in records})
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ConfigError(f"unknown prompt category {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return [r for r in records if r.category in wanted]


def _draw(records: list[_Record], sample: int | None, seed: int, prune: bool, counter,
          lengths: bool) -> tuple[list[tuple[_Record, int | None]], int]:
    """`sample` records in a seeded order (all, in file order, without one), pruned as vLLM prunes when asked, each
    with its reply's tokens where they set max_tokens. Tokens are counted a batch at a time, and a sample takes
    only as many records as it still needs, so records the run does not send are not counted."""
    order = list(records)
    if sample is not None:
        random.Random(f"dataset:{seed}").shuffle(order)
    elif not prune and not (lengths and any(r.reply is not None and r.max_tokens is None for r in order)):
        return [(r, None) for r in order], 0
    chosen: list[tuple[_Record, int | None]] = []
    pruned = 0
    at = 0
    while at < len(order) and (sample is None or len(chosen) < sample):
        take = BATCH if sample is None else min(BATCH, sample - len(chosen))
        batch = order[at:at + take]
        at += len(batch)
        texts: list[str] = []
        for r in batch:  # what each record needs counted: its prompt (pruning) and its reply
            if r.reply is not None and prune:
                texts += [r.messages[-1]["content"], r.reply]
            elif r.reply is not None and lengths and r.max_tokens is None:
                texts.append(r.reply)
        counts = iter(counter.count(texts) if texts else [])
        for r in batch:
            reply_tokens = None
            if r.reply is not None and prune:
                prompt_tokens, reply_tokens = next(counts), next(counts)
                if not _fits(prompt_tokens, reply_tokens):
                    pruned += 1
                    continue
            elif r.reply is not None and lengths and r.max_tokens is None:
                reply_tokens = next(counts)
            chosen.append((r, reply_tokens))
    return chosen, pruned


def _fits(prompt: int, output: int) -> bool:
    """vLLM's is_valid_sequence on a ShareGPT record's prompt and reply tokens."""
    return (prompt >= PRUNE_MIN_TOKENS and output >= PRUNE_MIN_TOKENS and prompt <= PRUNE_MAX_PROMPT_TOKENS
            and prompt + output <= PRUNE_MAX_TOTAL_TOKENS)


def _prompt(record: _Record, reply_tokens: int | None) -> Prompt:
    max_tokens = record.max_tokens
    if max_tokens is None and reply_tokens is not None:
        max_tokens = max(1, reply_tokens)  # an empty reply (0 tokens) still asks for an answer
    return Prompt(record.id, record.category, record.messages, max_tokens)


def _read(file: Path, skipped: Counter) -> tuple[str, list[_Record]]:
    """(format name, records) of one file."""
    text = _text(file)
    if file.suffix == ".txt":
        return "text", _lines(file, text)
    if file.suffix == ".jsonl":
        return "jsonl", _jsonl(file, text)
    if file.suffix == ".csv":
        return "csv", _csv(file, text)
    return _json(file, text, skipped)


def _text(file: Path) -> str:
    try:
        text = file.read_bytes().decode("utf-8-sig")  # a BOM (Excel, Notepad) is not part of the first record
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}); {FORMATS_READ}") from exc
    if not text.strip():
        raise ConfigError(f"{file}: empty; {FORMATS_READ}")
    return text


def _lines(file: Path, text: str) -> list[_Record]:
    """One prompt a non-empty line (a cut last line is a shorter prompt: text has no record to end)."""
    return [_Record(f"{file.name}:{number}", file.stem, ({"role": "user", "content": line.strip()},))
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _looks_like(text: str) -> str:
    """What a file's content looks like, for an error that says which suffix would read it."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "format" in doc:
        return "the generator's bank (name it .json)"
    if isinstance(doc, list):
        return "ShareGPT or another JSON list (name it .json)"
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        if isinstance(orjson.loads(first), dict):
            return "JSONL, one object a line (name it .jsonl)"
    except orjson.JSONDecodeError:
        pass
    if "," in first and not first.lstrip().startswith(("{", "[")):
        return "CSV (name it .csv)"
    return "plain text (name it .txt for one prompt a line)"


def _output_tokens(where: str, values: dict) -> int | None:
    for key in _OUTPUT_KEYS:
        value = values.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: \"{key}\" must be a positive integer, not {value!r}")
        return value
    return None


def _jsonl(file: Path, text: str) -> list[_Record]:
    lines = text.splitlines()
    records = []
    expected = "expected one JSON object a line with \"prompt\", \"text\" or \"messages\""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if number == 1 and _looks_like(text).endswith("(name it .json)"):
                raise ConfigError(f"{where}: not one JSON object a line: the file looks like "
                                  f"{_looks_like(text)}; {FORMATS_READ}") from exc
            cut = number == len(lines) and not text.endswith(("\n", "\r"))
            why = "the last line is cut short (the file ends inside a record)" if cut else "not valid JSON"
            raise ConfigError(f"{where}: {why} ({exc.msg} at column {exc.colno}); {expected}; {FORMATS_READ}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: a JSON {type(doc).__name__}, {expected}; {FORMATS_READ}")
        if "conversations" in doc and not any(k in doc for k in ("messages", *_TEXT_KEYS)):
            raise ConfigError(f"{where}: a ShareGPT record: ShareGPT is read from a .json file holding one list "
                              f"of records; {FORMATS_READ}")
        messages = _messages_of(where, doc, expected)
        records.append(_Record(f"{file.name}:{number}", file.stem, messages, _output_tokens(where, doc)))
    return records


def _messages_of(where: str, doc: dict, expected: str) -> tuple:
    if "messages" in doc:
        messages = doc["messages"]
        if not bank.valid_messages(messages):
            raise ConfigError(f"{where}: \"messages\" must be a non-empty list of {{role, content}} objects "
                              f"(roles {', '.join(bank.ROLES)})")
        return tuple({"role": m["role"], "content": m["content"]} for m in messages)
    for key in _TEXT_KEYS:
        if key in doc:
            value = doc[key]
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: \"{key}\" must be a non-empty string")
            return ({"role": "user", "content": value},)
    keys = ", ".join(doc) or "none"
    raise ConfigError(f"{where}: no \"prompt\", \"text\" or \"messages\" (its keys: {keys}); {expected}; "
                      f"{FORMATS_READ}")


def _csv(file: Path, text: str) -> list[_Record]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = [c.strip() for c in reader.fieldnames or ()]
        if "prompt" not in columns:
            looks = _looks_like(text)
            hint = f"; the file looks like {looks}" if "CSV" not in looks else ""
            raise ConfigError(f"{file}:1: no \"prompt\" column (its columns: {', '.join(columns) or 'none'})"
                              f"{hint}; {FORMATS_READ}")
        reader.fieldnames = columns
        records = []
        for row in reader:
            where = f"{file}:{reader.line_num}"
            if None in row:
                raise ConfigError(f"{where}: more cells than the {len(columns)} columns of the header")
            value = row.get("prompt")
            if value is None or not value.strip():
                raise ConfigError(f"{where}: an empty \"prompt\" cell; expected a prompt in each row")
            records.append(_Record(f"{file.name}:{reader.line_num}", file.stem, ({"role": "user", "content": value},),
                                   _output_tokens(where, row)))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise ConfigError(f"{file}:{reader.line_num + 1}: the last line is cut short (the file ends inside a quoted "
                              f"cell); expected a prompt in each row; {FORMATS_READ}") from exc
        # the reader counts the lines of the rows it finished: the bad one starts on the next line
        raise ConfigError(f"{file}:{reader.line_num + 1}: not valid CSV ({exc}); {FORMATS_READ}") from exc
    if not records:
        raise ConfigError(f"{file}: a header and no rows; expected a prompt in each row")
    return records


def _json(file: Path, text: str, skipped: Counter) -> tuple[str, list[_Record]]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        looks = _looks_like(text)
        hint = f"; the file looks like {looks}" if "JSONL" in looks else ""
        line = text.count("\n", 0, exc.pos) + 1
        why = "the file is cut short, it ends inside a record" if "end of data" in exc.msg else "not valid JSON"
        raise ConfigError(f"{file}:{line}: {why} ({exc.msg}){hint}; {FORMATS_READ}") from exc
    if isinstance(doc, dict) and "format" in doc:
        return "bank", [_Record(p.id, p.category, p.messages, p.max_tokens) for p in bank.parse_bank(file, doc)]
    if isinstance(doc, list):
        own: Counter[str] = Counter()
        records = _sharegpt(file, doc, own)
        skipped.update(own)
        return "sharegpt", records
    raise ConfigError(f"{file}: a .json file is read as ShareGPT (a list of records with \"conversations\") or as "
                      f"the generator's bank (an object with \"format\": {bank.FORMAT}); this is a JSON "
                      f"{type(doc).__name__}{' without either' if isinstance(doc, dict) else ''}; {FORMATS_READ}")


def _sharegpt(file: Path, doc: list, skipped: Counter) -> list[_Record]:
    """The first human turn and the reply after it, per record; what cannot give both is skipped and counted."""
    records = []
    for index, item in enumerate(doc):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            if isinstance(item, dict) and any(k in item for k in ("prompt", "text", "messages")):
                raise ConfigError(f"{file}: [{index}] is a prompt record, not ShareGPT: write one record a line "
                                  f"in a .jsonl file; {FORMATS_READ}")
            raise ConfigError(f"{file}: [{index}]: expected a ShareGPT record, an object with \"conversations\": "
                              f"[{{\"from\": \"human\", \"value\": ...}}, ...]; {FORMATS_READ}")
        if len(turns) < 2:
            skipped["fewer than two turns"] += 1
            continue
        if not all(isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str)
                   for t in turns):
            raise ConfigError(f"{file}: [{index}]: each turn must be an object with string \"from\" and \"value\"")
        first = next((i for i, t in enumerate(turns) if t["from"].lower() in _HUMAN), None)
        if first is None:
            skipped["no human turn"] += 1
            continue
        if first + 1 >= len(turns) or not turns[first]["value"].strip():
            skipped["no reply after the first human turn" if first + 1 >= len(turns) else "an empty human turn"] += 1
            continue
        records.append(_Record(f"{file.name}:{index}", file.stem, ({"role": "user", "content": turns[first]["value"]},),
                               reply=turns[first + 1]["value"]))
    if not records:
        raise ConfigError(f"{file}: no ShareGPT record with a human turn and a reply "
                          f"({', '.join(f'{n} {why}' for why, n in skipped.items()) or 'an empty list'})")
    return records
