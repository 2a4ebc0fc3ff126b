"""A GGUF file's header read without loading the model: metadata, parameter count, quantisation."""
from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

# llama.cpp's file types (general.file_type), as Ollama names them in quantization_level.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS",
    24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
    31: "IQ1_M", 32: "BF16",
}
# Ollama's /api/show leaves arrays longer than this empty unless asked for verbose output.
SHORT_ARRAY = 5


class BadModelFile(ValueError):
    """The file is not a GGUF model the backend can read."""


@dataclass
class GGUFHeader:
    """What /api/tags and /api/show need, read once per file version."""

    metadata: dict[str, object]
    parameter_count: int
    array_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: object = None) -> object:
        """An architecture-scoped key (`context_length` means `<arch>.context_length`)."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def is_embedding(self) -> bool:
        # Ollama's rule: a model with a pooling type is an embedding model, else a completion model.
        return f"{self.architecture}.pooling_type" in self.metadata

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            return FILE_TYPES.get(file_type, f"type {file_type}")
        return ""


_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Reads GGUF's little-endian values from a memory map."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def scalar(self, kind: int) -> object:
        fmt = _SCALAR[kind]
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar(10)
        raw = bytes(self.buf[self.pos:self.pos + n])
        if len(raw) != n:
            raise BadModelFile("truncated string")
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> tuple[object, int | None]:
        """A value and, for arrays, their length; long arrays are skipped, not decoded."""
        if kind == _STRING:
            return self.string(), None
        if kind == _ARRAY:
            item, count = self.scalar(4), self.scalar(10)
            if count > SHORT_ARRAY:
                self._skip(item, count)
                return [], count
            return [self.value(item)[0] for _ in range(count)], count
        if kind not in _SCALAR:
            raise BadModelFile(f"unknown metadata type {kind}")
        return self.scalar(kind), None

    def _skip(self, kind: int, count: int) -> None:
        if kind in _SCALAR:
            self.pos += struct.calcsize(_SCALAR[kind]) * count
        elif kind == _STRING:
            # Vocabularies hold 50k-260k strings: hop over them by their lengths.
            buf, pos, unpack = self.buf, self.pos, struct.unpack_from
            for _ in range(count):
                pos += 8 + unpack("<Q", buf, pos)[0]
            self.pos = pos
        else:
            for _ in range(count):
                self.value(kind)
        if self.pos > len(self.buf):
            raise BadModelFile("truncated array")


def _parse(path: Path) -> GGUFHeader:
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BadModelFile(f"{path.name} is not a GGUF file (no GGUF magic number)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf)
            cur.pos = 4
            version = cur.scalar(4)
            if version not in (2, 3):
                raise BadModelFile(f"{path.name}: GGUF version {version} is not supported")
            n_tensors, n_kv = cur.scalar(10), cur.scalar(10)
            metadata: dict[str, object] = {}
            lengths: dict[str, int] = {}
            for _ in range(n_kv):
                key = cur.string()
                value, length = cur.value(cur.scalar(4))
                metadata[key] = value
                if length is not None:
                    lengths[key] = length
            params = 0
            for _ in range(n_tensors):
                cur.string()
                dims = cur.scalar(4)
                count = 1
                for _ in range(dims):
                    count *= cur.scalar(10)
                cur.pos += 4 + 8  # type, offset
                params += count
            if cur.pos > len(buf):
                raise BadModelFile("truncated tensor table")
    return GGUFHeader(metadata, params, lengths)


_cache: dict[tuple[str, int, int], GGUFHeader] = {}
_lock = threading.Lock()


def read_header(path: Path) -> GGUFHeader:
    """The file's metadata (cached by path, size and mtime); BadModelFile when it is not a GGUF."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise BadModelFile(f"cannot read {path}: {exc.strerror}") from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    # The gguf package's GGUFReader decodes every vocabulary string (docs/backend.md: far too slow for
    # Gemma's 262k); this reader follows the same layout (gguf's GGUFValueType ids) and skips them.
    try:
        header = _parse(path)
    except BadModelFile:
        raise
    except (OSError, ValueError, struct.error, KeyError) as exc:
        raise BadModelFile(f"{path.name} is not a valid GGUF file: {exc}") from exc
    if "general.architecture" not in header.metadata:
        raise BadModelFile(f"{path.name} has no general.architecture: not a model file")
    with _lock:
        _cache[key] = header
    return header


def human_number(n: int) -> str:
    """A parameter count as Ollama prints it (134.52M, 268.10M, 22.57M, 1.2B)."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if n >= size:
            value = n / size
            text = f"{value:.1f}" if suffix == "B" else f"{value:.2f}"
            return text.rstrip("0").rstrip(".") + suffix if value == int(value) else text + suffix
    return str(n)
