"""The vocabularies that /api/tokenize uses: vocabulary-only loads of the models' GGUF files, kept by file."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .registry import ModelEntry, UnreadableModel, timed_load

KEPT = 2  # vocabularies kept loaded (their RSS: docs/backend.md): the least recently used goes first


class Vocab(Protocol):
    """A model's tokenizer."""

    def tokenize(self, text: str, add_special: bool) -> list[int]: ...

    def close(self) -> None: ...


class VocabOnly:
    """llama.cpp's tokenizer from a vocabulary-only load of a GGUF (its weights stay on disk)."""

    def __init__(self, path: Path):
        import llama_cpp
        from llama_cpp import _internals

        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        # special=True as llama.cpp's server tokenizes: a chat marker in the text is its control token, as
        # when the text reaches the model through a chat template.
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def close(self) -> None:
        self._model.close()


class Tokenizers:
    """The vocabularies loaded for tokenizing, by model file; a changed file loads again."""

    def __init__(self, load: Callable[[ModelEntry], Vocab] | None = None, kept: int = KEPT):
        self._load = load or (lambda entry: VocabOnly(entry.path))
        self.kept = max(1, kept)
        self._vocabs: OrderedDict[tuple, tuple[Vocab, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(entry: ModelEntry) -> tuple:
        try:
            mtime = entry.path.stat().st_mtime_ns
        except OSError as exc:
            raise UnreadableModel(f"model '{entry.tag}' cannot be loaded: {exc}") from exc
        return entry.tag, str(entry.path), mtime

    def tokenize(self, entry: ModelEntry, texts: list[str], add_special: bool) -> tuple[list[list[int]], float]:
        """Each text's tokens, and the seconds a vocabulary load took (0 when it was loaded); worker threads only."""
        key = self._key(entry)
        loaded = 0.0
        with self._lock:
            found = self._vocabs.get(key)
            if found is None:
                vocab, loaded = timed_load(entry, self._load)
                found = self._vocabs[key] = (vocab, threading.Lock())
                while len(self._vocabs) > self.kept:
                    _, (old, old_lock) = self._vocabs.popitem(last=False)
                    with old_lock:  # a request still tokenizing with it finishes first
                        old.close()
            self._vocabs.move_to_end(key)
            vocab, lock = found
            lock.acquire()  # taken before the cache's lock is let go: an eviction waits for this request
        try:
            return [vocab.tokenize(text, add_special) for text in texts], loaded
        finally:
            lock.release()

    def loaded(self) -> list[str]:
        """The models whose vocabularies are loaded, least recently used first."""
        with self._lock:
            return [key[0] for key in self._vocabs]

    def close(self) -> None:
        """Free every vocabulary (the server's cleanup)."""
        with self._lock:
            while self._vocabs:
                _, (vocab, lock) = self._vocabs.popitem(last=False)
                with lock:
                    vocab.close()
