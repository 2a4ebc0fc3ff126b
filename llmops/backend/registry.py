"""Which models the backend serves: package models, GGUF files in the models folder, and names made by copy/create."""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .gguf_meta import BadModelFile
from .model import ModelInfo
from .protocol import ModelNotFound, normalize_name

log = logging.getLogger(__name__)

MANIFEST = ".llmops-models.json"
PACKAGE, USER, LINK = "package", "user", "link"


@dataclass(frozen=True)
class ModelSource:
    """A model the backend knows how to find: `locate` returns its GGUF path (and may build it)."""

    tag: str
    locate: Callable[[], Path]
    owner: str = PACKAGE  # package: never deleted; user: a file in the models folder; link: a name only


@dataclass
class ModelEntry:
    """A served name and its file."""

    tag: str
    path: Path
    owner: str
    info: ModelInfo


T = TypeVar("T")


class UnreadableModel(Exception):
    """A named model whose file cannot be read as a GGUF; answered 400 with the reason."""


def timed_load(entry: ModelEntry, load: Callable[[ModelEntry], T]) -> tuple[T, float]:
    """load(entry) and the seconds it took; llama-cpp-python's "Failed to load model from file" (a ValueError)
    becomes UnreadableModel naming the model."""
    started = time.perf_counter()
    try:
        loaded = load(entry)
    except ValueError as exc:
        raise UnreadableModel(f"model '{entry.tag}' cannot be loaded: {exc}") from exc
    return loaded, time.perf_counter() - started


def tag_for_file(path: Path) -> str:
    """An Ollama-style name for a dropped-in file: `My-Model.Q4_K_M.gguf` -> `my-model.q4_k_m:latest`."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-.") or "model"
    return f"{stem}:latest"


class Registry:
    """The served names; rescans the models folder on every listing so dropped-in files appear."""

    def __init__(self, sources: list[ModelSource], models_dir: Path | None = None,
                 info_for: Callable[[str, Path], ModelInfo] | None = None):
        self.sources = {normalize_name(s.tag): s for s in sources}
        self.models_dir = models_dir
        self._info_for = info_for or ModelInfo.from_file
        self._lock = threading.RLock()
        self._located: dict[str, Path | None] = {}
        self._infos: dict[tuple[str, str, int], ModelInfo] = {}
        self._warned: set[str] = set()
        self._recent: tuple[float, dict] | None = None

    # -- the manifest: names made by copy and create, and names deleted ------------------------
    def _manifest_path(self) -> Path | None:
        return self.models_dir / MANIFEST if self.models_dir else None

    def _manifest(self) -> dict:
        path = self._manifest_path()
        if path is None or not path.is_file():
            return {"links": {}, "hidden": []}
        try:
            data = json.loads(path.read_text())
            return {"links": dict(data.get("links") or {}), "hidden": list(data.get("hidden") or [])}
        except (OSError, ValueError, AttributeError) as exc:
            self._warn_once(str(path), f"ignoring unreadable {path}: {exc}")
            return {"links": {}, "hidden": []}

    def _save(self, manifest: dict) -> None:
        path = self._manifest_path()
        if path is None:
            raise OSError("no models folder: set BACKEND_MODELS_DIR")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, path)
        self._recent = None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    # -- listing -------------------------------------------------------------------------------
    def _locate(self, source: ModelSource) -> Path | None:
        key = normalize_name(source.tag)
        if key not in self._located:
            try:
                self._located[key] = Path(source.locate())
            except Exception as exc:  # noqa: BLE001 - a missing package or failed build hides that model only
                self._warn_once(key, f"model {source.tag} is not available: {exc}")
                self._located[key] = None
        return self._located[key]

    def _candidates(self) -> dict[str, tuple[Path, str]]:
        """name -> (path, owner), before reading the files."""
        found: dict[str, tuple[Path, str]] = {}
        for key, source in self.sources.items():
            path = self._locate(source)
            if path is not None:
                found[key] = (path, source.owner)
        if self.models_dir and self.models_dir.is_dir():
            for path in sorted(self.models_dir.glob("*.gguf")):
                # Not resolved: deleting a symlink the user dropped in removes the link, never its target.
                found.setdefault(tag_for_file(path), (path, USER))
        manifest = self._manifest()
        for tag, path in manifest["links"].items():
            found[normalize_name(tag)] = (Path(path), LINK)
        for tag in manifest["hidden"]:
            found.pop(normalize_name(tag), None)
        return found

    def _entry(self, tag: str, path: Path, owner: str) -> ModelEntry:
        stat = path.stat()
        key = (tag, str(path), stat.st_mtime_ns)
        info = self._infos.get(key)
        if info is None:
            info = self._info_for(tag, path)
            self._infos[key] = info
        return ModelEntry(tag, path, owner, info)

    def entries(self) -> list[ModelEntry]:
        """Every readable model, newest file first (as Ollama lists them); unreadable ones are logged."""
        with self._lock:
            out = []
            for tag, (path, owner) in self._candidates().items():
                try:
                    out.append(self._entry(tag, path, owner))
                except (BadModelFile, OSError) as exc:
                    self._warn_once(f"{tag}:{path}", f"skipping model {tag} ({path}): {exc}")
            return sorted(out, key=lambda e: e.info.modified_at, reverse=True)

    def _cached_candidates(self, key: str) -> dict[str, tuple[Path, str]]:
        """The candidates, rescanned at most every second unless the name is missing (a hot path)."""
        now = time.monotonic()
        if self._recent is None or now - self._recent[0] > 1.0 or key not in self._recent[1]:
            self._recent = (now, self._candidates())
        return self._recent[1]

    def get(self, name: str) -> ModelEntry:
        """The entry for a requested name; ModelNotFound, or UnreadableModel for a damaged file."""
        key = normalize_name(name)
        with self._lock:
            found = self._cached_candidates(key).get(key)
            if found is None:
                raise ModelNotFound(name)
            try:
                return self._entry(key, *found)
            except (BadModelFile, OSError) as exc:
                raise UnreadableModel(f"model '{name}' cannot be loaded: {exc}") from exc

    def has(self, name: str) -> bool:
        return normalize_name(name) in self._candidates()

    def is_hidden(self, name: str) -> bool:
        return normalize_name(name) in {normalize_name(t) for t in self._manifest()["hidden"]}

    # -- management ----------------------------------------------------------------------------
    def restore(self, name: str) -> bool:
        """Un-delete a package model (pull of a name the backend ships); False if it ships no such model."""
        key = normalize_name(name)
        with self._lock:
            if key not in self.sources or self._locate(self.sources[key]) is None:
                return False
            manifest = self._manifest()
            if key in manifest["hidden"]:
                manifest["hidden"].remove(key)
                self._save(manifest)
            return True

    def link(self, name: str, path: Path) -> None:
        """Serve path under name (copy, create); the file itself is not copied."""
        key = normalize_name(name)
        with self._lock:
            manifest = self._manifest()
            manifest["links"][key] = str(Path(path).resolve())
            if key in manifest["hidden"]:
                manifest["hidden"].remove(key)
            self._save(manifest)

    def delete(self, name: str) -> Path | None:
        """Remove a name; returns the file deleted, if any. Only a file the user put in the models folder
        and no other name uses is deleted; package files and linked files are never touched."""
        key = normalize_name(name)
        with self._lock:
            found = self._candidates().get(key)
            if found is None:
                raise ModelNotFound(name)
            path, owner = found
            manifest = self._manifest()
            manifest["links"].pop(key, None)
            others = [t for t, (p, _) in self._candidates().items() if t != key and p == path]
            removed = None
            if owner == USER and not others and self._in_models_dir(path):
                path.unlink()
                removed = path
            elif owner != LINK or key in self.sources or self._file_tag(key):
                # A package name, or a file's own name still used by another name: hide it.
                manifest["hidden"].append(key)
            self._save(manifest)
            return removed

    def _file_tag(self, key: str) -> bool:
        if not (self.models_dir and self.models_dir.is_dir()):
            return False
        return any(tag_for_file(p) == key for p in self.models_dir.glob("*.gguf"))

    def _in_models_dir(self, path: Path) -> bool:
        if not self.models_dir:
            return False
        try:
            return path.parent.resolve() == self.models_dir.resolve()
        except OSError:
            return False
